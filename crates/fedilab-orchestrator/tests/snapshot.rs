//! `fedilab_orchestrator::snapshot` end to end through the exec API,
//! against `exec_local`: a loopback server speaking the real exec
//! subprotocol that runs the commands against a local PostgreSQL, Redis and
//! media directory (Sidekiq is faked through its Redis heartbeat).
//!
//! What is checked: which container runs which command, in which order
//! (workers quiet before any swap, restarted last), the state after a
//! reset (fingerprints), and the cleanup after a failure or a cancel.

mod exec_local;

use std::sync::Mutex;
use std::time::Duration;

use exec_local::{Fail, Fingerprints, Server, bounded, experiment, fingerprints, start};
use fedilab_data::snapshot::SnapshotName;
use fedilab_orchestrator::snapshot::{
    SnapshotError, StateOptions, StateProgress, StateTarget, delete_instance, list_instance,
    reset_instance, save_instance,
};
use fedilab_profile::InstanceName;
use tokio::sync::watch;

#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl StateProgress for Notes {
    fn note(&self, instance: &InstanceName, text: &str) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("{instance}: {text}"));
    }
}

fn options() -> StateOptions {
    StateOptions {
        quiet_budget: Duration::from_secs(60),
        drain_budget: Duration::from_secs(60),
        poll: Duration::from_millis(20),
        resignal: Duration::ZERO,
        step_budget: Duration::from_secs(60),
    }
}

fn no_cancel() -> watch::Receiver<bool> {
    watch::channel(false).1
}

fn target<'a>(lab: &'a fedilab_profile::LabName, instance: &'a InstanceName) -> StateTarget<'a> {
    StateTarget {
        lab,
        instance,
        kind: fedilab_data::for_kind("mastodon").expect("mastodon"),
    }
}

fn names() -> (fedilab_profile::LabName, InstanceName) {
    (
        "main".parse().expect("lab"),
        "mastodon1".parse().expect("instance"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_then_reset_runs_each_step_in_its_container_and_restores_the_state() {
    let s = start().await;
    let (lab, instance) = names();
    let t = target(&lab, &instance);
    let fresh = SnapshotName::fresh();
    let notes = Notes::default();
    let saved = fingerprints(&s.backends).await;
    let outcome = bounded(save_instance(
        &s.cluster,
        t,
        &fresh,
        "2026-12-07T03:00:00Z",
        &options(),
        &notes,
        &no_cancel(),
    ))
    .await
    .expect("save");
    assert_eq!(
        s.backends.summary(),
        [
            "redis:probe",
            "sidekiq:tstp",
            "redis:probe",
            "postgres:save",
            "redis:save",
            "web:save",
            "sidekiq:term",
        ]
    );
    let parts: Vec<String> = outcome.parts.iter().map(|(_, o)| o.clone()).collect();
    assert!(parts[1].starts_with("saved fresh db 2 keys"), "{parts:?}");
    assert_eq!(parts[2], "saved fresh files 1");

    experiment(&s.backends).await;
    assert_ne!(fingerprints(&s.backends).await.pg, saved.pg);
    s.backends.ran.lock().expect("lock").clear();
    *s.backends.busy_probes.lock().expect("lock") = 3;
    let outcome = bounded(reset_instance(
        &s.cluster,
        t,
        &fresh,
        &options(),
        &notes,
        &no_cancel(),
    ))
    .await
    .expect("reset");
    let after = fingerprints(&s.backends).await;
    assert_eq!(after.pg, saved.pg);
    assert_eq!(after.redis, saved.redis);
    assert_eq!(after.media, saved.media);

    // Order: every prepare and the quiet (signal and probe until idle)
    // before the first commit; database, Redis, media; the restart last.
    let ran = s.backends.summary();
    let first_commit = ran.iter().position(|r| r.ends_with(":commit")).expect("c");
    let commits: Vec<&str> = ran[first_commit..].iter().map(String::as_str).collect();
    assert_eq!(
        commits,
        [
            "postgres:commit",
            "redis:commit",
            "web:commit",
            "sidekiq:term"
        ]
    );
    let before: Vec<&str> = ran[..first_commit].iter().map(String::as_str).collect();
    for prepared in ["postgres:prepare", "redis:prepare", "web:prepare"] {
        assert!(before.contains(&prepared), "{before:?}");
    }
    // One signal: the worker reported quiet at once, then idle three
    // heartbeats later.
    assert_eq!(before.iter().filter(|r| **r == "sidekiq:tstp").count(), 1);
    assert_eq!(before.iter().filter(|r| **r == "redis:probe").count(), 3);
    assert!(
        notes
            .0
            .lock()
            .expect("lock")
            .iter()
            .any(|n| n.contains("1 jobs in flight")),
        "progress while waiting"
    );
    let phases: Vec<&str> = outcome.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        phases,
        [
            "prepare database",
            "prepare redis",
            "prepare media",
            "quiet workers",
            "commit database",
            "commit redis",
            "commit media",
            "restart workers"
        ]
    );

    // Listed on every part; deleted from every part.
    let listed = bounded(list_instance(&s.cluster, t, &options()))
        .await
        .expect("list");
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|l| l.name == fresh));
    bounded(delete_instance(&s.cluster, t, &fresh, &options(), &notes))
        .await
        .expect("delete");
    let listed = bounded(list_instance(&s.cluster, t, &options()))
        .await
        .expect("list");
    assert!(listed.is_empty(), "{listed:?}");
}

async fn saved_and_changed(s: &Server) -> (Fingerprints, Fingerprints) {
    let (lab, instance) = names();
    let saved = fingerprints(&s.backends).await;
    bounded(save_instance(
        &s.cluster,
        target(&lab, &instance),
        &SnapshotName::fresh(),
        "t",
        &options(),
        &Notes::default(),
        &no_cancel(),
    ))
    .await
    .expect("save");
    experiment(&s.backends).await;
    let changed = fingerprints(&s.backends).await;
    s.backends.ran.lock().expect("lock").clear();
    (saved, changed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_before_any_swap_keeps_the_old_state_and_restarts_the_workers() {
    let s = start().await;
    let (lab, instance) = names();
    let (_, changed) = saved_and_changed(&s).await;
    // The media copy breaks while the database and Redis are prepared.
    *s.backends.fail.lock().expect("lock") =
        Some(("web".into(), "staging.tmp".into(), Fail::Exit(1)));
    let err = bounded(reset_instance(
        &s.cluster,
        target(&lab, &instance),
        &SnapshotName::fresh(),
        &options(),
        &Notes::default(),
        &no_cancel(),
    ))
    .await
    .expect_err("fails");
    assert!(matches!(err, SnapshotError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("prepare media"), "{err}");
    let now = fingerprints(&s.backends).await;
    assert_eq!(now.pg, changed.pg);
    assert_eq!(now.redis, changed.redis);
    assert_eq!(now.media, changed.media);
    let ran = s.backends.summary();
    assert!(!ran.iter().any(|r| r.ends_with(":commit")), "{ran:?}");
    // Cleanup: the database reopened, the workers restarted.
    let tail: Vec<&str> = ran[ran.len() - 2..].iter().map(String::as_str).collect();
    assert_eq!(tail, ["postgres:reopen", "sidekiq:term"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_in_a_swap_leaves_each_part_old_or_new_and_the_workers_quiet() {
    let s = start().await;
    let (lab, instance) = names();
    let t = target(&lab, &instance);
    let (saved, changed) = saved_and_changed(&s).await;
    // The API goes away at Redis's swap (after the database's).
    *s.backends.fail.lock().expect("lock") = Some(("redis".into(), "SWAPDB".into(), Fail::Drop));
    let err = bounded(reset_instance(
        &s.cluster,
        t,
        &SnapshotName::fresh(),
        &options(),
        &Notes::default(),
        &no_cancel(),
    ))
    .await
    .expect_err("fails");
    let text = err.to_string();
    assert!(text.contains("swapped: database"), "{text}");
    assert!(text.contains("run again"), "{text}");
    let now = fingerprints(&s.backends).await;
    assert_eq!(now.pg, saved.pg, "the database swap committed");
    assert_eq!(now.redis, changed.redis, "Redis was not swapped");
    let ran = s.backends.summary();
    assert_eq!(ran.last().map(String::as_str), Some("postgres:reopen"));
    assert!(!ran.contains(&"sidekiq:term".to_owned()), "{ran:?}");

    // The rerun completes it.
    *s.backends.fail.lock().expect("lock") = None;
    bounded(reset_instance(
        &s.cluster,
        t,
        &SnapshotName::fresh(),
        &options(),
        &Notes::default(),
        &no_cancel(),
    ))
    .await
    .expect("rerun");
    let now = fingerprints(&s.backends).await;
    assert_eq!(
        (now.pg, now.redis, now.media),
        (saved.pg, saved.redis, saved.media)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_never_quiet_or_queues_that_never_drain_change_nothing() {
    let s = start().await;
    let (lab, instance) = names();
    let t = target(&lab, &instance);
    let (_, changed) = saved_and_changed(&s).await;
    *s.backends.busy_probes.lock().expect("lock") = u32::MAX;
    let short = StateOptions {
        quiet_budget: Duration::from_millis(200),
        drain_budget: Duration::from_millis(200),
        ..options()
    };
    let err = bounded(reset_instance(
        &s.cluster,
        t,
        &SnapshotName::fresh(),
        &short,
        &Notes::default(),
        &no_cancel(),
    ))
    .await
    .expect_err("not quiet");
    assert!(matches!(err, SnapshotError::NotQuiet { .. }), "{err:?}");
    assert!(err.to_string().contains("jobs in flight 1"), "{err}");
    let ran = s.backends.summary();
    assert!(!ran.iter().any(|r| r.ends_with(":commit")), "{ran:?}");
    assert_eq!(ran.last().map(String::as_str), Some("sidekiq:term"));
    let now = fingerprints(&s.backends).await;
    assert_eq!(
        (now.pg, now.redis),
        (changed.pg.clone(), changed.redis.clone())
    );

    // The experiment left a job queued: save waits, then gives up.
    s.backends.ran.lock().expect("lock").clear();
    let err = bounded(save_instance(
        &s.cluster,
        t,
        &"later".parse().expect("name"),
        "t",
        &short,
        &Notes::default(),
        &no_cancel(),
    ))
    .await
    .expect_err("not drained");
    assert!(err.to_string().contains("1 jobs queued"), "{err}");
    assert!(
        s.backends.summary().iter().all(|r| r == "redis:probe"),
        "only probes: {:?}",
        s.backends.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_reset_cleans_up_and_changes_nothing() {
    let s = start().await;
    let (lab, instance) = names();
    let (_, changed) = saved_and_changed(&s).await;
    let (tx, rx) = watch::channel(false);
    tx.send(true).expect("cancel");
    let err = bounded(reset_instance(
        &s.cluster,
        target(&lab, &instance),
        &SnapshotName::fresh(),
        &options(),
        &Notes::default(),
        &rx,
    ))
    .await
    .expect_err("cancelled");
    assert!(matches!(err, SnapshotError::Cancelled { .. }), "{err:?}");
    let now = fingerprints(&s.backends).await;
    assert_eq!((now.pg, now.redis), (changed.pg, changed.redis));
    let ran = s.backends.summary();
    assert_eq!(
        ran[ran.len() - 2..].to_vec(),
        ["postgres:reopen".to_owned(), "sidekiq:term".to_owned()]
    );
}
