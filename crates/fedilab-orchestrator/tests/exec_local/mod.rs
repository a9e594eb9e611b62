//! A loopback Kubernetes API server for the state commands' tests: it
//! answers the pod lists of each instance's components and speaks the real
//! exec subprotocol (`v5.channel.k8s.io`, as `tests/exec.rs` checks it),
//! and runs every exec'd command for real on this machine: psql against a
//! throwaway PostgreSQL, redis-cli against a throwaway Redis, the media
//! scripts over a temp directory, one set per instance. Only the job
//! worker is made up: `kill -TSTP 1` and `kill -TERM 1` in the sidekiq
//! container move a fake Sidekiq heartbeat in Redis as the real one would.
//! Shared by `#[path]` with fedilab-lab's tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fedilab_orchestrator::{Cluster, cluster_from_config};
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
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

pub const V5: &str = "v5.channel.k8s.io";
pub const NS: &str = "fedilab-main";
pub const PROCESS: &str = "sidekiq-pod:1:abc";
pub const MEDIA_DIR: &str = "/opt/mastodon/public/system";

/// How an exec whose argv contains `needle` in `container` fails instead
/// of running.
#[derive(Debug, Clone)]
pub enum Fail {
    /// The connection drops without an exit status (pod killed, API gone).
    Drop,
    /// The command exits with this code.
    Exit(i32),
}

/// The machine's side: the servers the commands run against, what ran.
pub struct Backends {
    pub pg: TempPostgres,
    pub redis: TempRedis,
    pub media: tempfile::TempDir,
    /// `(container, argv)` of every exec, in order.
    pub ran: Mutex<Vec<(String, Vec<String>)>>,
    /// Probes after the quiet signal during which the fake Sidekiq still
    /// reports a job in flight (its heartbeats until that job ends).
    pub busy_probes: Mutex<u32>,
    pub fail: Mutex<Option<(String, String, Fail)>>,
}

impl Backends {
    pub fn ran(&self) -> Vec<(String, Vec<String>)> {
        self.ran.lock().expect("lock").clone()
    }

    /// One word per exec: `container:what`.
    pub fn summary(&self) -> Vec<String> {
        self.ran()
            .iter()
            .map(|(c, argv)| format!("{c}:{}", what(argv)))
            .collect()
    }

    pub fn sidekiq_alive(&self, quiet: bool, busy: u32) {
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
pub fn what(argv: &[String]) -> String {
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
            if argv.iter().any(|a| a.contains("'processes'")) {
                // A heartbeat of the quiet fake Sidekiq: its job goes on
                // for a few probes.
                let mut busy = b.busy_probes.lock().expect("lock");
                let quiet = b.redis.cli(&["HGET", PROCESS, "quiet"]).unwrap_or_default();
                if quiet.trim() == "true" && *busy > 0 {
                    *busy = busy.saturating_sub(1);
                    b.sidekiq_alive(true, if *busy == 0 { 0 } else { 1 });
                }
            }
            let mut c = b.redis.command();
            c.args(&argv[1..]);
            c
        }
        ("sidekiq", Some("sh")) => {
            let busy = b.busy_probes.lock().expect("lock");
            let script = argv.get(2).map(String::as_str).unwrap_or("");
            if script.contains("TSTP") {
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

pub struct Server {
    pub cluster: Cluster,
    /// The first instance's machine side.
    pub backends: Arc<Backends>,
    /// Every instance's, by name.
    pub all: BTreeMap<String, Arc<Backends>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Running pod of `component`; Sidekiq's is not Ready (still booting
/// after the last restart): state commands must reach it all the same.
fn pod(instance: &str, component: &str) -> serde_json::Value {
    let ready = if component == "sidekiq" {
        "False"
    } else {
        "True"
    };
    serde_json::json!({
        "metadata": {"name": format!("{instance}-{component}-0"), "namespace": NS,
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
    all: Arc<BTreeMap<String, Arc<Backends>>>,
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
        let label = |key: &str| {
            selector
                .split(',')
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .unwrap_or("none")
                .to_owned()
        };
        let instance = label(fedilab_profile::names::INSTANCE_KEY);
        let component = label("app.kubernetes.io/component");
        let items = if all.contains_key(&instance) {
            vec![pod(&instance, &component)]
        } else {
            Vec::new()
        };
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
            "items": items,
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
    // `/api/v1/namespaces/NS/pods/<instance>-<component>-0/exec`
    let pod_name = path.rsplit('/').nth(1).unwrap_or("");
    let instance = pod_name
        .strip_suffix("-0")
        .and_then(|p| p.rsplit_once('-'))
        .map_or("", |(i, _)| i);
    let Some(b) = all.get(instance).cloned() else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
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

/// The server with one instance, `mastodon1`.
pub async fn start() -> Server {
    start_with(&["mastodon1"]).await
}

/// One instance's machine side: PostgreSQL with role `mastodon` and the
/// Mastodon-size schema, Redis with Sidekiq-like keys (queues drained),
/// a media directory with one file, one live (not quiet) Sidekiq.
async fn backend() -> Backends {
    tokio::task::spawn_blocking(|| {
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
            busy_probes: Mutex::new(1),
            fail: Mutex::new(None),
        };
        b.sidekiq_alive(false, 0);
        b
    })
    .await
    .expect("backends")
}

/// The server with these instances.
pub async fn start_with(instances: &[&str]) -> Server {
    let mut all = BTreeMap::new();
    for name in instances {
        all.insert((*name).to_owned(), Arc::new(backend().await));
    }
    let backends = all.get(instances[0]).cloned().expect("an instance");
    let shared = Arc::new(all.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("address");
    let task = {
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, shared.clone()));
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
        all,
        task,
    }
}

pub async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .expect("did not finish in time")
}

#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprints {
    pub pg: String,
    pub redis: String,
    pub media: Vec<String>,
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

pub async fn fingerprints(b: &Arc<Backends>) -> Fingerprints {
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

pub async fn experiment(b: &Arc<Backends>) {
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
