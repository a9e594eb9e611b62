//! `fedilab_orchestrator::exec` against a loopback server that speaks the
//! real Kubernetes exec subprotocol: it answers `/version` and the pod
//! list for the component's selector, and upgrades `/api/v1/namespaces/NS/pods/NAME/exec`
//! to a WebSocket with `v5.channel.k8s.io` (or only `v4.channel.k8s.io`),
//! channels 0 stdin, 1 stdout, 2 stderr, 3 error (a v1 Status), 4 resize
//! and v5's close (255). What kube sends is checked on the server's side;
//! every await has a time limit.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fedilab_orchestrator::exec::{ExecIo, ExecOptions, TerminalSize, exec, find_pod};
use fedilab_orchestrator::{
    Captured, Cluster, ExecError, ExecTarget, cluster_from_config, exec_capture,
};
use fedilab_profile::names::{self, Component};
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

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the "command" does once the WebSocket is open.
#[derive(Debug, Clone, Copy)]
enum Script {
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
}

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    /// The label selector of each pod list.
    selectors: Vec<String>,
    /// Each exec request's path and decoded query pairs.
    execs: Vec<(String, Vec<(String, String)>)>,
    /// The subprotocol chosen for each exec.
    protocols: Vec<String>,
}

struct Server {
    cluster: Cluster,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Config {
    pods: serde_json::Value,
    protocols: &'static [&'static str],
    script: Script,
}

fn ready_web_pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "fedilab-main",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "web", "image": "ghcr.io/mastodon/mastodon"}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

async fn start(config: Config) -> Server {
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

fn query_pairs(query: &str) -> Vec<(String, String)> {
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
        seen.lock().expect("lock").selectors.push(selector);
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "1"},
            "items": config.pods,
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
    {
        let mut seen = seen.lock().expect("lock");
        seen.execs.push((path, query));
        seen.protocols.push(protocol.clone());
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let script = config.script;
    let v5 = protocol == V5;
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run_script(ws, script, v5).await;
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

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

fn success() -> Message {
    frame(ERROR, br#"{"metadata":{},"status":"Success"}"#)
}

fn exit_status(code: i32) -> Message {
    let status = serde_json::json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    });
    frame(ERROR, status.to_string().as_bytes())
}

async fn run_script<S>(mut ws: WebSocketStream<S>, script: Script, v5: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
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
    }
}

/// Every await of a test is bounded: a broken exec fails, never hangs.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("the exec did not finish in time")
}

fn target() -> ExecTarget {
    ExecTarget {
        lab: "main".parse().expect("lab"),
        instance: "mastodon1".parse().expect("instance"),
        component: Component::Web,
        container: None,
    }
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

async fn server(script: Script) -> Server {
    start(Config {
        pods: serde_json::json!([ready_web_pod("mastodon1-web-abc")]),
        protocols: &[V5, V4],
        script,
    })
    .await
}

#[tokio::test]
async fn exit_codes_and_separate_stdout_and_stderr() {
    for code in [0, 3] {
        let s = server(Script::Exit(code)).await;
        let got = bounded(exec_capture(&s.cluster, &target(), &argv(&["true"]), None))
            .await
            .expect("exec");
        assert_eq!(
            got,
            Captured {
                code,
                stdout: b"out\n".to_vec(),
                stderr: b"err\n".to_vec(),
            }
        );
        let seen = s.seen.lock().expect("lock");
        assert_eq!(seen.protocols, [V5]);
    }
}

#[tokio::test]
async fn the_pod_is_found_by_the_component_selector_and_the_query_carries_container_and_argv() {
    let s = server(Script::Exit(0)).await;
    let command = argv(&["sh", "-c", "echo \"a b\" && exit 3", "ä&=+%", ""]);
    bounded(exec_capture(&s.cluster, &target(), &command, None))
        .await
        .expect("exec");
    let seen = s.seen.lock().expect("lock");
    let lab = "main".parse().expect("lab");
    let instance = "mastodon1".parse().expect("instance");
    let expected_selector = names::component_selector(&lab, &instance, Component::Web)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(seen.selectors, [expected_selector]);
    let (path, query) = &seen.execs[0];
    assert_eq!(
        path,
        "/api/v1/namespaces/fedilab-main/pods/mastodon1-web-abc/exec"
    );
    let values = |key: &str| -> Vec<&str> {
        query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("container"), ["web"]);
    assert_eq!(values("command"), command);
    assert_eq!(values("stdout"), ["true"]);
    assert_eq!(values("stderr"), ["true"]);
    assert!(values("stdin").is_empty(), "{query:?}");
    assert!(values("tty").is_empty(), "{query:?}");
}

#[tokio::test]
async fn stdin_is_streamed_to_the_command() {
    let s = server(Script::Echo).await;
    // More than every pipe buffer on the way, so nothing may wait on
    // anything else.
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let got = bounded(exec_capture(
        &s.cluster,
        &target(),
        &argv(&["cat"]),
        Some(&input),
    ))
    .await
    .expect("exec");
    assert_eq!(got.code, 0);
    assert!(got.stdout == input, "stdout is not stdin");
    assert!(got.stderr.is_empty());
    let seen = s.seen.lock().expect("lock");
    assert!(
        seen.execs[0]
            .1
            .contains(&("stdin".to_owned(), "true".to_owned())),
        "{:?}",
        seen.execs[0].1
    );
}

#[tokio::test]
async fn a_tty_is_requested_and_the_terminal_size_sent() {
    let s = server(Script::Tty).await;
    let pod = bounded(find_pod(&s.cluster, &target())).await.expect("pod");
    let mut stdout = Vec::new();
    let io = ExecIo {
        stdin: Some(Box::new(tokio::io::empty())),
        stdout: Box::new(&mut stdout),
        stderr: None,
        resize: Some(Box::pin(futures_util::stream::iter([TerminalSize {
            width: 120,
            height: 40,
        }]))),
    };
    let options = ExecOptions {
        command: argv(&["/bin/bash"]),
        tty: true,
    };
    let code = bounded(exec(&s.cluster, &pod, &options, io))
        .await
        .expect("exec");
    assert_eq!(code, 0);
    let size: serde_json::Value = serde_json::from_slice(&stdout).expect("the size as JSON");
    assert_eq!(size, serde_json::json!({"Width": 120, "Height": 40}));
    let seen = s.seen.lock().expect("lock");
    let query = &seen.execs[0].1;
    assert!(
        query.contains(&("tty".to_owned(), "true".to_owned())),
        "{query:?}"
    );
    // A terminal merges stderr into stdout: it is not asked for.
    assert!(!query.iter().any(|(k, _)| k == "stderr"), "{query:?}");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_an_error_not_a_hang() {
    let s = server(Script::Drop).await;
    let err = bounded(exec_capture(
        &s.cluster,
        &target(),
        &argv(&["sleep", "9"]),
        None,
    ))
    .await
    .expect_err("no exit status");
    assert!(matches!(err, ExecError::Stream { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("mastodon1-web-abc"), "{text}");
    assert!(text.contains("exit code is unknown"), "{text}");

    // Closed properly, but before the status.
    let s = server(Script::CloseEarly).await;
    let err = bounded(exec_capture(
        &s.cluster,
        &target(),
        &argv(&["sleep", "9"]),
        None,
    ))
    .await
    .expect_err("no exit status");
    assert!(matches!(err, ExecError::Closed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("closed before the command's exit status"),
        "{err}"
    );
}

#[tokio::test]
async fn a_command_that_cannot_start_is_an_error_with_the_api_servers_message() {
    let s = server(Script::NotFound).await;
    let err = bounded(exec_capture(&s.cluster, &target(), &argv(&["nope"]), None))
        .await
        .expect_err("not an exit code");
    assert!(
        err.to_string()
            .contains("InternalError: exec: \"nope\": executable file not found"),
        "{err}"
    );
}

#[tokio::test]
async fn v4_is_used_when_the_server_offers_only_v4() {
    let s = start(Config {
        pods: serde_json::json!([ready_web_pod("mastodon1-web-abc")]),
        protocols: &[V4],
        script: Script::Exit(3),
    })
    .await;
    let got = bounded(exec_capture(&s.cluster, &target(), &argv(&["false"]), None))
        .await
        .expect("exec");
    assert_eq!(got.code, 3);
    assert_eq!(got.stdout, b"out\n");
    assert_eq!(s.seen.lock().expect("lock").protocols, [V4]);
}

#[tokio::test]
async fn no_ready_pod_names_the_instance_and_says_what_to_do() {
    let mut starting = ready_web_pod("mastodon1-web-new");
    starting["status"]["conditions"][0]["status"] = serde_json::json!("False");
    let s = start(Config {
        pods: serde_json::json!([starting]),
        protocols: &[V5, V4],
        script: Script::Exit(0),
    })
    .await;
    let err = bounded(exec_capture(&s.cluster, &target(), &argv(&["true"]), None))
        .await
        .expect_err("no pod");
    let text = err.to_string();
    assert!(
        text.contains("web of instance mastodon1 in lab main"),
        "{text}"
    );
    assert!(text.contains("not Ready"), "{text}");
    assert!(text.contains("`fedilab status --lab main`"), "{text}");
    assert!(s.seen.lock().expect("lock").execs.is_empty());

    // A container that is not there.
    let s = server(Script::Exit(0)).await;
    let mut other = target();
    other.container = Some("sidecar".to_owned());
    let err = bounded(find_pod(&s.cluster, &other))
        .await
        .expect_err("no such container");
    assert_eq!(
        err.to_string(),
        "pod mastodon1-web-abc has no container sidecar; it has: web"
    );
}
