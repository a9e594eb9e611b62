# Egress check: public addresses must be unreachable from a lab pod, another
# instance's Service reachable. Prints one JSON line per probe.
require "json"
require "resolv"
require "socket"

$stdout.sync = true
TIMEOUT = Float(ENV.fetch("FEDILAB_PROBE_TIMEOUT", "5"))
# IO::TimeoutError is Ruby 3.2+ (Mastodon's images have it; older Rubies
# raise Errno::ETIMEDOUT only).
TIMEOUTS = [Errno::ETIMEDOUT, (IO::TimeoutError if defined?(IO::TimeoutError))].compact.freeze

def emit(fields)
  puts JSON.generate(fields)
end

def tcp(target)
  host, port = target.split(":")
  Socket.tcp(host, Integer(port), connect_timeout: TIMEOUT).close
  [true, "connected"]
rescue *TIMEOUTS
  [false, "timed out after #{TIMEOUT}s"]
rescue SystemCallError, SocketError => e
  [false, "#{e.class}: #{e.message}"]
end

def dns(server)
  host, port = server.split(":")
  query = Resolv::DNS::Message.new(rand(0xffff))
  query.rd = 1
  query.add_question("example.com", Resolv::DNS::Resource::IN::A)
  socket = UDPSocket.new
  socket.send(query.encode, 0, host, Integer(port))
  return [false, "no answer within #{TIMEOUT}s"] unless IO.select([socket], nil, nil, TIMEOUT)

  reply = Resolv::DNS::Message.decode(socket.recvfrom(512).first)
  [true, "answered (rcode #{reply.rcode}, #{reply.answer.size} records)"]
rescue SystemCallError, SocketError => e
  [false, "#{e.class}: #{e.message}"]
ensure
  socket&.close
end

ENV.fetch("FEDILAB_BLOCKED_TCP", "").split(",").each do |target|
  connected, detail = tcp(target)
  emit(probe: "blocked_tcp", target: target, connected: connected, detail: detail)
end
ENV.fetch("FEDILAB_BLOCKED_DNS", "").split(",").each do |server|
  answered, detail = dns(server)
  emit(probe: "blocked_dns", target: server, connected: answered, detail: detail)
end
ENV.fetch("FEDILAB_ALLOWED_TCP", "").split(",").each do |target|
  connected, detail = tcp(target)
  emit(probe: "allowed_tcp", target: target, connected: connected, detail: detail)
end
