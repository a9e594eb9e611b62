//! SQL for whole-database moves in an instance's PostgreSQL, run with psql
//! against the `postgres` maintenance database (never the database being
//! moved).
//!
//! [`swap`] is how every state command (reset, restore, import) replaces a
//! live database with one prepared beside it: the data is copied or
//! restored into `next` while the server keeps running on `live`, then the
//! two names are exchanged in one transaction. At every moment `live`
//! names either the old data or the new, never a mix; what a failure can
//! leave behind is a live database that refuses connections (undone by
//! [`reopen`]) or a stray `next`/`old` (dropped by the next attempt).

/// `name` as an SQL identifier: in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal: in single quotes, inner quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Closes `db` to new connections and ends the open ones (the server's
/// pools reconnect once it is open again). PostgreSQL waits up to 5 s for
/// the ended backends to exit before a rename or drop gives up.
pub fn close(db: &str) -> Vec<String> {
    vec![
        format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            quote_ident(db)
        ),
        format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = {} AND pid <> pg_backend_pid()",
            quote_literal(db)
        ),
    ]
}

/// Opens `db` to connections again (after [`close`], or to undo a failed
/// [`swap`]).
pub fn reopen(db: &str) -> String {
    format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        quote_ident(db)
    )
}

/// Drops `db` if it exists, ending its connections first.
pub fn drop_database(db: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db))
}

/// Replaces database `live` by `next` (which must exist and be ready):
/// closes `live`, then in one transaction renames `live` to `old` and
/// `next` to `live` and opens the new `live`; finally drops `old`. Run the
/// statements in order and stop at the first error, then run [`reopen`]
/// of `live` (it names the old data if the transaction did not commit).
pub fn swap(live: &str, next: &str, old: &str) -> Vec<String> {
    let mut sql = vec![drop_database(old)];
    sql.extend(close(live));
    sql.extend([
        "BEGIN".to_owned(),
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(live),
            quote_ident(old)
        ),
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(next),
            quote_ident(live)
        ),
        reopen(live),
        "COMMIT".to_owned(),
        drop_database(old),
    ]);
    sql
}

/// Statements as one psql script (`psql -v ON_ERROR_STOP=1 -f -`).
pub fn script(statements: &[String]) -> String {
    statements.iter().map(|s| format!("{s};\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_inner_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn the_renames_are_one_transaction() {
        let sql = swap("mastodon", "mastodon_next", "mastodon_old");
        let begin = sql.iter().position(|s| s == "BEGIN");
        let commit = sql.iter().position(|s| s == "COMMIT");
        let renames: Vec<usize> = (0..sql.len())
            .filter(|&i| sql[i].contains("RENAME"))
            .collect();
        assert_eq!(renames.len(), 2);
        assert!(begin < renames.first().copied() && renames.last().copied() < commit);
    }
}
