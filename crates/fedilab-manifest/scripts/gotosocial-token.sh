#!/bin/sh
# fedilab setup, second step, for one GoToSocial instance; runs in the
# PostgreSQL image (psql) after gotosocial-admin.sh. Environment:
# FEDILAB_ADMIN_USERNAME, FEDILAB_API_TOKEN, FEDILAB_OAUTH_APP, and
# PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for the instance's database.
# GoToSocial has no password grant; it stores tokens in plain text. This
# writes one application (client) and one access token for the admin,
# never expiring, with fedilab's token value, or updates them.
# Running it again changes nothing.
set -eu
psql -X -q -v ON_ERROR_STOP=1 -v name="$FEDILAB_ADMIN_USERNAME" \
    -v token="$FEDILAB_API_TOKEN" -v app="$FEDILAB_OAUTH_APP" <<'SQL'
BEGIN;
-- Fixed ids (26-character ULIDs of fedilab's own): one app, one token.
INSERT INTO applications (id, name, redirect_uris, client_id, client_secret, scopes)
VALUES ('01JF3DAB0APP00000000000000', :'app', '{urn:ietf:wg:oauth:2.0:oob}',
        '01JF3DAB0C11ENT00000000000', md5(:'token'), 'read write push admin')
ON CONFLICT (id) DO NOTHING;
DELETE FROM tokens WHERE id = '01JF3DAB0T0KEN000000000000';
INSERT INTO tokens (id, client_id, user_id, redirect_uri, scope, access, access_create_at)
SELECT '01JF3DAB0T0KEN000000000000', '01JF3DAB0C11ENT00000000000', u.id,
       'urn:ietf:wg:oauth:2.0:oob', 'read write push admin', :'token', now()
FROM users u JOIN accounts a ON a.id = u.account_id
WHERE a.username = :'name' AND a.domain IS NULL;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM tokens WHERE id = '01JF3DAB0T0KEN000000000000') THEN
        RAISE EXCEPTION 'fedilab: no local account with the admin''s name (gotosocial-admin.sh creates it)';
    END IF;
END $$;
COMMIT;
SQL
echo "fedilab: setup complete"
