# Names check: every lab host resolves, with Ruby's Resolv::DNS as Mastodon
# resolves (the pod's resolv.conf: CoreDNS), to Traefik's ClusterIP.
require "json"
require "resolv"

$stdout.sync = true
expected = ENV.fetch("FEDILAB_TRAEFIK_IP", "")

Resolv::DNS.open do |dns|
  dns.timeouts = Float(ENV.fetch("FEDILAB_PROBE_TIMEOUT", "5"))
  ENV.fetch("FEDILAB_HOSTS").split(",").each do |host|
    addresses = dns.getaddresses(host).map(&:to_s)
    detail = addresses.empty? ? "no address (NXDOMAIN or no answer)" : addresses.join(", ")
    puts JSON.generate(probe: "resolve", host: host, addresses: addresses,
                       expected: expected, detail: detail)
  rescue Resolv::ResolvError, SystemCallError => e
    puts JSON.generate(probe: "resolve", host: host, addresses: [],
                       expected: expected, detail: "#{e.class}: #{e.message}")
  end
end
