# Federation round trip between two instances of any kinds, each driven
# through its own client API: A resolves B's admin (the server asks B's
# WebFinger), follows; if B holds the follow as a request (its admin is
# locked, as GoToSocial's accounts are by default), B approves it; A sees the
# follow accepted; B posts a public status with a nonce; the status reaches
# A's home timeline. One JSON line per step; stops at the first failing
# step. Tokens come from the admin Secrets (secretKeyRef env).
#
# One script for every kind, with a small adapter per API:
#   mastodon, gotosocial  Mastodon's REST API (GoToSocial's client API is
#                         Mastodon-compatible for every call used here),
#                         Authorization: Bearer <token>
#   misskey               POST /api/<endpoint> with a JSON body carrying
#                         the token as `i`
# It runs in a Mastodon image (Ruby, stdlib only) whatever the kinds:
# GoToSocial's image has no scripting runtime, and one client in one
# language keeps one set of tests.
#
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
A_KIND = ENV.fetch("FEDILAB_FROM_KIND", "mastodon")
B_KIND = ENV.fetch("FEDILAB_TO_KIND", "mastodon")
ADMIN = ENV.fetch("FEDILAB_ADMIN_USERNAME")
FROM_ACCT = "#{ADMIN}@#{A}"
NONCE = ENV.fetch("FEDILAB_NONCE")
WAIT = Float(ENV.fetch("FEDILAB_WAIT", "60"))
POLL = Float(ENV.fetch("FEDILAB_POLL", "2"))
# Tests talk to a stand-in server: another port, plain HTTP, and one
# address for every host (the Host header still names the host).
PORT = Integer(ENV.fetch("FEDILAB_API_PORT", "443"))
HTTPS = ENV.fetch("FEDILAB_API_HTTPS", "true") == "true"
CONNECT_TO = ENV.fetch("FEDILAB_API_CONNECT_TO", "")

def emit(step, ok, fields = {})
  puts JSON.generate({ step: step, ok: ok }.merge(fields))
  exit 1 unless ok
end

# One HTTP request to `host`; HTTPS trusts SSL_CERT_FILE. Returns the status
# (0 when there was no answer) and the parsed JSON (or the text).
def request(host, method, path, body: nil, token: nil)
  http = Net::HTTP.new(host, PORT)
  http.ipaddr = CONNECT_TO unless CONNECT_TO.empty?
  http.use_ssl = HTTPS
  http.open_timeout = 5
  http.read_timeout = 30
  req = (method == :post ? Net::HTTP::Post : Net::HTTP::Get).new(path)
  req["Authorization"] = "Bearer #{token}" if token
  if body
    req["Content-Type"] = "application/json"
    req.body = JSON.generate(body)
  end
  response = http.request(req)
  parsed = begin
    JSON.parse(response.body.to_s)
  rescue JSON::ParserError
    response.body.to_s[0, 300]
  end
  [response.code.to_i, parsed]
rescue StandardError => e
  [0, "#{e.class}: #{e.message}"]
end

def acct_of(username, host)
  "#{username}@#{host}"
end

# Mastodon's REST API, and GoToSocial's Mastodon-compatible one. GoToSocial
# differs only in what it defaults to: new accounts are locked (follows wait
# for approval: `follow_requests/:id/authorize`), and it clamps `limit`
# (search 40, home 40, followers 80), which the values here stay within.
class MastodonApi
  def initialize(host, token)
    @host = host
    @token = token
  end

  def get(path)
    request(@host, :get, path, token: @token)
  end

  def post(path, body = nil)
    request(@host, :post, path, body: body, token: @token)
  end

  # [status, {id:, seen_as:} or nil, body]
  def resolve(username, host)
    acct = acct_of(username, host)
    status, body = get("/api/v2/search?type=accounts&resolve=true&limit=5&q=#{URI.encode_www_form_component(acct)}")
    account = body.is_a?(Hash) ? Array(body["accounts"]).find { |a| a["acct"] == acct } : nil
    [status, account && { id: account["id"], seen_as: account["url"] }, body]
  end

  # {following:, requested:} of this admin towards `id`, nil if unknown.
  def relationship(id)
    status, body = get("/api/v1/accounts/relationships?id[]=#{id}")
    rel = status == 200 && body.is_a?(Array) ? body.first : nil
    rel.is_a?(Hash) ? { following: rel["following"] == true, requested: rel["requested"] == true } : nil
  end

  def follow(id)
    post("/api/v1/accounts/#{id}/follow")
  end

  def unfollow(id)
    post("/api/v1/accounts/#{id}/unfollow")
  end

  # Whether `acct` follows this admin (nil: cannot tell).
  def followed_by?(acct)
    status, me = get("/api/v1/accounts/verify_credentials")
    return nil unless status == 200 && me.is_a?(Hash)

    status, followers = get("/api/v1/accounts/#{me['id']}/followers?limit=80")
    return nil unless status == 200 && followers.is_a?(Array)

    followers.any? { |f| f["acct"] == acct }
  end

  # The id of `acct`'s pending follow request to this admin, if any.
  def pending_request(acct)
    status, requests = get("/api/v1/follow_requests?limit=80")
    return nil unless status == 200 && requests.is_a?(Array)

    requests.find { |a| a["acct"] == acct }&.fetch("id", nil)
  end

  def approve(id)
    status, body = post("/api/v1/follow_requests/#{id}/authorize")
    [status, status == 200, body]
  end

  # [status, uri or nil, body]
  def publish(text)
    status, body = post("/api/v1/statuses", { status: text, visibility: "public" })
    ok = status == 200 && body.is_a?(Hash)
    [status, ok ? body["uri"] : nil, body]
  end

  def home_has?(text)
    # 206: the home feed is being rebuilt (Mastodon); what it holds so far
    # counts, and the next round asks again.
    status, timeline = get("/api/v1/timelines/home?limit=40")
    [200, 206].include?(status) && timeline.is_a?(Array) && timeline.any? { |s| s["content"].to_s.include?(text) }
  end
end

# Misskey's API: every endpoint is POST /api/<name>, the token is `i` in
# the JSON body; errors answer 4xx/5xx with {"error": {...}}, endpoints
# without a result answer 204.
class MisskeyApi
  def initialize(host, token)
    @host = host
    @token = token
  end

  def call(endpoint, params = {})
    request(@host, :post, "/api/#{endpoint}", body: params.merge(i: @token))
  end

  def resolve(username, host)
    status, user = call("users/show", username: username, host: host)
    found = status == 200 && user.is_a?(Hash) && user["id"]
    [status, found ? { id: user["id"], seen_as: user["uri"] || user["url"] } : nil, user]
  end

  def relationship(id)
    status, rel = call("users/relation", userId: id)
    return nil unless status == 200 && rel.is_a?(Hash)

    { following: rel["isFollowing"] == true, requested: rel["hasPendingFollowRequestFromYou"] == true }
  end

  def follow(id)
    call("following/create", userId: id)
  end

  def unfollow(id)
    call("following/delete", userId: id)
  end

  def followed_by?(acct)
    status, me = call("i")
    return nil unless status == 200 && me.is_a?(Hash)

    status, list = call("users/followers", userId: me["id"], limit: 100)
    return nil unless status == 200 && list.is_a?(Array)

    list.any? { |f| f["follower"].is_a?(Hash) && acct_of(f["follower"]["username"], f["follower"]["host"]) == acct }
  end

  def pending_request(acct)
    status, list = call("following/requests/list", limit: 100)
    return nil unless status == 200 && list.is_a?(Array)

    pending = list.find { |r| r["follower"].is_a?(Hash) && acct_of(r["follower"]["username"], r["follower"]["host"]) == acct }
    pending && pending["follower"]["id"]
  end

  def approve(id)
    status, body = call("following/requests/accept", userId: id)
    [status, [200, 204].include?(status), body]
  end

  def publish(text)
    status, body = call("notes/create", text: text, visibility: "public")
    note = status == 200 && body.is_a?(Hash) ? body["createdNote"] : nil
    # A local note has no `uri` of its own; its id is its place.
    uri = note.is_a?(Hash) ? (note["uri"] || "https://#{@host}/notes/#{note['id']}") : nil
    [status, uri, body]
  end

  def home_has?(text)
    status, notes = call("notes/timeline", limit: 40)
    status == 200 && notes.is_a?(Array) && notes.any? { |n| n["text"].to_s.include?(text) }
  end
end

def api_for(kind, host, token)
  case kind
  when "mastodon", "gotosocial" then MastodonApi.new(host, token)
  when "misskey" then MisskeyApi.new(host, token)
  else
    emit("env", false, detail: "no client API for kind #{kind}")
  end
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

a = api_for(A_KIND, A, ENV.fetch("FEDILAB_FROM_TOKEN"))
b = api_for(B_KIND, B, ENV.fetch("FEDILAB_TO_TOKEN"))
# Only Mastodon reads ALLOWED_PRIVATE_ADDRESSES, and only a Mastodon A's
# pod has its environment; other kinds keep the setting in a config file.
env = { from_kind: A_KIND, to_kind: B_KIND }
env[:allowed_private_addresses] = ENV.fetch("ALLOWED_PRIVATE_ADDRESSES", "") if A_KIND == "mastodon"
emit("env", true, env)

started = now
account_name = acct_of(ADMIN, B)
status, account, body = a.resolve(ADMIN, B)
emit("resolve", !account.nil?, status: status, account: account_name,
                               detail: account ? "found as #{account[:seen_as]}" : "not found: #{body.to_s[0, 300]}")
id = account[:id]

# A Follow is only sent by a new follow: undo an earlier run's, and wait
# (at most WAIT) until B has processed the Undo, so it cannot arrive after
# the new Follow and cancel it.
if (rel = a.relationship(id)) && (rel[:following] || rel[:requested])
  a.unfollow(id)
  wait_for { b.followed_by?(FROM_ACCT) != true }
end
status, body = a.follow(id)
emit("follow", status == 200, status: status, detail: body.to_s[0, 300])

approved = false
accepted = wait_for do
  next true if a.relationship(id)&.fetch(:following)

  # B's admin is locked: B approves the request (through its API), then
  # sends the Accept.
  if !approved && (request_id = b.pending_request(FROM_ACCT))
    status, ok, body = b.approve(request_id)
    emit("approve", ok, status: status,
                        detail: ok ? "#{B} approved the follow request (its admin is locked)" : body.to_s[0, 300])
    approved = true
  end
  false
end
emit("accepted", accepted ? true : false, seconds: (now - started).round(1),
                                          detail: accepted ? "following" : "no Accept within #{WAIT}s")

status, uri, body = b.publish("fedilab verify #{NONCE}")
emit("post", !uri.nil?, status: status, uri: uri, detail: uri ? "posted" : body.to_s[0, 300])

posted_at = now
delivered = wait_for { a.home_has?(NONCE) }
emit("delivered", delivered ? true : false, seconds: (now - posted_at).round(1),
                                            detail: delivered ? "in #{A}'s home timeline" : "not in #{A}'s home timeline after #{WAIT}s")
