//! `fedilab_orchestrator::backup` end to end: the loopback exec server
//! (`exec_server`) runs each requested command as a local process against
//! a throwaway PostgreSQL with a Mastodon-size schema, so `pg_dump -Fc`
//! output really streams through the exec protocol into the test and back
//! into `pg_restore`. Checked: which commands run, in which container and
//! order; data equal after backup, change, restore (fingerprints); a
//! failed load leaving the live database as it was and no stray database;
//! plain-format dumps; media staged and swapped, or discarded on failure.

mod exec_server;

use std::path::Path;
use std::sync::Arc;

use fedilab_orchestrator::ExecTarget;
use fedilab_orchestrator::backup::{
    self, BackupError, DatabaseTarget, LoadFormat, MEDIA_STAGING, MediaTarget,
};
use fedilab_profile::names::Component;
use fedilab_testdb::{TempPostgres, fingerprint, mastodon_like};

use exec_server::*;

/// The exec server with every command run locally; PostgreSQL's programs
/// come from the test server's version and reach it by its environment.
async fn local_server(pg: &TempPostgres) -> Server {
    let bindir = pg
        .bin("psql")
        .parent()
        .expect("a bin directory")
        .to_path_buf();
    let env = pg.env();
    let local = Local(Arc::new(move |argv: &[String]| {
        let program = match argv[0].as_str() {
            "psql" | "pg_dump" | "pg_restore" => bindir.join(&argv[0]),
            other => other.into(),
        };
        let mut command = tokio::process::Command::new(program);
        command.args(&argv[1..]).envs(env.clone());
        command
    }));
    start(Config {
        pods: serde_json::json!([ready_web_pod("mastodon1-pod")]),
        protocols: &[V5],
        script: Script::Local(local),
    })
    .await
}

fn exec_target(component: Component) -> ExecTarget {
    ExecTarget {
        component,
        ..target()
    }
}

fn database() -> DatabaseTarget {
    DatabaseTarget {
        exec: exec_target(Component::Postgres),
        database: "mastodon".to_owned(),
        user: "mastodon".to_owned(),
    }
}

/// A PostgreSQL with the lab's role and a Mastodon-size `mastodon`
/// database.
fn postgres() -> TempPostgres {
    let pg = TempPostgres::start().expect("PostgreSQL starts");
    pg.psql("postgres", "CREATE ROLE mastodon SUPERUSER LOGIN")
        .expect("role");
    pg.psql("postgres", "CREATE DATABASE mastodon OWNER mastodon")
        .expect("database");
    mastodon_like::load(&pg, "mastodon").expect("schema and rows");
    pg
}

fn databases(pg: &TempPostgres) -> Vec<String> {
    pg.psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1",
    )
    .expect("list")
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The first word of each exec'd command after `sh -c`'s script, and the
/// container asked for.
fn commands(server: &Server) -> Vec<String> {
    let seen = server.seen.lock().expect("lock");
    seen.execs
        .iter()
        .map(|(_, query)| {
            let argv: Vec<&str> = query
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.as_str())
                .collect();
            match argv.first() {
                Some(&"psql") => {
                    let db = argv
                        .iter()
                        .skip_while(|a| **a != "-d")
                        .nth(1)
                        .unwrap_or(&"?");
                    format!("psql -d {db}")
                }
                Some(first) => (*first).to_owned(),
                None => String::new(),
            }
        })
        .collect()
}

#[tokio::test]
async fn backup_change_restore_gives_the_same_rows_and_sequences() {
    let pg = postgres();
    let before = fingerprint::pg(&pg, "mastodon").expect("fingerprint");
    let s = local_server(&pg).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("database.pgdump");

    // Backup: pg_dump's stdout streamed into a file.
    let mut file = tokio::fs::File::create(&path).await.expect("create");
    bounded(backup::dump_database(&s.cluster, &database(), &mut file))
        .await
        .expect("pg_dump");
    drop(file);
    let head = std::fs::read(&path).expect("read");
    assert!(head.starts_with(b"PGDMP"), "a custom-format dump");

    // The experiment changes the data.
    mastodon_like::change(&pg, "mastodon").expect("change");
    assert_ne!(fingerprint::pg(&pg, "mastodon").expect("fp"), before);

    // Restore: into a new database, then swapped in.
    let mut file = tokio::fs::File::open(&path).await.expect("open");
    bounded(backup::load_database(
        &s.cluster,
        &database(),
        "mastodon_restore",
        LoadFormat::Custom,
        &mut file,
    ))
    .await
    .expect("pg_restore");
    bounded(backup::swap_database(
        &s.cluster,
        &database(),
        "mastodon_restore",
        "mastodon_old",
    ))
    .await
    .expect("swap");

    assert_eq!(fingerprint::pg(&pg, "mastodon").expect("fp"), before);
    assert_eq!(databases(&pg), ["mastodon"], "no database left behind");
    assert_eq!(
        commands(&s),
        [
            "pg_dump",
            "psql -d postgres",
            "pg_restore",
            "psql -d postgres"
        ]
    );
    // Every command ran in the PostgreSQL pod's container, found by the
    // postgres component's selector.
    let seen = s.seen.lock().expect("lock");
    assert!(
        seen.selectors
            .iter()
            .all(|sel| sel.contains("app.kubernetes.io/component=postgres")),
        "{:?}",
        seen.selectors
    );
}

#[tokio::test]
async fn a_failed_load_leaves_the_live_database_and_nothing_else() {
    let pg = postgres();
    let before = fingerprint::pg(&pg, "mastodon").expect("fingerprint");
    let s = local_server(&pg).await;
    let mut garbage: &[u8] = b"PGDMP but not really a dump, cut short";
    let err = bounded(backup::load_database(
        &s.cluster,
        &database(),
        "mastodon_restore",
        LoadFormat::Custom,
        &mut garbage,
    ))
    .await
    .expect_err("not a dump");
    let BackupError::Command { code, stderr, .. } = &err else {
        panic!("{err:?}");
    };
    assert_ne!(*code, 0);
    assert!(stderr.contains("pg_restore"), "{stderr}");
    assert!(
        err.to_string()
            .starts_with("pg_restore into database mastodon_restore: `pg_restore --no-owner --no-privileges` exited"),
        "{err}"
    );
    assert_eq!(fingerprint::pg(&pg, "mastodon").expect("fp"), before);
    assert_eq!(databases(&pg), ["mastodon"], "the new database was dropped");
    // create, load, drop again.
    assert_eq!(
        commands(&s),
        ["psql -d postgres", "pg_restore", "psql -d postgres"]
    );
}

#[tokio::test]
async fn a_plain_dump_loads_through_psql() {
    let pg = postgres();
    let before = fingerprint::pg(&pg, "mastodon").expect("fingerprint");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plain.sql");
    let out = pg
        .command("pg_dump")
        .args(["-d", "mastodon", "--no-owner", "-f"])
        .arg(&path)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mastodon_like::change(&pg, "mastodon").expect("change");
    let s = local_server(&pg).await;
    let mut file = tokio::fs::File::open(&path).await.expect("open");
    bounded(backup::load_database(
        &s.cluster,
        &database(),
        "mastodon_import",
        LoadFormat::Plain,
        &mut file,
    ))
    .await
    .expect("psql");
    bounded(backup::swap_database(
        &s.cluster,
        &database(),
        "mastodon_import",
        "mastodon_old",
    ))
    .await
    .expect("swap");
    assert_eq!(fingerprint::pg(&pg, "mastodon").expect("fp"), before);
    assert_eq!(
        commands(&s),
        [
            "psql -d postgres",
            "psql -d mastodon_import",
            "psql -d postgres"
        ]
    );
}

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
}

fn read_tree(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path
                    .strip_prefix(root)
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned();
                out.push((name, std::fs::read_to_string(&path).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn media_are_archived_staged_and_swapped_or_discarded() {
    let pg = TempPostgres::start().expect("PostgreSQL starts");
    let s = local_server(&pg).await;
    let media_dir = tempfile::tempdir().expect("tempdir");
    let root = media_dir.path();
    write_tree(
        root,
        &[
            ("media_attachments/files/1/original/a.png", "png"),
            ("accounts/avatars/2/original/b.jpg", "jpg"),
        ],
    );
    let original = read_tree(root);
    let media = MediaTarget {
        exec: exec_target(Component::Web),
        dir: root.to_string_lossy().into_owned(),
    };
    let mut tar = Vec::new();
    bounded(backup::dump_media(&s.cluster, &media, &mut tar))
        .await
        .expect("tar");

    // The lab goes on: a file goes, another comes.
    std::fs::remove_file(root.join("accounts/avatars/2/original/b.jpg")).expect("rm");
    write_tree(root, &[("cache/new.png", "new")]);
    let changed = read_tree(root);

    // A broken tar: nothing changes, nothing is left behind.
    let mut broken: &[u8] = b"not a tar at all";
    bounded(backup::stage_media(&s.cluster, &media, &mut broken))
        .await
        .expect_err("not a tar");
    assert_eq!(read_tree(root), changed);
    assert!(!root.join(MEDIA_STAGING).exists());

    // Staged: the live media are untouched until the swap.
    bounded(backup::stage_media(&s.cluster, &media, &mut &tar[..]))
        .await
        .expect("stage");
    assert!(root.join(MEDIA_STAGING).is_dir());
    bounded(backup::swap_media(&s.cluster, &media))
        .await
        .expect("swap");
    assert_eq!(read_tree(root), original);
    assert_eq!(
        commands(&s),
        ["tar", "sh", "sh", "sh", "sh"],
        "tar, stage (fails), discard, stage, swap"
    );
}
