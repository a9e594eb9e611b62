# frozen_string_literal: true

# fedilab: make the lab's Owner account and its API token match the values
# fedilab generated and keeps in the instance's admin Secret, so fedilab knows
# every credential without reading logs. Idempotent. Run with `rails runner`.

username = ENV.fetch('FEDILAB_ADMIN_USERNAME')
email = ENV.fetch('FEDILAB_ADMIN_EMAIL')
password = ENV.fetch('FEDILAB_ADMIN_PASSWORD')
token_value = ENV.fetch('FEDILAB_API_TOKEN')
app_name = ENV.fetch('FEDILAB_OAUTH_APP')
scopes = 'read write follow push admin:read admin:write'

if Account.find_local(username)&.user.nil?
  # tootctl is Mastodon's supported way to create a confirmed, approved
  # account with a role; run in-process to avoid booting Rails again.
  require Rails.root.join('lib', 'mastodon', 'cli', 'accounts').to_s
  Mastodon::CLI::Accounts.start(['create', username, '--email', email, '--confirmed', '--approve', '--role', 'Owner'])
end

user = Account.find_local(username)&.user
abort "fedilab: could not create the account #{username}; see the output above" if user.nil?

# Setting the password again would re-hash it and queue a password-change
# mail on every run: only when it differs.
unless user.valid_password?(password)
  user.password = password
  user.password_confirmation = password
  user.save!(validate: false)
end

app = Doorkeeper::Application.find_or_create_by!(name: app_name) do |a|
  a.redirect_uri = 'urn:ietf:wg:oauth:2.0:oob'
  a.scopes = scopes
end

token = Doorkeeper::AccessToken.where(application_id: app.id, resource_owner_id: user.id, revoked_at: nil).first
token ||= Doorkeeper::AccessToken.create!(application_id: app.id, resource_owner_id: user.id, scopes: scopes)
# Doorkeeper generated a random value; the token must be the one fedilab
# handed out. Mastodon stores tokens unhashed.
token.update_columns(token: token_value, scopes: scopes) unless token.token == token_value

puts "fedilab: #{username} can sign in, and its API token is set"
