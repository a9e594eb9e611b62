# frozen_string_literal: true

# fedilab: with LIMITED_FEDERATION_MODE, Mastodon refuses every domain that
# has no DomainAllow row (DomainControlHelper#domain_not_allowed?), so an
# instance in that mode must allow the lab's other hosts to federate at all.
# Allows each domain of FEDILAB_ALLOW_DOMAINS (comma-separated). Idempotent.
# Run with `rails runner`.

domains = ENV.fetch('FEDILAB_ALLOW_DOMAINS', '').split(',').map(&:strip).reject(&:empty?)
added = domains.reject { |domain| DomainAllow.allowed?(domain) }
added.each { |domain| DomainAllow.create!(domain: domain) }
puts "fedilab: federation allowed with #{domains.join(', ')} (#{added.size} new)"
