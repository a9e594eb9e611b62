//! `fedilab_data::snapshot`'s plans run for real: the psql argv against a
//! throwaway PostgreSQL holding a schema of Mastodon's size, the Redis
//! scripts against a throwaway Redis, the media scripts with the local
//! `sh` over a temp directory. Save, change, reset: the fingerprints (rows,
//! sequences, Redis keys, files) are the saved ones; a reset cut short
//! leaves the old state or the new.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::Command;

use fedilab_data::snapshot::{self, SnapshotName};
use fedilab_data::{Database, MediaPlace, RedisPlace};
use fedilab_profile::names::Component;
use fedilab_testdb::{TempPostgres, TempRedis, fingerprint, mastodon_like};

const LIVE: &str = "mastodon";

fn db() -> Database {
    Database {
        component: Component::Postgres,
        container: "postgres",
        name: LIVE,
        user: "postgres",
    }
}

fn redis_place() -> RedisPlace {
    RedisPlace {
        component: Component::Redis,
        container: "redis",
        db: 0,
    }
}

fn output(command: &mut Command) -> io::Result<String> {
    let out = command.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            command.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a psql argv as the postgres container would (its first word is
/// the program; the server's address comes from the environment).
fn run_pg(pg: &TempPostgres, statements: &[String]) -> io::Result<String> {
    let argv = snapshot::psql(&db(), statements);
    output(pg.command(&argv[0]).args(&argv[1..]))
}

fn run_redis(redis: &TempRedis, argv: &[String]) -> io::Result<String> {
    output(redis.command().args(&argv[1..]))
}

fn run_sh(argv: &[String]) -> io::Result<String> {
    output(Command::new(&argv[0]).args(&argv[1..]))
}

fn name(s: &str) -> SnapshotName {
    s.parse().expect("a snapshot name")
}

fn started() -> io::Result<(TempPostgres, TempRedis)> {
    let pg = TempPostgres::start()?;
    pg.create_db(LIVE)?;
    mastodon_like::load(&pg, LIVE)?;
    let redis = TempRedis::start()?;
    mastodon_like::load_redis(&redis, 0)?;
    Ok((pg, redis))
}

fn reset_db(pg: &TempPostgres, to: &SnapshotName) -> io::Result<()> {
    run_pg(pg, &snapshot::pg_prepare(LIVE, to))?;
    run_pg(pg, &snapshot::pg_commit(LIVE))?;
    Ok(())
}

#[test]
fn database_save_change_reset_gives_the_saved_rows_and_sequences() -> io::Result<()> {
    let (pg, _redis) = started()?;
    let saved = fingerprint::pg(&pg, LIVE)?;
    let fresh = SnapshotName::fresh();
    run_pg(
        &pg,
        &snapshot::pg_save(LIVE, &fresh, "2026-12-07T03:00:00Z"),
    )?;
    mastodon_like::change(&pg, LIVE)?;
    assert_ne!(fingerprint::pg(&pg, LIVE)?, saved);
    reset_db(&pg, &fresh)?;
    assert_eq!(fingerprint::pg(&pg, LIVE)?, saved);
    // Again: the snapshot itself was not consumed.
    mastodon_like::change(&pg, LIVE)?;
    reset_db(&pg, &fresh)?;
    assert_eq!(fingerprint::pg(&pg, LIVE)?, saved);

    // Listed with its time; the live database accepts connections; no
    // helper database is left behind.
    let listed = snapshot::parse_pg_list(&run_pg(&pg, &snapshot::pg_list())?);
    assert_eq!(listed, [(fresh.clone(), "2026-12-07T03:00:00Z".to_owned())]);
    let dbs = pg.psql(
        "postgres",
        "SELECT datname || ' ' || datallowconn || ' ' || datistemplate FROM pg_database \
         WHERE datname NOT LIKE 'template%' AND datname <> 'postgres' ORDER BY 1",
    )?;
    assert_eq!(
        dbs.trim(),
        "fedilab_snap_fresh false true\nmastodon true false"
    );

    // Saving over a name replaces it; deleting removes it.
    mastodon_like::change(&pg, LIVE)?;
    let changed = fingerprint::pg(&pg, LIVE)?;
    run_pg(&pg, &snapshot::pg_save(LIVE, &fresh, "later"))?;
    mastodon_like::change(&pg, LIVE)?;
    reset_db(&pg, &fresh)?;
    assert_eq!(fingerprint::pg(&pg, LIVE)?, changed);
    run_pg(&pg, &snapshot::pg_delete(&fresh))?;
    run_pg(&pg, &snapshot::pg_delete(&fresh))?; // absent: no error
    assert!(run_pg(&pg, &snapshot::pg_list())?.trim().is_empty());
    let err = run_pg(&pg, &snapshot::pg_prepare(LIVE, &fresh)).expect_err("no snapshot");
    assert!(err.to_string().contains("does not exist"), "{err}");
    Ok(())
}

#[test]
fn a_reset_cut_short_leaves_the_old_data_or_the_new() -> io::Result<()> {
    let (pg, _redis) = started()?;
    let fresh = SnapshotName::fresh();
    let saved = fingerprint::pg(&pg, LIVE)?;
    run_pg(&pg, &snapshot::pg_save(LIVE, &fresh, "t"))?;
    mastodon_like::change(&pg, LIVE)?;
    let changed = fingerprint::pg(&pg, LIVE)?;
    run_pg(&pg, &snapshot::pg_prepare(LIVE, &fresh))?;
    let commit = snapshot::pg_commit(LIVE);
    // Cut after every statement of the swap (the psql session ends there,
    // as when the pod or the API goes away), then run the undo.
    for cut in 0..commit.len() {
        run_pg(&pg, &commit[..cut])?;
        run_pg(&pg, &snapshot::pg_undo(LIVE))?;
        let now = fingerprint::pg(&pg, LIVE)?;
        assert!(
            now == saved || now == changed,
            "cut after {cut} statements: neither old nor new"
        );
        if now == saved {
            // The new data is live: start over from the changed state.
            mastodon_like::change(&pg, LIVE)?;
        }
        run_pg(&pg, &snapshot::pg_prepare(LIVE, &fresh))?;
    }
    // A failing statement inside the transaction: the old data stays.
    let live_now = fingerprint::pg(&pg, LIVE)?;
    let mut failing = commit.clone();
    let commit_at = failing.iter().position(|s| s == "COMMIT").expect("COMMIT");
    failing.insert(commit_at, "SELECT 1/0".to_owned());
    assert!(run_pg(&pg, &failing).is_err());
    run_pg(&pg, &snapshot::pg_undo(LIVE))?;
    assert_eq!(fingerprint::pg(&pg, LIVE)?, live_now);
    // And the next full attempt succeeds.
    run_pg(&pg, &commit)?;
    assert_eq!(fingerprint::pg(&pg, LIVE)?, saved);
    Ok(())
}

#[test]
fn redis_save_change_reset_gives_the_saved_keys() -> io::Result<()> {
    let redis = TempRedis::start()?;
    mastodon_like::load_redis(&redis, 0)?;
    let place = redis_place();
    let saved = fingerprint::redis(&redis, 0)?;
    let fresh = SnapshotName::fresh();
    let out = run_redis(&redis, &snapshot::redis_save(&place, &fresh))?;
    assert!(out.starts_with("saved fresh db 2 keys "), "{out}");
    // An experiment: new jobs, a retry, a removed queue, a new key.
    redis.cli(&["RPUSH", "queue:push", "stale delivery"])?;
    redis.cli(&["ZADD", "retry", "1", "a retry from the experiment"])?;
    redis.cli(&["DEL", "queue:default"])?;
    redis.cli(&["SET", "new", "x"])?;
    assert_ne!(fingerprint::redis(&redis, 0)?, saved);
    run_redis(&redis, &snapshot::redis_prepare(&place, &fresh))?;
    // Prepared, not yet live.
    assert_ne!(fingerprint::redis(&redis, 0)?, saved);
    assert_eq!(
        run_redis(&redis, &snapshot::redis_commit(&place))?.trim(),
        "swapped"
    );
    assert_eq!(fingerprint::redis(&redis, 0)?, saved);
    assert_eq!(redis.cli(&["-n", "1", "DBSIZE"])?.trim(), "0");
    assert_eq!(redis.cli(&["EXISTS", snapshot::MARKER_KEY])?.trim(), "0");

    // Listing, a second snapshot in the next database, deleting.
    let other = name("before-follow");
    run_redis(&redis, &snapshot::redis_save(&place, &other))?;
    let listed = snapshot::parse_redis_list(&run_redis(&redis, &snapshot::redis_list(&place))?);
    let keys = redis.cli(&["DBSIZE"])?.trim().parse::<u64>().expect("n");
    assert_eq!(listed, [(fresh.clone(), keys), (other.clone(), keys)]);
    assert_eq!(
        run_redis(&redis, &snapshot::redis_delete(&place, &fresh))?.trim(),
        "deleted"
    );
    assert_eq!(
        run_redis(&redis, &snapshot::redis_delete(&place, &fresh))?.trim(),
        "absent"
    );
    let err = run_redis(&redis, &snapshot::redis_prepare(&place, &fresh)).expect_err("gone");
    assert!(err.to_string().contains("no Redis snapshot fresh"), "{err}");
    Ok(())
}

#[test]
fn redis_holds_as_many_snapshots_as_it_has_databases_and_says_so() -> io::Result<()> {
    let redis = TempRedis::start()?;
    let place = redis_place();
    redis.cli(&["SET", "k", "v"])?;
    // 16 databases: 0 live, 1 staging, 14 snapshots.
    for i in 0..14 {
        run_redis(
            &redis,
            &snapshot::redis_save(&place, &name(&format!("s{i}"))),
        )?;
    }
    // Saving over an existing name still works when all are taken.
    run_redis(&redis, &snapshot::redis_save(&place, &name("s3")))?;
    let err =
        run_redis(&redis, &snapshot::redis_save(&place, &name("one-more"))).expect_err("full");
    assert!(err.to_string().contains("all 14 hold snapshots"), "{err}");
    Ok(())
}

#[test]
fn the_workers_probe_reads_sidekiqs_heartbeats_and_queues() -> io::Result<()> {
    let redis = TempRedis::start()?;
    let place = redis_place();
    let probe = |redis: &TempRedis| -> io::Result<snapshot::WorkersState> {
        let out = run_redis(redis, &snapshot::workers_probe(&place))?;
        snapshot::parse_workers(&out).ok_or_else(|| io::Error::other(out))
    };
    assert_eq!(probe(&redis)?, snapshot::WorkersState::default());
    let now = redis.cli(&["TIME"])?;
    let now = now.lines().next().unwrap_or("0").to_owned();
    redis.cli(&["SADD", "processes", "sidekiq-1:1:a", "dead:1:b"])?;
    redis.cli(&[
        "HSET",
        "sidekiq-1:1:a",
        "beat",
        &format!("{now}.5"),
        "quiet",
        "false",
        "busy",
        "2",
    ])?;
    // A process that stopped beating long ago does not count.
    redis.cli(&[
        "HSET", "dead:1:b", "beat", "1000", "quiet", "false", "busy", "5",
    ])?;
    redis.cli(&["SADD", "queues", "push", "default"])?;
    redis.cli(&["RPUSH", "queue:push", "a", "b"])?;
    let state = probe(&redis)?;
    assert_eq!(
        state,
        snapshot::WorkersState {
            processes: 1,
            quiet: 0,
            busy: 2,
            queued: 2
        }
    );
    assert!(!state.quiet_and_idle() && !state.drained());
    redis.cli(&["HSET", "sidekiq-1:1:a", "quiet", "true", "busy", "0"])?;
    assert!(probe(&redis)?.quiet_and_idle());
    Ok(())
}

/// Every file under `dir` (not fedilab's own directory) with its content.
fn tree(dir: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let rel = path
                .strip_prefix(base)
                .map_err(io::Error::other)?
                .to_string_lossy()
                .into_owned();
            if rel == ".fedilab" {
                continue;
            }
            if path.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(base, &path, out)?;
            } else {
                out.insert(rel, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn write(dir: &Path, rel: &str, content: &str) -> io::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)
}

fn media(dir: &Path) -> MediaPlace {
    let dir: &'static str = Box::leak(dir.to_string_lossy().into_owned().into_boxed_str());
    MediaPlace {
        component: Component::Web,
        container: "web",
        dir,
    }
}

#[test]
fn media_save_change_reset_gives_the_saved_files_and_hides_the_copies() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    write(dir, "media_attachments/files/1/original/a.png", "a")?;
    write(dir, "accounts/avatars/1/b.jpg", "b")?;
    write(dir, ".hidden", "h")?;
    let place = media(dir);
    let saved = tree(dir)?;
    let fresh = SnapshotName::fresh();
    let out = run_sh(&snapshot::media_save(&place, &fresh))?;
    assert_eq!(out.trim(), "saved fresh files 3");
    // Between commands fedilab's directory is closed to everyone (the web
    // server runs as the same uid but cannot traverse it).
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join(".fedilab"))?.permissions(),
    );
    assert_eq!(mode & 0o777, 0);
    write(dir, "media_attachments/files/2/original/new.png", "n")?;
    std::fs::remove_dir_all(dir.join("accounts"))?;
    write(dir, "cache/x", "c")?;
    run_sh(&snapshot::media_prepare(&place, &fresh))?;
    assert_ne!(tree(dir)?, saved);
    run_sh(&snapshot::media_commit(&place))?;
    assert_eq!(tree(dir)?, saved);
    let listed = snapshot::parse_media_list(&run_sh(&snapshot::media_list(&place))?);
    assert_eq!(listed, [(fresh.clone(), 3)]);
    assert_eq!(
        run_sh(&snapshot::media_delete(&place, &fresh))?.trim(),
        "deleted"
    );
    let err = run_sh(&snapshot::media_prepare(&place, &fresh)).expect_err("gone");
    assert!(err.to_string().contains("no media snapshot fresh"), "{err}");
    Ok(())
}

#[test]
fn a_media_swap_cut_short_is_finished_by_the_next_media_command() -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    write(dir, "a/1", "old a")?;
    write(dir, "b/2", "old b")?;
    let place = media(dir);
    let fresh = SnapshotName::fresh();
    run_sh(&snapshot::media_save(&place, &fresh))?;
    let saved = tree(dir)?;
    write(dir, "a/1", "changed")?;
    write(dir, "c/3", "new")?;
    let changed = tree(dir)?;
    let f = dir.join(".fedilab");
    let open = |mode: u32| {
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(mode))
    };

    // Cut after the deciding rename, with one live entry moved out.
    run_sh(&snapshot::media_prepare(&place, &fresh))?;
    open(0o700)?;
    std::fs::rename(f.join("staging"), f.join("incoming"))?;
    std::fs::create_dir(f.join("old"))?;
    std::fs::rename(dir.join("a"), f.join("old/a"))?;
    open(0)?;
    run_sh(&snapshot::media_list(&place))?;
    assert_eq!(tree(dir)?, saved);

    // Cut in the second half, with one new entry moved in.
    write(dir, "a/1", "changed")?;
    write(dir, "c/3", "new")?;
    assert_eq!(tree(dir)?, changed);
    run_sh(&snapshot::media_prepare(&place, &fresh))?;
    open(0o700)?;
    std::fs::create_dir(f.join("old"))?;
    for e in ["a", "b", "c"] {
        std::fs::rename(dir.join(e), f.join("old").join(e))?;
    }
    std::fs::rename(f.join("staging"), f.join("moving-in"))?;
    std::fs::rename(f.join("moving-in/a"), dir.join("a"))?;
    open(0)?;
    run_sh(&snapshot::media_list(&place))?;
    assert_eq!(tree(dir)?, saved);

    // Cut before the deciding rename: the old files stay.
    write(dir, "c/3", "new")?;
    let before = tree(dir)?;
    run_sh(&snapshot::media_prepare(&place, &fresh))?;
    run_sh(&snapshot::media_list(&place))?;
    assert_eq!(tree(dir)?, before);
    Ok(())
}
