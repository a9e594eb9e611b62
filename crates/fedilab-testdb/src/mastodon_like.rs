//! A database and a Redis of Mastodon's shape and size, generated here
//! (not Mastodon's own schema): 100 tables with bigint ids from sequences,
//! timestamps, text and jsonb columns, foreign keys and about 300 indexes,
//! holding a few thousand rows; and Sidekiq-like Redis keys (queues, the
//! `retry` and `schedule` sorted sets, process hashes, cache strings with
//! TTLs). Enough for state commands to copy, dump and swap something that
//! takes as long as the real thing's catalogue.

use std::io;

use crate::{TempPostgres, TempRedis};

/// Tables besides `accounts` and `statuses`.
pub const SATELLITES: usize = 98;
/// Rows in `accounts`.
pub const ACCOUNTS: usize = 500;
/// Rows in `statuses`.
pub const STATUSES: usize = 2000;
/// Rows in each satellite table.
pub const SATELLITE_ROWS: usize = 20;

/// The schema and rows, as one SQL script.
pub fn sql() -> String {
    let mut sql = format!(
        r"CREATE TABLE accounts (
            id bigserial PRIMARY KEY,
            username text NOT NULL,
            domain text,
            note text NOT NULL DEFAULT '',
            fields jsonb,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL);
         CREATE UNIQUE INDEX index_accounts_on_username_and_domain ON accounts (lower(username), domain);
         CREATE TABLE statuses (
            id bigserial PRIMARY KEY,
            account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            uri text,
            text text NOT NULL DEFAULT '',
            visibility integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL);
         CREATE INDEX index_statuses_on_account_id_and_id ON statuses (account_id, id DESC);
         CREATE UNIQUE INDEX index_statuses_on_uri ON statuses (uri);
         INSERT INTO accounts (username, domain, note, fields, created_at, updated_at)
           SELECT 'user' || i, CASE WHEN i % 3 = 0 THEN 'remote' || (i % 7) || '.example' END,
                  repeat('note ', i % 20), jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i)),
                  timestamptz '2026-01-01' + i * interval '1 minute', now()
           FROM generate_series(1, {ACCOUNTS}) i;
         INSERT INTO statuses (account_id, uri, text, visibility, created_at, updated_at)
           SELECT 1 + i % {ACCOUNTS}, 'https://lab.example/statuses/' || i, 'status ' || md5(i::text),
                  i % 4, timestamptz '2026-02-01' + i * interval '1 second', now()
           FROM generate_series(1, {STATUSES}) i;
"
    );
    for n in 0..SATELLITES {
        sql.push_str(&format!(
            r"CREATE TABLE satellite_{n:02} (
                id bigserial PRIMARY KEY,
                account_id bigint REFERENCES accounts (id) ON DELETE CASCADE,
                status_id bigint REFERENCES statuses (id) ON DELETE SET NULL,
                value text,
                data jsonb NOT NULL DEFAULT '{{}}',
                created_at timestamptz NOT NULL DEFAULT now());
             CREATE INDEX index_satellite_{n:02}_on_account_id ON satellite_{n:02} (account_id);
             CREATE INDEX index_satellite_{n:02}_on_status_id ON satellite_{n:02} (status_id);
             INSERT INTO satellite_{n:02} (account_id, status_id, value, data, created_at)
               SELECT 1 + (i * {n} + i) % {ACCOUNTS}, 1 + (i * 31 + {n}) % {STATUSES}, 'v' || i,
                      jsonb_build_object('i', i, 't', {n}), timestamptz '2026-03-01' + i * interval '1 hour'
               FROM generate_series(1, {SATELLITE_ROWS}) i;
"
        ));
    }
    sql
}

/// Creates the schema and rows in database `db` (which must exist).
///
/// # Errors
/// psql failed.
pub fn load(pg: &TempPostgres, db: &str) -> io::Result<()> {
    pg.psql(db, &sql()).map(drop)
}

/// An experiment's changes: new rows (sequences advance), updated and
/// deleted rows, in several tables.
///
/// # Errors
/// psql failed.
pub fn change(pg: &TempPostgres, db: &str) -> io::Result<()> {
    pg.psql(
        db,
        r"INSERT INTO accounts (username, note, created_at, updated_at)
           VALUES ('alice', 'made during the experiment', now(), now());
         INSERT INTO statuses (account_id, text, created_at, updated_at)
           SELECT id, 'hello', now(), now() FROM accounts WHERE username = 'alice';
         UPDATE statuses SET text = 'edited' WHERE id % 10 = 0;
         DELETE FROM satellite_07 WHERE id % 2 = 0;
         INSERT INTO satellite_42 (value) VALUES ('new');",
    )
    .map(drop)
}

/// Sidekiq-like keys in logical database `db`: three queue lists, the
/// `retry` and `schedule` sorted sets, process hashes and cache strings
/// with TTLs (about 600 keys and members).
///
/// # Errors
/// redis-cli failed or Redis answered an error.
pub fn load_redis(redis: &TempRedis, db: u8) -> io::Result<()> {
    const SCRIPT: &str = r#"
        for i = 1, 100 do
          redis.call('RPUSH', 'queue:push', '{"class":"ActivityPub::DeliveryWorker","jid":"p' .. i .. '"}')
          redis.call('RPUSH', 'queue:default', '{"class":"LinkCrawlWorker","jid":"d' .. i .. '"}')
          redis.call('ZADD', 'retry', 1790000000 + i, '{"jid":"r' .. i .. '","retry_count":' .. (i % 5) .. '}')
          redis.call('ZADD', 'schedule', 1790000000 + i, '{"jid":"s' .. i .. '"}')
          redis.call('SET', 'cache:statuses/' .. i, string.rep('x', i), 'EX', 86400)
          redis.call('HSET', 'feed:meta:' .. (i % 10), 'k' .. i, i)
        end
        redis.call('RPUSH', 'queue:ingress', 'one')
        redis.call('SADD', 'queues', 'push', 'default', 'ingress')
        redis.call('HSET', 'web-1:1:abc', 'busy', 0, 'beat', 1790000000)
        redis.call('SADD', 'processes', 'web-1:1:abc')
        return 'OK'"#;
    let reply = redis.cli(&["-n", &db.to_string(), "EVAL", SCRIPT, "0"])?;
    if reply.trim() != "OK" {
        return Err(io::Error::other(format!("loading Redis keys: {reply}")));
    }
    Ok(())
}
