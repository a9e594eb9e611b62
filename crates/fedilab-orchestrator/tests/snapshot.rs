//! `fedilab_orchestrator::snapshot` end to end through the exec API: a
//! loopback server speaking the real Kubernetes exec subprotocol
//! (`v5.channel.k8s.io`, as in `tests/exec.rs`) answers the pod lists of
//! each component and runs every exec'd command for real on this machine:
//! psql against a throwaway PostgreSQL, redis-cli against a throwaway
//! Redis, the media scripts over a temp directory. Only the job worker is
//! made up: `kill -TSTP 1` and `kill -TERM 1` in the sidekiq container move
//! a fake Sidekiq heartbeat in Redis as the real one would.
//!
//! What is checked: which container runs which command, in which order
//! (workers quiet before any swap, restarted last), the state after a
//! reset (fingerprints), and the cleanup after a failure or a cancel.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fedilab_data::snapshot::SnapshotName;
use fedilab_orchestrator::snapshot::{
    SnapshotError, StateOptions, StateProgress, StateTarget, delete_instance, list_instance,
    reset_instance, save_instance,
};
use fedilab_orchestrator::{Cluster, cluster_from_config};
use fedilab_profile::InstanceName;
use fedilab_testdb::{TempPostgres, TempRedis, fingerprint, mastodon_like};
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const V5: &str = "v5.channel.k8s.io";
const NS: &str = "fedilab-main";
const PROCESS: &str = "sidekiq-pod:1:abc";
const MEDIA_DIR: &str = "/opt/mastodon/public/system";

/// How an exec whose argv contains `needle` in `container` fails instead
/// of running.
#[derive(Debug, Clone)]
enum Fail {
    /// The connection drops without an exit status (pod killed, API gone).
    Drop,
    /// The command exits with this code.
    Exit(i32),
}

/// The machine's side: the servers the commands run against, what ran.
struct Backends {
    pg: TempPostgres,
    redis: TempRedis,
    media: tempfile::TempDir,
    /// `(container, argv)` of every exec, in order.
    ran: Mutex<Vec<(String, Vec<String>)>>,
    /// TSTPs the fake Sidekiq must receive before it reports idle.
    busy_until_tstp: Mutex<u32>,
    fail: Mutex<Option<(String, String, Fail)>>,
}

impl Backends {
    fn ran(&self) -> Vec<(String, Vec<String>)> {
        self.ran.lock().expect("lock").clone()
    }

    /// One word per exec: `container:what`.
    fn summary(&self) -> Vec<String> {
        self.ran()
            .iter()
            .map(|(c, argv)| format!("{c}:{}", what(argv)))
            .collect()
    }

    fn sidekiq_alive(&self, quiet: bool, busy: u32) {
        let now = self.redis.cli(&["TIME"]).expect("time");
        let now = now.lines().next().unwrap_or("0").to_owned();
        self.redis
            .cli(&[
                "HSET",
                PROCESS,
                "beat",
                &now,
                "quiet",
                if quiet { "true" } else { "false" },
                "busy",
                &busy.to_string(),
            ])
            .expect("hset");
        self.redis
            .cli(&["SADD", "processes", PROCESS])
            .expect("sadd");
    }
}

/// A short name for a command: the snapshot verb for scripts, the signal.
fn what(argv: &[String]) -> String {
    let joined = argv.join(" ");
    let pick = [
        ("kill -TSTP", "tstp"),
        ("kill -TERM", "term"),
        ("SWAPDB", "commit"),
        ("'processes'", "probe"),
        ("saved ' .. name", "save"),
        ("prepared ' .. name", "prepare"),
        ("return 'deleted'", "delete"),
        ("table.insert(out", "list"),
        ("RENAME TO", "swap-or-save"),
        ("fedilab_next\" TEMPLATE", "prepare"),
        ("ALLOW_CONNECTIONS true", "reopen"),
        ("cp -a \"$e\" \"$t/\"", "save"),
        ("staging.tmp", "prepare"),
        ("mv \"$f/staging\" \"$f/incoming\"", "commit"),
        ("echo deleted", "delete"),
        ("basename", "list"),
        ("datname LIKE", "list"),
        ("IS_TEMPLATE false", "delete"),
    ];
    let found = pick
        .iter()
        .find(|(needle, _)| joined.contains(needle))
        .map_or("?", |(_, w)| w);
    let found = match found {
        "swap-or-save" if joined.contains("fedilab_snap_") => "save",
        "swap-or-save" => "commit",
        other => other,
    };
    found.to_owned()
}

/// Runs `argv` of `container` on this machine; `(exit code, stdout, stderr)`.
fn run_here(b: &Backends, container: &str, argv: &[String]) -> (i32, Vec<u8>, Vec<u8>) {
    let mut command = match (container, argv.first().map(String::as_str)) {
        ("postgres", Some("psql")) => {
            let mut c = b.pg.command("psql");
            c.args(&argv[1..]);
            c
        }
        ("redis", Some("redis-cli")) => {
            let mut c = b.redis.command();
            c.args(&argv[1..]);
            c
        }
        ("sidekiq", Some("sh")) => {
            let mut busy = b.busy_until_tstp.lock().expect("lock");
            let script = argv.get(2).map(String::as_str).unwrap_or("");
            if script.contains("TSTP") {
                *busy = busy.saturating_sub(1);
                b.sidekiq_alive(true, if *busy == 0 { 0 } else { 1 });
            } else if script.contains("TERM") {
                // The process exits (its heartbeat goes) and a new one starts.
                b.redis.cli(&["DEL", PROCESS]).expect("del");
                b.sidekiq_alive(false, 0);
            }
            return (0, Vec::new(), Vec::new());
        }
        ("web", Some("sh")) => {
            let media = b.media.path().to_string_lossy().into_owned();
            let args: Vec<String> = argv[1..]
                .iter()
                .map(|a| {
                    if a == MEDIA_DIR {
                        media.clone()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            let mut c = std::process::Command::new("sh");
            c.args(args);
            c
        }
        _ => return (127, Vec::new(), b"not in this container".to_vec()),
    };
    match command.output() {
        Ok(out) => (out.status.code().unwrap_or(1), out.stdout, out.stderr),
        Err(e) => (127, Vec::new(), e.to_string().into_bytes()),
    }
}

struct Server {
    cluster: Cluster,
    backends: Arc<Backends>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Running pod of `component`; Sidekiq's is not Ready (still booting
/// after the last restart): state commands must reach it all the same.
fn pod(component: &str) -> serde_json::Value {
    let ready = if component == "sidekiq" {
        "False"
    } else {
        "True"
    };
    serde_json::json!({
        "metadata": {"name": format!("mastodon1-{component}-0"), "namespace": NS,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": component, "image": "x"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]},
    })
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf-8")
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

fn status(code: i32) -> Message {
    let status = if code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    frame(3, status.to_string().as_bytes())
}

async fn handle(
    mut req: Request<Incoming>,
    b: Arc<Backends>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = query_pairs(req.uri().query().unwrap_or(""));
    let value = |key: &str| -> Vec<String> {
        query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    if path == format!("/api/v1/namespaces/{NS}/pods") {
        let selector = value("labelSelector").join(",");
        let component = selector
            .split(',')
            .find_map(|kv| kv.strip_prefix("app.kubernetes.io/component="))
            .unwrap_or("none");
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
            "items": [pod(component)],
        });
        return Ok(Response::new(Full::new(Bytes::from(list.to_string()))));
    }
    if !path.ends_with("/exec") {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    let key = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let container = value("container").join("");
    let argv = value("command");
    b.ran
        .lock()
        .expect("lock")
        .push((container.clone(), argv.clone()));
    let fail = b
        .fail
        .lock()
        .expect("lock")
        .clone()
        .filter(|(c, needle, _)| *c == container && argv.iter().any(|a| a.contains(needle)));
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        match fail {
            Some((_, _, Fail::Drop)) => return,
            Some((_, _, Fail::Exit(code))) => {
                let _ = ws.send(frame(2, b"injected failure\n")).await;
                let _ = ws.send(status(code)).await;
            }
            None => {
                let b2 = b.clone();
                let ran = tokio::task::spawn_blocking(move || run_here(&b2, &container, &argv))
                    .await
                    .unwrap_or((1, Vec::new(), b"panicked".to_vec()));
                let (code, out, err) = ran;
                if !out.is_empty() {
                    let _ = ws.send(frame(1, &out)).await;
                }
                if !err.is_empty() {
                    let _ = ws.send(frame(2, &err)).await;
                }
                let _ = ws.send(status(code)).await;
            }
        }
        let _ = ws.close(None).await;
        // Drain until the client closes.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, key)
        .header(SEC_WEBSOCKET_PROTOCOL, V5)
        .body(Full::new(Bytes::new()))
        .expect("response");
    Ok(response)
}

async fn start() -> Server {
    let backends = tokio::task::spawn_blocking(|| {
        let pg = TempPostgres::start().expect("postgres");
        pg.psql("postgres", "CREATE ROLE mastodon SUPERUSER LOGIN")
            .expect("role");
        pg.create_db("mastodon").expect("db");
        mastodon_like::load(&pg, "mastodon").expect("load");
        let redis = TempRedis::start().expect("redis");
        mastodon_like::load_redis(&redis, 0).expect("load redis");
        // Drained queues (a saved state has none), one live Sidekiq.
        redis
            .cli(&["DEL", "queue:push", "queue:default", "queue:ingress"])
            .expect("del");
        let media = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(media.path().join("media_attachments/1")).expect("dir");
        std::fs::write(media.path().join("media_attachments/1/a.png"), "a").expect("file");
        let b = Backends {
            pg,
            redis,
            media,
            ran: Mutex::new(Vec::new()),
            busy_until_tstp: Mutex::new(1),
            fail: Mutex::new(None),
        };
        b.sidekiq_alive(false, 0);
        b
    })
    .await
    .expect("backends");
    let backends = Arc::new(backends);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("address");
    let task = {
        let backends = backends.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let backends = backends.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, backends.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        })
    };
    let url = format!("http://{addr}").parse().expect("url");
    let cluster = cluster_from_config(kube::Config::new(url), "snapshot test").expect("cluster");
    Server {
        cluster,
        backends,
        task,
    }
}

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
        step_budget: Duration::from_secs(60),
    }
}

fn no_cancel() -> watch::Receiver<bool> {
    watch::channel(false).1
}

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .expect("did not finish in time")
}

struct Fingerprints {
    pg: String,
    redis: String,
    media: Vec<String>,
}

fn media_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.file_name().is_some_and(|n| n == ".fedilab") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let content = std::fs::read_to_string(&p).unwrap_or_default();
                out.push(format!("{} {content}", p.display()));
            }
        }
    }
    out.sort();
    out
}

async fn fingerprints(b: &Arc<Backends>) -> Fingerprints {
    let b = b.clone();
    tokio::task::spawn_blocking(move || Fingerprints {
        pg: fingerprint::pg(&b.pg, "mastodon").expect("pg"),
        // The worker's own heartbeat moves by itself; compare the rest.
        redis: fingerprint::redis(&b.redis, 0)
            .expect("redis")
            .lines()
            .filter(|l| !l.starts_with(PROCESS))
            .collect::<Vec<_>>()
            .join("\n"),
        media: media_files(b.media.path()),
    })
    .await
    .expect("fingerprints")
}

async fn experiment(b: &Arc<Backends>) {
    let b = b.clone();
    tokio::task::spawn_blocking(move || {
        mastodon_like::change(&b.pg, "mastodon").expect("change");
        b.redis
            .cli(&["RPUSH", "queue:push", "a stale delivery"])
            .expect("push");
        b.redis
            .cli(&["ZADD", "retry", "1", "a retry of the experiment"])
            .expect("zadd");
        std::fs::write(b.media.path().join("media_attachments/1/new.png"), "n").expect("file");
    })
    .await
    .expect("experiment");
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
    *s.backends.busy_until_tstp.lock().expect("lock") = 3;
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
    assert_eq!(before.iter().filter(|r| **r == "sidekiq:tstp").count(), 3);
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
    *s.backends.busy_until_tstp.lock().expect("lock") = u32::MAX;
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
