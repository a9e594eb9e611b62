//! The proxy's upstream connections, seen from a counting upstream: one
//! client connection keeps one connection per upstream (requests for two
//! instances interleaved on it, as Traefik sends them), a connection the
//! upstream closed while idle is replaced without failing the request,
//! hop-by-hop fields are not forwarded, and the proxy's connections run on
//! threads of its own that end with it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use fedilab_inspector::InspectorConfig;
use http_body_util::{BodyExt as _, Empty};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the counting upstream does after answering a request.
#[derive(Clone, Copy)]
enum After {
    /// Keeps the connection for the next request.
    KeepAlive,
    /// Closes it (as a server whose idle timeout fired).
    Close,
}

/// Counts connections and requests; answers every request `200` with its
/// own name as the body (without `Connection: close` either way).
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// The header lines of the last request, lower-cased.
    last_head: Arc<Mutex<Vec<String>>>,
}

async fn upstream(name: &'static str, after: After) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let last_head = Arc::new(Mutex::new(Vec::new()));
    let (c, r, h) = (
        Arc::clone(&connections),
        Arc::clone(&requests),
        Arc::clone(&last_head),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (r, h) = (Arc::clone(&r), Arc::clone(&h));
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    // A request head (GETs only: no body).
                    let mut line = String::new();
                    let mut head = Vec::new();
                    loop {
                        line.clear();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head.push(line.trim_end().to_ascii_lowercase()),
                        }
                    }
                    if head.is_empty() {
                        return;
                    }
                    *h.lock().expect("head") = head;
                    r.fetch_add(1, Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    if let After::Close = after {
                        return;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        connections,
        requests,
        last_head,
    }
}

/// One HTTP/1 connection to the proxy.
async fn client(proxy: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = within("connect", TcpStream::connect(proxy))
        .await
        .expect("connects");
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
) -> (u16, String) {
    within("ready", sender.ready()).await.expect("ready");
    let req = http::Request::builder()
        .uri("/x")
        .header("host", host)
        .body(Empty::new())
        .expect("request");
    let resp = within("response", sender.send_request(req))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = within("body", resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn one_client_connection_keeps_one_connection_per_upstream() {
    let a = upstream("a", After::KeepAlive).await;
    let b = upstream("b", After::KeepAlive).await;
    let config = InspectorConfig {
        routes: vec![route(M1, a.addr), route(M2, b.addr)],
        ..InspectorConfig::default()
    };
    let lab = start_inspector(config, a.addr).await;
    let mut sender = client(lab.proxy()).await;
    for host in [M1, M2, M1, M2, M1] {
        let want = if host == M1 { "a" } else { "b" };
        assert_eq!(get(&mut sender, host).await, (200, want.to_owned()));
    }
    assert_eq!(a.requests.load(Ordering::SeqCst), 3);
    assert_eq!(b.requests.load(Ordering::SeqCst), 2);
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    assert_eq!(b.connections.load(Ordering::SeqCst), 1);
    // A second client connection gets its own.
    let mut other = client(lab.proxy()).await;
    assert_eq!(get(&mut other, M1).await.0, 200);
    assert_eq!(a.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_replaced() {
    let a = upstream("a", After::Close).await;
    let config = InspectorConfig {
        routes: vec![route(M1, a.addr)],
        ..InspectorConfig::default()
    };
    let lab = start_inspector(config, a.addr).await;
    let mut sender = client(lab.proxy()).await;
    for _ in 0..4 {
        assert_eq!(get(&mut sender, M1).await, (200, "a".to_owned()));
    }
    // Each request reached the upstream once, each on a new connection.
    assert_eq!(a.requests.load(Ordering::SeqCst), 4);
    assert_eq!(a.connections.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn hop_by_hop_fields_stay_on_their_connection() {
    use tokio::io::AsyncReadExt as _;
    let a = upstream("a", After::KeepAlive).await;
    let config = InspectorConfig {
        routes: vec![route(M1, a.addr)],
        ..InspectorConfig::default()
    };
    let lab = start_inspector(config, a.addr).await;
    let mut stream = within("connect", TcpStream::connect(lab.proxy()))
        .await
        .expect("connects");
    let request = format!(
        "GET /x HTTP/1.1\r\nhost: {M1}\r\nconnection: keep-alive, x-private\r\n\
         x-private: secret\r\nkeep-alive: timeout=5\r\nte: trailers\r\n\
         proxy-authorization: Basic eDp5\r\nx-kept: 1\r\n\r\n"
    );
    within("write", stream.write_all(request.as_bytes()))
        .await
        .expect("written");
    let mut buf = [0u8; 256];
    let n = within("read", stream.read(&mut buf)).await.expect("answer");
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{:?}", buf.get(..n));
    let head = a.last_head.lock().expect("head").clone();
    let names: Vec<&str> = head
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect();
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "proxy-authorization",
    ] {
        assert!(!names.contains(&gone), "{gone} was forwarded: {head:?}");
    }
    assert!(names.contains(&"x-kept"), "{head:?}");
    assert!(
        head.contains(&"x-forwarded-for: 127.0.0.1".to_owned()),
        "{head:?}"
    );
    assert!(head.contains(&format!("host: {M1}")), "{head:?}");
}

/// The threads of this process whose name starts with `prefix` (Linux;
/// the proxy names its threads `proxy:PORT/N`).
fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn the_proxy_runs_on_threads_of_its_own_that_end_with_it() {
    let a = upstream("a", After::KeepAlive).await;
    let config = InspectorConfig {
        routes: vec![route(M1, a.addr)],
        proxy_threads: 2,
        ..InspectorConfig::default()
    };
    let lab = start_inspector(config, a.addr).await;
    let mine = format!("proxy:{}/", lab.proxy().port());
    // Each thread names itself once it runs.
    within("two threads", async {
        while threads_named(&mine) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(threads_named(&mine), 2);
    // Whichever thread accepts a connection serves it whole and records
    // into the one store.
    let mut senders = Vec::new();
    for _ in 0..6 {
        senders.push(client(lab.proxy()).await);
    }
    for round in 0..3 {
        for sender in &mut senders {
            assert_eq!(
                get(sender, M1).await,
                (200, "a".to_owned()),
                "round {round}"
            );
        }
    }
    assert_eq!(a.requests.load(Ordering::SeqCst), 18);
    assert_eq!(a.connections.load(Ordering::SeqCst), 6);
    let store = std::sync::Arc::clone(lab.inspector.store());
    within("recorded", async {
        while store.stats().recorded < 18 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(store.stats().recorded, 18);
    // Shutting down ends the threads and closes the listening socket.
    let proxy = lab.proxy();
    drop(senders);
    within("shutdown", lab.inspector.shutdown())
        .await
        .expect("shut down");
    within("threads end", async {
        while threads_named(&mine) > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(TcpStream::connect(proxy).await.is_err(), "still listening");
}
