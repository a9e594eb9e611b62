//! `reset` and `snapshot_save|list|delete` for a whole lab: two Mastodon
//! instances (each with its own local PostgreSQL, Redis and media, behind
//! the orchestrator's local exec server, shared by `#[path]`) done
//! concurrently, the snapshot check before anything changes, and the
//! marker (or the clear) on a stand-in inspector API.

#[path = "../../fedilab-orchestrator/tests/exec_local/mod.rs"]
mod exec_local;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use exec_local::{bounded, experiment, fingerprints, start_with};
use fedilab_data::snapshot::{Part, SnapshotName};
use fedilab_lab::{Recordings, StateError, StatePlan, StateRequest};
use fedilab_orchestrator::snapshot::{StateOptions, StateProgress};
use fedilab_profile::InstanceName;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

struct Quiet;

impl StateProgress for Quiet {
    fn note(&self, _: &InstanceName, _: &str) {}
}

/// A stand-in for the inspector's API: records `METHOD path body`.
async fn inspector() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let line = format!("{} {}", req.method(), req.uri().path());
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
                        log.lock().expect("lock").push(format!("{line} {body}"));
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn lab_json(ui: SocketAddr) -> String {
    format!(
        r#"{{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
  "node_address":"192.0.2.10","instances":[
    {{"name":"mastodon1","host":"mastodon1.fediverse.local","url":"https://mastodon1.fediverse.local/"}},
    {{"name":"mastodon2","host":"mastodon2.fediverse.local","url":"https://mastodon2.fediverse.local/"}},
    {{"name":"mine","host":"mine.fediverse.local","url":"https://mine.fediverse.local/","kind":"attached",
     "upstreams":[{{"path_prefix":"/","url":"http://127.0.0.1:3000/"}}]}}],
  "serve":{{"dns":"127.0.0.1:5300","proxy":null,"ui":"{ui}"}}}}"#
    )
}

fn plan(data: &std::path::Path, instances: &[&str]) -> StatePlan {
    StatePlan::prepare(StateRequest {
        data_dir: data.to_owned(),
        lab: "main".parse().expect("lab"),
        instances: instances.iter().map(|i| i.parse().expect("i")).collect(),
        options: StateOptions {
            poll: Duration::from_millis(20),
            resignal: Duration::ZERO,
            ..StateOptions::default()
        },
    })
    .expect("plan")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_is_saved_reset_and_marked_instance_by_instance_at_once() {
    let s = start_with(&["mastodon1", "mastodon2"]).await;
    let (ui, seen) = inspector().await;
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("labs/main");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("lab.json"), lab_json(ui)).expect("lab.json");
    let all = plan(data.path(), &[]);
    assert_eq!(all.instances().len(), 2, "the attached server is not ours");
    let (_tx, cancel) = watch::channel(false);
    let fresh = SnapshotName::fresh();

    // `up`'s fresh snapshot, on both.
    let report = bounded(fedilab_lab::record_fresh(&s.cluster, &all, &Quiet))
        .await
        .expect("fresh");
    assert_eq!(report.done.len(), 2, "{:?}", report.failed);
    let saved = [
        fingerprints(&s.all["mastodon1"]).await,
        fingerprints(&s.all["mastodon2"]).await,
    ];
    assert!(
        seen.lock().expect("lock")[0].starts_with("POST /api/markers {\"kind\":\"snapshot\""),
        "{:?}",
        seen.lock().expect("lock")
    );
    // A second `up` keeps it.
    let again = bounded(fedilab_lab::record_fresh(&s.cluster, &all, &Quiet))
        .await
        .expect("fresh");
    assert!(again.done.is_empty());

    experiment(&s.all["mastodon1"]).await;
    experiment(&s.all["mastodon2"]).await;
    let report = bounded(fedilab_lab::reset(
        &s.cluster, &all, &fresh, false, &Quiet, &cancel,
    ))
    .await
    .expect("reset");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let done: Vec<&str> = report.done.iter().map(|o| o.instance.as_str()).collect();
    assert_eq!(done, ["mastodon1", "mastodon2"]);
    assert_eq!(fingerprints(&s.all["mastodon1"]).await, saved[0]);
    assert_eq!(fingerprints(&s.all["mastodon2"]).await, saved[1]);
    let Some(Recordings::Marked(text)) = &report.recordings else {
        panic!("{:?}", report.recordings);
    };
    assert!(text.starts_with("reset to fresh at "), "{text}");
    let last = seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .unwrap_or_default();
    assert!(
        last.contains("\"kind\":\"reset\"") && last.contains(text.as_str()),
        "{last}"
    );

    // Listed with both instances and every part.
    let rows = bounded(fedilab_lab::snapshot_list(&s.cluster, &all))
        .await
        .expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, fresh);
    for (_, parts) in &rows[0].instances {
        assert_eq!(parts, &[Part::Database, Part::Redis, Part::Media]);
    }

    // A snapshot one instance lacks: refused before anything changes.
    let one = plan(data.path(), &["mastodon2"]);
    let only2: SnapshotName = "only-two".parse().expect("name");
    bounded(fedilab_lab::snapshot_save(
        &s.cluster, &one, &only2, &Quiet, &cancel,
    ))
    .await
    .expect("save");
    s.all["mastodon1"].ran.lock().expect("lock").clear();
    let err = bounded(fedilab_lab::reset(
        &s.cluster, &all, &only2, false, &Quiet, &cancel,
    ))
    .await
    .expect_err("missing on mastodon1");
    assert!(matches!(err, StateError::NoSnapshot { .. }) && err.is_usage());
    assert!(
        err.to_string()
            .contains("no snapshot only-two on mastodon1"),
        "{err}"
    );
    assert!(
        s.all["mastodon1"]
            .summary()
            .iter()
            .all(|r| r.ends_with(":list")),
        "only listed: {:?}",
        s.all["mastodon1"].summary()
    );

    // --clear-recordings; then delete.
    let report = bounded(fedilab_lab::reset(
        &s.cluster, &one, &only2, true, &Quiet, &cancel,
    ))
    .await
    .expect("reset");
    assert_eq!(report.recordings, Some(Recordings::Cleared));
    assert!(
        seen.lock()
            .expect("lock")
            .last()
            .is_some_and(|l| l.starts_with("DELETE /api/exchanges")),
    );
    bounded(fedilab_lab::snapshot_delete(
        &s.cluster, &all, &fresh, &Quiet,
    ))
    .await
    .expect("delete");
    let rows = bounded(fedilab_lab::snapshot_list(&s.cluster, &all))
        .await
        .expect("list");
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["only-two"]);
}
