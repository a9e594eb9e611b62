//! A loopback server that speaks the real Kubernetes exec subprotocol, for
//! the tests of `fedilab_orchestrator::exec` and `backup`: it answers `/version` and the pod
//! list for the component's selector, and upgrades `/api/v1/namespaces/NS/pods/NAME/exec`
//! to a WebSocket with `v5.channel.k8s.io` (or only `v4.channel.k8s.io`),
//! channels 0 stdin, 1 stdout, 2 stderr, 3 error (a v1 Status), 4 resize
//! and v5's close (255). What kube sends is checked on the server's side;
//! every await has a time limit. [`Script::Local`] runs the requested argv
//! as a local process (its stdin, stdout, stderr and exit code wired to the
//! channels), so a test can stream real `pg_dump` output end to end.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fedilab_orchestrator::{Cluster, ExecTarget, cluster_from_config};
use fedilab_profile::names::Component;
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
pub const V4: &str = "v4.channel.k8s.io";
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// What the "command" does once the WebSocket is open.
#[derive(Debug, Clone)]
pub enum Script {
    /// Writes `out\n` to stdout, `err\n` to stderr, exits with the code.
    Exit(i32),
    /// Copies stdin to stdout until stdin's end (v5 close frame), exits 0.
    Echo,
    /// Waits for a resize message, writes its JSON to stdout, exits 0.
    Tty,
    /// Writes `partial` to stdout, then drops the TCP connection.
    Drop,
    /// Writes `partial` to stdout, then closes the WebSocket, no status.
    CloseEarly,
    /// Cannot start: a Failure Status that is no exit code.
    NotFound,
    /// Runs the requested argv locally, as [`Local`] builds it.
    Local(Local),
}

/// Turns the requested argv into a local command (which program, which
/// environment), such as `pg_dump` of the test's PostgreSQL.
#[derive(Clone)]
pub struct Local(pub Arc<LocalCommand>);

/// Builds the local command for an argv.
pub type LocalCommand = dyn Fn(&[String]) -> tokio::process::Command + Send + Sync;

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Local(..)")
    }
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// The label selector of each pod list.
    pub selectors: Vec<String>,
    /// Each exec request's path and decoded query pairs.
    pub execs: Vec<(String, Vec<(String, String)>)>,
    /// The subprotocol chosen for each exec.
    pub protocols: Vec<String>,
}

pub struct Server {
    pub cluster: Cluster,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Config {
    pub pods: serde_json::Value,
    pub protocols: &'static [&'static str],
    pub script: Script,
    /// Objects the server keeps besides pods (GET, merge PATCH, DELETE and
    /// POST by path); `None`: every other path is 404.
    pub objects: Option<Objects>,
}

/// A tiny object store by API path (`/apis/apps/v1/namespaces/NS/deployments/NAME`),
/// for the sequences that mix API calls and exec. A created Job is
/// complete at once.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// The objects.
    pub by_path: Arc<Mutex<std::collections::BTreeMap<String, serde_json::Value>>>,
    /// Every call, `METHOD path`, in order.
    pub calls: Arc<Mutex<Vec<String>>>,
}

impl Objects {
    /// Stores `object` at `path`.
    pub fn put(&self, path: &str, object: serde_json::Value) {
        self.by_path
            .lock()
            .expect("lock")
            .insert(path.to_owned(), object);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        self.by_path.lock().expect("lock").get(path).cloned()
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}

async fn handle_object(req: Request<Incoming>, objects: &Objects) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt as _;
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    objects
        .calls
        .lock()
        .expect("lock")
        .push(format!("{method} {path}"));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "NotFound", "code": 404,
                "message": format!("{path} not found")}),
        )
    };
    let mut store = objects.by_path.lock().expect("lock");
    match method.as_str() {
        "GET" => match store.get(&path) {
            Some(object) => json_response(StatusCode::OK, object),
            None => not_found(),
        },
        "PATCH" => {
            let patch: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match store.get_mut(&path) {
                Some(object) => {
                    merge(object, &patch);
                    json_response(StatusCode::OK, object)
                }
                None => not_found(),
            }
        }
        "DELETE" => match store.remove(&path) {
            Some(object) => json_response(StatusCode::OK, &object),
            None => not_found(),
        },
        "POST" => {
            let mut object: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
            if path.ends_with("/jobs") {
                object["status"] = serde_json::json!({"succeeded": 1,
                    "conditions": [{"type": "Complete", "status": "True"}]});
            }
            store.insert(format!("{path}/{name}"), object.clone());
            json_response(StatusCode::CREATED, &object)
        }
        _ => not_found(),
    }
}

pub fn ready_web_pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "fedilab-main",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "web", "image": "ghcr.io/mastodon/mastodon"}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

pub async fn start(config: Config) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = Arc::new(config);
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, seen.clone(), config.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        })
    };
    let url = format!("http://{addr}").parse().expect("url");
    let cluster = cluster_from_config(kube::Config::new(url), "exec test").expect("cluster");
    Server {
        cluster,
        seen,
        task,
    }
}

/// `application/x-www-form-urlencoded` decoding, as the API server reads
/// the query.
pub fn decode(text: &str) -> String {
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

pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Seen>>,
    config: Arc<Config>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = query_pairs(req.uri().query().unwrap_or(""));
    if path == "/api/v1/namespaces/fedilab-main/pods" {
        let selector = query
            .iter()
            .find(|(k, _)| k == "labelSelector")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        seen.lock().expect("lock").selectors.push(selector.clone());
        // A pod with labels is listed only when it matches the selector;
        // one without labels matches every selector.
        let wanted: Vec<(&str, &str)> = selector
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let items: Vec<&serde_json::Value> = config
            .pods
            .as_array()
            .map(|pods| {
                pods.iter()
                    .filter(|pod| match pod["metadata"]["labels"].as_object() {
                        None => true,
                        Some(labels) => wanted
                            .iter()
                            .all(|(k, v)| labels.get(*k).and_then(|l| l.as_str()) == Some(*v)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "1"},
            "items": items,
        });
        return Ok(Response::new(Full::new(Bytes::from(list.to_string()))));
    }
    if path == "/version" {
        let version = serde_json::json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.5+k3s1",
            "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2025-10-01T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        });
        return Ok(Response::new(Full::new(Bytes::from(version.to_string()))));
    }
    if !path.ends_with("/exec")
        && let Some(objects) = &config.objects
    {
        return Ok(handle_object(req, objects).await);
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
    let offered: Vec<String> = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
        .unwrap_or_default();
    let Some(protocol) = config
        .protocols
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .map(|p| (*p).to_owned())
    else {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    };
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    {
        let mut seen = seen.lock().expect("lock");
        seen.execs.push((path, query));
        seen.protocols.push(protocol.clone());
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let script = config.script.clone();
    let v5 = protocol == V5;
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run_script(ws, script, v5, command).await;
    });
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, key)
        .header(SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Full::new(Bytes::new()))
        .expect("response");
    Ok(response)
}

pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

pub fn success() -> Message {
    frame(ERROR, br#"{"metadata":{},"status":"Success"}"#)
}

pub fn exit_status(code: i32) -> Message {
    let status = serde_json::json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    });
    frame(ERROR, status.to_string().as_bytes())
}

async fn run_script<S>(mut ws: WebSocketStream<S>, script: Script, v5: bool, command: Vec<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match script {
        Script::Exit(code) => {
            let _ = ws.send(frame(STDOUT, b"out\n")).await;
            let _ = ws.send(frame(STDERR, b"err\n")).await;
            let status = if code == 0 {
                success()
            } else {
                exit_status(code)
            };
            let _ = ws.send(status).await;
            let _ = ws.close(None).await;
        }
        Script::Echo => {
            assert!(v5, "stdin's end needs v5's close frame");
            while let Some(Ok(message)) = ws.next().await {
                let Message::Binary(data) = message else {
                    continue;
                };
                match data.first() {
                    Some(&STDIN) => {
                        let _ = ws.send(frame(STDOUT, &data[1..])).await;
                    }
                    Some(&CLOSE) if data.get(1) == Some(&STDIN) => break,
                    _ => {}
                }
            }
            let _ = ws.send(success()).await;
            let _ = ws.close(None).await;
        }
        Script::Tty => {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Binary(data) = message
                    && data.first() == Some(&RESIZE)
                {
                    let _ = ws.send(frame(STDOUT, &data[1..])).await;
                    break;
                }
            }
            let _ = ws.send(success()).await;
            let _ = ws.close(None).await;
        }
        Script::Drop => {
            let _ = ws.send(frame(STDOUT, b"partial")).await;
            // Dropping the stream closes the TCP connection, no close frame.
        }
        Script::CloseEarly => {
            let _ = ws.send(frame(STDOUT, b"partial")).await;
            let _ = ws.close(None).await;
        }
        Script::NotFound => {
            let status = serde_json::json!({
                "metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": "exec: \"nope\": executable file not found in $PATH",
            });
            let _ = ws.send(frame(ERROR, status.to_string().as_bytes())).await;
            let _ = ws.close(None).await;
        }
        Script::Local(local) => run_local(ws, &local, &command).await,
    }
}

/// Runs `command` locally: STDIN frames go to its stdin (v5's close of
/// channel 0 closes it), its stdout and stderr come back as frames, its
/// exit status as the error channel's Status.
async fn run_local<S>(ws: WebSocketStream<S>, local: &Local, command: &[String])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use std::process::Stdio;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (mut tx, mut rx) = ws.split();
    let mut child = match (local.0)(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let status = serde_json::json!({
                "metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("exec: {command:?}: {e}"),
            });
            let _ = tx.send(frame(ERROR, status.to_string().as_bytes())).await;
            let _ = tx.close().await;
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    // Stdin in its own task: a command blocked on a full stdout pipe must
    // not stop us from reading that pipe.
    let (chunks_tx, mut chunks_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let mut reader = tokio::spawn(async move {
        let mut chunks_tx = Some(chunks_tx);
        while let Some(Ok(message)) = rx.next().await {
            let Message::Binary(data) = message else {
                continue;
            };
            match data.first() {
                Some(&STDIN) => {
                    if let Some(tx) = &chunks_tx {
                        let _ = tx.send(data[1..].to_vec());
                    }
                }
                Some(&CLOSE) if data.get(1) == Some(&STDIN) => chunks_tx = None,
                _ => {}
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(chunk) = chunks_rx.recv().await {
            let Some(pipe) = stdin.as_mut() else { break };
            if pipe.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Dropping the pipe is the command's end of file.
        drop(stdin);
    });
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 32 * 1024];
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            r = stdout.read(&mut out_buf), if out_open => match r {
                Ok(n) if n > 0 => { let _ = tx.send(frame(STDOUT, &out_buf[..n])).await; }
                _ => out_open = false,
            },
            r = stderr.read(&mut err_buf), if err_open => match r {
                Ok(n) if n > 0 => { let _ = tx.send(frame(STDERR, &err_buf[..n])).await; }
                _ => err_open = false,
            },
        }
    }
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
    writer.abort();
    let status = if code == 0 {
        success()
    } else {
        exit_status(code)
    };
    let _ = tx.send(status).await;
    let _ = tx.close().await;
    // Finish the close handshake as an API server does, reading what the
    // client still sends: closing a socket with unread bytes resets it,
    // and a reset can reach the client before the status it was sent.
    if tokio::time::timeout(Duration::from_secs(5), &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
}

/// Every await of a test is bounded: a broken exec fails, never hangs.
pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("the exec did not finish in time")
}

pub fn target() -> ExecTarget {
    ExecTarget {
        lab: "main".parse().expect("lab"),
        instance: "mastodon1".parse().expect("instance"),
        component: Component::Web,
        container: None,
    }
}

pub fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

pub async fn server(script: Script) -> Server {
    start(Config {
        pods: serde_json::json!([ready_web_pod("mastodon1-web-abc")]),
        protocols: &[V5, V4],
        script,
        objects: None,
    })
    .await
}
