# Federation round trip, through the instances' own API: A resolves and
# follows B's admin, B accepts, B posts a status with a nonce, the status
# reaches A's home timeline. One JSON line per step; stops at the first
# failing step. Tokens come from the admin Secrets (secretKeyRef env).
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

def emit(step, ok, fields = {})
  puts JSON.generate({ step: step, ok: ok }.merge(fields))
  exit 1 unless ok
end

# One API call with the host's admin token; HTTPS trusts SSL_CERT_FILE.
def api(host, method, path, body = nil)
  http = Net::HTTP.new(host, 443)
  http.use_ssl = true
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

# Calls the block every 2 s until it returns a truthy value or WAIT passes.
def wait_for
  deadline = now + WAIT
  loop do
    result = yield
    return result if result || now > deadline

    sleep 2
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

# A Follow is only sent by a new follow: undo an earlier run's.
if (rel = relationship(id)) && (rel["following"] || rel["requested"])
  api(A, :post, "/api/v1/accounts/#{id}/unfollow")
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
  code, timeline = api(A, :get, "/api/v1/timelines/home?limit=40")
  code == 200 && timeline.is_a?(Array) && timeline.any? { |s| s["content"].to_s.include?(NONCE) }
end
emit("delivered", delivered ? true : false, seconds: (now - posted_at).round(1),
                                            detail: delivered ? "in #{A}'s home timeline" : "not in #{A}'s home timeline after #{WAIT}s")
