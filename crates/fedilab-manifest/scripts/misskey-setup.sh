#!/bin/sh
# fedilab setup Job for one Misskey instance; runs in the PostgreSQL image
# (psql, busybox wget). Environment: FEDILAB_URL (the server's Service),
# FEDILAB_ADMIN_USERNAME, FEDILAB_ADMIN_PASSWORD, FEDILAB_API_TOKEN (16
# characters), FEDILAB_SETUP_PASSWORD, and PGHOST/PGPORT/PGUSER/PGPASSWORD/
# PGDATABASE for the instance's database.
# 1. Waits until /healthz answers (migrations done).
# 2. Creates the admin through POST /api/admin/accounts/create with the
#    setup password, unless a local user of that name exists (the first
#    account Misskey creates this way is its root admin).
# 3. Sets the admin's native token ("user".token) to fedilab's value.
# 4. Checks the token with POST /api/i.
# Running it again changes nothing.
set -eu

post() { # PATH JSON: prints the response body; fails on an HTTP error
    wget -q -O - --header 'Content-Type: application/json' --post-data "$2" "$FEDILAB_URL$1"
}
json_string() { # the value as a JSON string (the values are generated: no quotes or backslashes)
    printf '"%s"' "$1"
}

echo "fedilab: waiting for $FEDILAB_URL/healthz"
until wget -q -O /dev/null "$FEDILAB_URL/healthz"; do sleep 5; done

name=$FEDILAB_ADMIN_USERNAME
exists=$(psql -X -A -t -v ON_ERROR_STOP=1 -v name="$name" <<'SQL'
SELECT count(*) FROM "user" WHERE host IS NULL AND "usernameLower" = lower(:'name');
SQL
)
if [ "$exists" = 0 ]; then
    echo "fedilab: creating the admin $name"
    post /api/admin/accounts/create \
        "{\"username\":$(json_string "$name"),\"password\":$(json_string "$FEDILAB_ADMIN_PASSWORD"),\"setupPassword\":$(json_string "$FEDILAB_SETUP_PASSWORD")}" \
        >/dev/null
fi

echo "fedilab: setting the admin's API token"
updated=$(psql -X -A -t -v ON_ERROR_STOP=1 -v name="$name" -v token="$FEDILAB_API_TOKEN" <<'SQL'
WITH u AS (
    UPDATE "user" SET token = :'token'
    WHERE host IS NULL AND "usernameLower" = lower(:'name')
    RETURNING id
) SELECT count(*) FROM u;
SQL
)
if [ "$updated" != 1 ]; then
    echo "fedilab: no local user $name to give the token to" >&2
    exit 1
fi

echo "fedilab: checking the token"
me=$(post /api/i "{\"i\":$(json_string "$FEDILAB_API_TOKEN")}")
if printf '%s' "$me" | grep -Eq "\"username\": *\"$name\""; then
    echo "fedilab: setup complete"
else
    echo "fedilab: the token does not work: $me" >&2
    exit 1
fi
