#!/bin/bash
# fedilab setup Job for one Mastodon instance; runs in the Mastodon image.
# 1. db:prepare: loads the schema and the seeds (roles Owner, Admin,
#    Moderator) on an empty database, migrates an existing one.
# 2. credentials.rb: creates the Owner account once, then sets its password
#    and API token to the values fedilab generated (FEDILAB_* variables).
# 3. allow_domains.rb, in limited federation mode only: allows the lab's
#    other hosts (FEDILAB_ALLOW_DOMAINS), or the instance federates with none.
# Running it again changes nothing.
set -euo pipefail
cd /opt/mastodon
echo "fedilab: preparing the database of ${LOCAL_DOMAIN}"
bundle exec rails db:prepare
echo "fedilab: setting up ${FEDILAB_ADMIN_USERNAME}@${LOCAL_DOMAIN}"
bundle exec rails runner /etc/fedilab/setup/credentials.rb
if [ -n "${FEDILAB_ALLOW_DOMAINS:-}" ]; then
    echo "fedilab: limited federation: allowing ${FEDILAB_ALLOW_DOMAINS}"
    bundle exec rails runner /etc/fedilab/setup/allow_domains.rb
fi
echo "fedilab: setup of ${LOCAL_DOMAIN} complete"
