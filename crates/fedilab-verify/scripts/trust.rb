# Trust check: HTTPS to each host's WebFinger must verify with the lab trust
# bundle (SSL_CERT_FILE, as Mastodon uses it) and fail certificate
# verification with only the image's system bundle.
require "json"
require "net/http"
require "openssl"

$stdout.sync = true
TIMEOUT = Float(ENV.fetch("FEDILAB_PROBE_TIMEOUT", "5"))
BUNDLES = { "lab" => ENV.fetch("SSL_CERT_FILE"), "system" => ENV.fetch("FEDILAB_SYSTEM_BUNDLE") }.freeze
USER = ENV.fetch("FEDILAB_ADMIN_USERNAME")

def webfinger(host, bundle)
  store = OpenSSL::X509::Store.new
  store.add_file(bundle)
  http = Net::HTTP.new(host, 443)
  http.use_ssl = true
  http.verify_mode = OpenSSL::SSL::VERIFY_PEER
  http.cert_store = store
  http.open_timeout = TIMEOUT
  http.read_timeout = TIMEOUT * 2
  response = http.get("/.well-known/webfinger?resource=acct:#{USER}@#{host}")
  { status: response.code.to_i, verify_error: false, detail: "HTTP #{response.code}" }
rescue OpenSSL::SSL::SSLError => e
  { status: nil, verify_error: e.message.include?("certificate verify failed"), detail: "#{e.class}: #{e.message}" }
rescue StandardError => e
  { status: nil, verify_error: false, detail: "#{e.class}: #{e.message}" }
end

ENV.fetch("FEDILAB_HOSTS").split(",").each do |host|
  BUNDLES.each do |name, path|
    puts JSON.generate({ probe: "https", host: host, bundle: name, path: path }.merge(webfinger(host, path)))
  end
end
