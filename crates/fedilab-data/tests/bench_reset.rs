//! `scripts/bench-reset.sh`: the time of each step of a snapshot save and
//! a reset, with the same argv the cluster runs, against a local
//! PostgreSQL (the Mastodon-size schema), Redis (Sidekiq-like keys) and a
//! media directory of a few MB. Prints `bench` lines (the median of
//! `FEDILAB_BENCH_ROUNDS` rounds, default 5); asserts only that the state
//! came back, never a time. Ignored in normal runs.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use fedilab_data::snapshot::{self, SnapshotName};
use fedilab_data::{Database, MediaPlace, RedisPlace};
use fedilab_profile::names::Component;
use fedilab_testdb::{TempPostgres, TempRedis, fingerprint, mastodon_like};

fn output(command: &mut Command) -> io::Result<String> {
    let out = command.output()?;
    if !out.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: scripts/bench-reset.sh"]
fn bench_reset_steps() -> io::Result<()> {
    let rounds: usize = std::env::var("FEDILAB_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    let pg = TempPostgres::start()?;
    pg.create_db("mastodon")?;
    mastodon_like::load(&pg, "mastodon")?;
    let redis = TempRedis::start()?;
    mastodon_like::load_redis(&redis, 0)?;
    let media_dir = tempfile::tempdir()?;
    // A few MB of media: 200 files of 25 KB in Paperclip-like paths.
    for i in 0..200 {
        let dir = media_dir
            .path()
            .join(format!("media_attachments/files/{:03}/original", i % 40));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{i}.png")), vec![(i % 251) as u8; 25_000])?;
    }
    let db = Database {
        component: Component::Postgres,
        container: "postgres",
        name: "mastodon",
        user: "postgres",
    };
    let place = RedisPlace {
        component: Component::Redis,
        container: "redis",
        db: 0,
    };
    let dir: &'static str = Box::leak(
        media_dir
            .path()
            .to_string_lossy()
            .into_owned()
            .into_boxed_str(),
    );
    let media = MediaPlace {
        component: Component::Web,
        container: "web",
        dir,
    };
    let size = pg.psql(
        "postgres",
        "SELECT pg_size_pretty(pg_database_size('mastodon'))",
    )?;
    let keys = redis.cli(&["DBSIZE"])?;
    println!(
        "bench state: database {} (100 tables), redis {} keys, media 200 files 5 MB",
        size.trim(),
        keys.trim()
    );
    let pg_argv = |statements: &[String]| snapshot::psql(&db, statements);
    let run = |argv: Vec<String>| -> io::Result<Duration> {
        let start = Instant::now();
        let mut command = match argv[0].as_str() {
            "psql" => pg.command("psql"),
            "redis-cli" => redis.command(),
            _ => Command::new(&argv[0]),
        };
        output(command.args(&argv[1..]))?;
        Ok(start.elapsed())
    };
    let fresh = SnapshotName::fresh();
    let saved = fingerprint::pg(&pg, "mastodon")?;
    let names = [
        "save database",
        "save redis",
        "save media",
        "prepare database",
        "prepare redis",
        "prepare media",
        "commit database",
        "commit redis",
        "commit media",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        let steps = [
            pg_argv(&snapshot::pg_save("mastodon", &fresh, "bench")),
            snapshot::redis_save(&place, &fresh),
            snapshot::media_save(&media, &fresh),
        ];
        for (i, argv) in steps.into_iter().enumerate() {
            times[i].push(run(argv)?);
        }
        mastodon_like::change(&pg, "mastodon")?;
        redis.cli(&["RPUSH", "queue:push", "stale"])?;
        let steps = [
            pg_argv(&snapshot::pg_prepare("mastodon", &fresh)),
            snapshot::redis_prepare(&place, &fresh),
            snapshot::media_prepare(&media, &fresh),
            pg_argv(&snapshot::pg_commit("mastodon")),
            snapshot::redis_commit(&place),
            snapshot::media_commit(&media),
        ];
        for (i, argv) in steps.into_iter().enumerate() {
            times[3 + i].push(run(argv)?);
        }
        assert_eq!(fingerprint::pg(&pg, "mastodon")?, saved);
    }
    for (name, t) in names.iter().zip(times) {
        println!(
            "bench {name:<18} {:>8.1} ms",
            median(t).as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
