#!/bin/sh
# fedilab setup, first step, for one GoToSocial instance; runs in the
# GoToSocial image (its CLI, busybox wget) with the instance's GTS_*
# environment. Environment: FEDILAB_URL (the server's Service),
# FEDILAB_ADMIN_USERNAME, FEDILAB_ADMIN_EMAIL, FEDILAB_ADMIN_PASSWORD.
# 1. Waits until /readyz answers: the server has started once and migrated
#    the database, which the admin commands need.
# 2. Creates the admin (email verified, approved) unless the name is taken.
# 3. Promotes it to admin. Both happen before anything asks the running
#    server about the account, so its caches never hold the account
#    unpromoted (GoToSocial's docs ask for a restart after promoting an
#    account the server has already loaded).
# Running it again changes nothing.
set -eu
gts=${FEDILAB_GTS_BIN:-/gotosocial/gotosocial}

echo "fedilab: waiting for $FEDILAB_URL/readyz"
until wget -q -O /dev/null "$FEDILAB_URL/readyz"; do sleep 5; done

echo "fedilab: creating the admin $FEDILAB_ADMIN_USERNAME"
if ! out=$("$gts" admin account create --username "$FEDILAB_ADMIN_USERNAME" \
    --email "$FEDILAB_ADMIN_EMAIL" --password "$FEDILAB_ADMIN_PASSWORD" 2>&1); then
    case "$out" in
    *"already in use"*) echo "fedilab: $FEDILAB_ADMIN_USERNAME exists" ;;
    *) echo "$out" >&2; exit 1 ;;
    esac
fi
"$gts" admin account promote --username "$FEDILAB_ADMIN_USERNAME"
