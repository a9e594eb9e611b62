//! Whether two states hold the same data: a fingerprint is one line per
//! table (row count and the md5 of its rows in a fixed order), per sequence
//! (its last value) or per Redis key (type, a hash of its `DUMP`, TTL or
//! not), sorted. Equal fingerprints mean equal data; a diff of two says
//! where they differ.

use std::io;

use crate::{TempPostgres, TempRedis};

/// The fingerprint of database `db`'s `public` schema.
///
/// # Errors
/// psql failed.
pub fn pg(pg: &TempPostgres, db: &str) -> io::Result<String> {
    let tables = pg.psql(
        db,
        "SELECT format('%I', tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )?;
    let mut parts: Vec<String> = tables
        .lines()
        .filter(|t| !t.is_empty())
        .map(|t| {
            format!(
                "SELECT 'table {t} ' || count(*) || ' ' || \
                 md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) FROM {t} r"
            )
        })
        .collect();
    parts.push(
        "SELECT 'sequence ' || sequencename || ' ' || coalesce(last_value::text, 'unused') \
         FROM pg_sequences WHERE schemaname = 'public'"
            .to_owned(),
    );
    let mut lines: Vec<String> = pg
        .psql(db, &parts.join(" UNION ALL "))?
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    Ok(lines.join("\n"))
}

/// The fingerprint of Redis logical database `db`.
///
/// # Errors
/// redis-cli failed.
pub fn redis(redis: &TempRedis, db: u8) -> io::Result<String> {
    const SCRIPT: &str = r"
        local out = {}
        for _, k in ipairs(redis.call('KEYS', '*')) do
          local ttl = redis.call('PTTL', k) > 0 and 'ttl' or 'persistent'
          local t = redis.call('TYPE', k)['ok']
          table.insert(out, k .. ' ' .. t .. ' ' .. redis.sha1hex(redis.call('DUMP', k)) .. ' ' .. ttl)
        end
        table.sort(out)
        return out";
    redis.cli(&["-n", &db.to_string(), "EVAL", SCRIPT, "0"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mastodon_like;

    #[test]
    fn a_changed_database_and_redis_have_other_fingerprints() -> io::Result<()> {
        let pg_server = TempPostgres::start()?;
        pg_server.create_db("lab")?;
        mastodon_like::load(&pg_server, "lab")?;
        let before = pg(&pg_server, "lab")?;
        assert_eq!(
            before.lines().filter(|l| l.starts_with("table ")).count(),
            100
        );
        assert_eq!(before, pg(&pg_server, "lab")?, "a fingerprint is stable");
        mastodon_like::change(&pg_server, "lab")?;
        let after = pg(&pg_server, "lab")?;
        let differ = before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            differ >= 5,
            "changes show up in tables and sequences:\n{after}"
        );

        let redis_server = TempRedis::start()?;
        mastodon_like::load_redis(&redis_server, 0)?;
        let keys = redis(&redis_server, 0)?;
        assert!(keys.contains("retry zset"), "{keys}");
        assert!(keys.contains("cache:statuses/1 string"), "{keys}");
        redis_server.cli(&["LPOP", "queue:push"])?;
        assert_ne!(keys, redis(&redis_server, 0)?);
        assert_eq!(
            redis(&redis_server, 1)?.trim(),
            "",
            "other databases are empty"
        );
        Ok(())
    }
}
