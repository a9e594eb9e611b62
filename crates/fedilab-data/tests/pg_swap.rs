//! `fedilab_data::pg::swap` against a real PostgreSQL (a throwaway cluster
//! on loopback): the live name ends on the new data while a client holds a
//! connection, and a swap that fails midway leaves the old data live.

use std::io::{self, Write as _};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use fedilab_data::pg;
use fedilab_testdb::{TempPostgres, fingerprint, mastodon_like};

fn run_script(server: &TempPostgres, statements: &[String]) -> io::Result<String> {
    let mut child = server
        .command("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "postgres",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?
        .write_all(pg::script(statements).as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// A client that keeps a connection to `db` open (as the server's pool
/// does), returned once the server lists the connection; killed on drop.
fn hold_connection(server: &TempPostgres, db: &str) -> io::Result<Held> {
    let child = server
        .command("psql")
        .args(["-X", "-q", "-d", db, "-c", "SELECT pg_sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let held = Held(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE '%pg_sleep%'"
    );
    while server.psql("postgres", &query)?.trim() != "1" {
        if Instant::now() > deadline {
            return Err(io::Error::other("the held connection never showed up"));
        }
        sleep(Duration::from_millis(20));
    }
    Ok(held)
}

/// A process killed when dropped (a failed test leaves no client behind).
struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prepared() -> io::Result<(TempPostgres, String, String)> {
    let server = TempPostgres::start()?;
    server.create_db("mastodon")?;
    mastodon_like::load(&server, "mastodon")?;
    let old = fingerprint::pg(&server, "mastodon")?;
    server.psql(
        "postgres",
        "CREATE DATABASE mastodon_next TEMPLATE mastodon",
    )?;
    mastodon_like::change(&server, "mastodon_next")?;
    let new = fingerprint::pg(&server, "mastodon_next")?;
    assert_ne!(old, new);
    Ok((server, old, new))
}

#[test]
fn swap_puts_the_new_data_under_the_live_name_despite_open_connections() -> io::Result<()> {
    let (server, _old, new) = prepared()?;
    let mut held = hold_connection(&server, "mastodon")?;
    run_script(
        &server,
        &pg::swap("mastodon", "mastodon_next", "mastodon_old"),
    )?;
    assert_eq!(fingerprint::pg(&server, "mastodon")?, new);
    let dbs = server.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1")?;
    assert!(
        !dbs.contains("mastodon_old") && !dbs.contains("mastodon_next"),
        "{dbs}"
    );
    let status = held.0.wait()?;
    assert!(!status.success(), "the held connection was ended");
    Ok(())
}

#[test]
fn a_swap_that_fails_in_the_transaction_leaves_the_old_data_live() -> io::Result<()> {
    let (server, old, _new) = prepared()?;
    // The second rename fails: `next` has another name now.
    server.psql(
        "postgres",
        "ALTER DATABASE mastodon_next RENAME TO elsewhere",
    )?;
    let failed = run_script(
        &server,
        &pg::swap("mastodon", "mastodon_next", "mastodon_old"),
    );
    assert!(failed.is_err());
    run_script(&server, &[pg::reopen("mastodon")])?;
    assert_eq!(fingerprint::pg(&server, "mastodon")?, old);
    Ok(())
}
