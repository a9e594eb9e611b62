# Federation round trip, through the instances' own API: A resolves and
# follows B's admin, B accepts, B posts a status with a nonce, the status
# reaches A's home timeline. One JSON line per step; stops at the first
# failing step. Tokens come from the admin Secrets (secretKeyRef env).
# A rerun first undoes the earlier follow and waits until B no longer lists
# A as a follower: the Undo and the new Follow are separate deliveries, and
# an Undo that lands after the Follow would leave B without the follower.
require "json"
require "net/http"
require "openssl"
require "uri"

$stdout.sync = true
A = ENV.fetch("FEDILAB_FROM_HOST")
B = ENV.fetch("FEDILAB_TO_HOST")
TOKENS = { A => ENV.fetch("FEDILAB_FROM_TOKEN"), B => ENV.fetch("FEDILAB_TO_TOKEN") }.freeze
ACCT = "#{ENV.fetch('FEDILAB_ADMIN_USERNAME')}@#{B}"
NONCE = ENV.fetch("FEDILAB_NONCE")
WAIT = Float(ENV.fetch("FEDILAB_WAIT", "60"))
POLL = Float(ENV.fetch("FEDILAB_POLL", "2"))
# Tests talk to a stand-in server: another port, plain HTTP, and one
# address for every host (the Host header still names the host).
PORT = Integer(ENV.fetch("FEDILAB_API_PORT", "443"))
HTTPS = ENV.fetch("FEDILAB_API_HTTPS", "true") == "true"
CONNECT_TO = ENV.fetch("FEDILAB_API_CONNECT_TO", "")
FROM_ACCT = "#{ENV.fetch('FEDILAB_ADMIN_USERNAME')}@#{A}"

def emit(step, ok, fields = {})
  puts JSON.generate({ step: step, ok: ok }.merge(fields))
  exit 1 unless ok
end

# One API call with the host's admin token; HTTPS trusts SSL_CERT_FILE.
def api(host, method, path, body = nil)
  http = Net::HTTP.new(host, PORT)
  http.ipaddr = CONNECT_TO unless CONNECT_TO.empty?
  http.use_ssl = HTTPS
  http.open_timeout = 5
  http.read_timeout = 30
  request = (method == :post ? Net::HTTP::Post : Net::HTTP::Get).new(path)
  request["Authorization"] = "Bearer #{TOKENS.fetch(host)}"
  if body
    request["Content-Type"] = "application/json"
    request.body = JSON.generate(body)
  end
  response = http.request(request)
  parsed = begin
    JSON.parse(response.body.to_s)
  rescue JSON::ParserError
    response.body.to_s[0, 300]
  end
  [response.code.to_i, parsed]
rescue StandardError => e
  [0, "#{e.class}: #{e.message}"]
end

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

# Calls the block every POLL seconds until it returns a truthy value or
# WAIT passes.
def wait_for
  deadline = now + WAIT
  loop do
    result = yield
    return result if result || now > deadline

    sleep POLL
  end
end

def relationship(id)
  status, body = api(A, :get, "/api/v1/accounts/relationships?id[]=#{id}")
  status == 200 && body.is_a?(Array) ? body.first : nil
end

emit("env", true, allowed_private_addresses: ENV.fetch("ALLOWED_PRIVATE_ADDRESSES", ""))

started = now
status, body = api(A, :get, "/api/v2/search?type=accounts&resolve=true&limit=5&q=#{URI.encode_www_form_component(ACCT)}")
account = body.is_a?(Hash) ? Array(body["accounts"]).find { |a| a["acct"] == ACCT } : nil
emit("resolve", !account.nil?, status: status, account: ACCT,
                               detail: account ? "found as #{account['url']}" : "not found: #{body.to_s[0, 300]}")
id = account["id"]

# Whether B lists A's admin among its admin's followers (nil: cannot tell).
def b_lists_a?
  status, me = api(B, :get, "/api/v1/accounts/verify_credentials")
  return nil unless status == 200 && me.is_a?(Hash)

  status, followers = api(B, :get, "/api/v1/accounts/#{me['id']}/followers?limit=80")
  return nil unless status == 200 && followers.is_a?(Array)

  followers.any? { |f| f["acct"] == FROM_ACCT }
end

# A Follow is only sent by a new follow: undo an earlier run's, and wait
# (at most WAIT) until B has processed the Undo, so it cannot arrive after
# the new Follow and cancel it.
if (rel = relationship(id)) && (rel["following"] || rel["requested"])
  api(A, :post, "/api/v1/accounts/#{id}/unfollow")
  wait_for { b_lists_a? != true }
end
status, body = api(A, :post, "/api/v1/accounts/#{id}/follow")
emit("follow", status == 200, status: status, detail: body.to_s[0, 300])

accepted = wait_for { relationship(id)&.fetch("following", false) }
emit("accepted", accepted ? true : false, seconds: (now - started).round(1),
                                          detail: accepted ? "following" : "no Accept within #{WAIT}s")

status, body = api(B, :post, "/api/v1/statuses", { status: "fedilab verify #{NONCE}", visibility: "public" })
posted = status == 200 && body.is_a?(Hash)
emit("post", posted, status: status, uri: posted ? body["uri"] : nil, detail: posted ? "posted" : body.to_s[0, 300])

posted_at = now
delivered = wait_for do
  # 206: the home feed is being rebuilt; what it holds so far counts, and
  # the next round asks again.
  code, timeline = api(A, :get, "/api/v1/timelines/home?limit=40")
  [200, 206].include?(code) && timeline.is_a?(Array) && timeline.any? { |s| s["content"].to_s.include?(NONCE) }
end
emit("delivered", delivered ? true : false, seconds: (now - posted_at).round(1),
                                            detail: delivered ? "in #{A}'s home timeline" : "not in #{A}'s home timeline after #{WAIT}s")
