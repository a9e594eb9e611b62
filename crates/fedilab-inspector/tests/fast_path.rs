//! The proxy's fast path against a scripted upstream that answers exact
//! bytes, with a raw client: every way a response can be framed (length,
//! chunked with trailers, to the close, none for HEAD and 204, after an
//! informational response), pipelined requests, a long body captured up to
//! the limit, a malformed chunked body, and the hand-over to hyper in the
//! middle of a connection. A record made here reads the same as one made
//! by hyper for the same request.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use fedilab_inspector::InspectorConfig;
use fedilab_inspector::exchange::Exchange;
use fedilab_inspector::fault::RuleSpec;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const BIG: usize = 100_000;

/// The raw response for a request path, and whether the upstream closes
/// the connection after it.
fn script(method: &str, path: &str) -> (Vec<u8>, bool) {
    let text = |s: &str| (s.as_bytes().to_vec(), false);
    match path {
        "/chunked" => text(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\
             content-length: 99\r\n\r\n\
             5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
        ),
        "/close" => (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the close".to_vec(),
            true,
        ),
        "/bye" => (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye".to_vec(),
            true,
        ),
        "/nothing" => text("HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"),
        "/early" => text(
            "HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ),
        "/bad" => text("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        "/big" => {
            let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n").into_bytes();
            r.extend(std::iter::repeat_n(b'x', BIG));
            (r, false)
        }
        _ if method == "HEAD" => text("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
        _ => text(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\
             x-b: 2\r\ncontent-length: 2\r\n\r\nok",
        ),
    }
}

/// An upstream answering from [`script`]; keeps every request head (names
/// and values as sent) and body it got.
async fn scripted() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some((request, used)) = whole_request(&buf) else {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buf.drain(..used);
                    let line = request.lines().next().unwrap_or("").to_owned();
                    let mut words = line.split(' ');
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    let (answer, close) = script(method, path);
                    log.lock().expect("log").push(request);
                    if stream.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// A whole request (head and body, by length or chunked up to an empty
/// last chunk) at the start of `buf`, as text, and its length.
fn whole_request(buf: &[u8]) -> Option<(String, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let rest = &buf[head_end..];
        let end = head_end + rest.windows(5).position(|w| w == b"0\r\n\r\n")? + 5;
        return Some((String::from_utf8_lossy(&buf[..end]).into_owned(), end));
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let end = head_end + length;
    (buf.len() >= end).then(|| (String::from_utf8_lossy(&buf[..end]).into_owned(), end))
}

async fn lab_with(max_body: usize) -> (Lab, Arc<Mutex<Vec<String>>>) {
    let (addr, heads) = scripted().await;
    let config = InspectorConfig {
        routes: vec![route(M2, addr)],
        max_body_bytes: max_body,
        ..InspectorConfig::default()
    };
    (start_inspector(config, addr).await, heads)
}

/// Writes `request` on `stream` and reads until `done` says the answer is
/// whole (or the proxy closes).
async fn exchange(stream: &mut TcpStream, request: &str, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    within("write", stream.write_all(request.as_bytes()))
        .await
        .expect("written");
    let mut got = Vec::new();
    while !done(&got) {
        let mut chunk = [0u8; 16384];
        match within("read", stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    got
}

fn ends_with(tail: &'static [u8]) -> impl Fn(&[u8]) -> bool {
    move |b: &[u8]| b.ends_with(tail)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {M2}\r\nAccept: */*\r\n\r\n")
}

async fn connect(lab: &Lab) -> TcpStream {
    within("connect", TcpStream::connect(lab.proxy()))
        .await
        .expect("connects")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn every_response_framing_is_relayed_and_recorded() {
    let (mut lab, _) = lab_with(1024).await;
    let mut c = connect(&lab).await;

    // Chunked: relayed as chunked (trailers too), recorded decoded.
    let got = exchange(&mut c, &get("/chunked"), ends_with(b"x-trailer: t\r\n\r\n")).await;
    let got = text(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
    assert!(!got.contains("content-length"), "chunked wins: {got}");
    assert!(got.ends_with("5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n"));
    let e = lab.next_record().await;
    let resp = e.exchange().response.as_ref().expect("response");
    assert_eq!(&resp.body.captured[..], b"hello, world");
    assert!(resp.body.complete && !resp.body.truncated);
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["content-type"], "framing is not recorded");

    // HEAD: a length but no body; 204: no body; 103 is passed over.
    let head = format!("HEAD /x HTTP/1.1\r\nHost: {M2}\r\n\r\n");
    let got = exchange(&mut c, &head, ends_with(b"\r\n\r\n")).await;
    assert_eq!(text(&got), "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    let e = lab.next_record().await;
    assert_eq!(e.exchange().response.as_ref().map(|r| r.body.size), Some(0));
    let got = exchange(&mut c, &get("/nothing"), ends_with(b"\r\n\r\n")).await;
    assert_eq!(text(&got), "HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n");
    lab.next_record().await;
    let got = exchange(&mut c, &get("/early"), ends_with(b"ok")).await;
    assert_eq!(text(&got), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    lab.next_record().await;

    // A long body goes through whole, captured up to the limit.
    let got = exchange(&mut c, &get("/big"), |b| b.len() >= BIG + 40).await;
    let body_at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    assert_eq!(got.len() - body_at, BIG);
    let e = lab.next_record().await;
    let body = &e.exchange().response.as_ref().expect("response").body;
    assert_eq!((body.captured.len(), body.size), (1024, BIG as u64));
    assert!(body.truncated && body.complete);

    // Keep-alive fields of the upstream's connection stay there.
    let got = exchange(&mut c, &get("/x"), ends_with(b"ok")).await;
    let got = text(&got);
    assert!(!got.contains("keep-alive"), "{got}");
    assert!(got.contains("x-b: 2\r\n"), "{got}");
    lab.next_record().await;

    // To the close: the client is told, gets every byte, then the close.
    let got = exchange(&mut c, &get("/close"), |_| false).await;
    let got = text(&got);
    assert!(got.contains("connection: close\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nuntil the close"), "{got}");
    let e = lab.next_record().await;
    let body = &e.exchange().response.as_ref().expect("response").body;
    assert_eq!(&body.captured[..], b"until the close");
    assert!(body.complete);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_a_closing_upstream_is_left() {
    let (mut lab, heads) = lab_with(1024).await;
    let mut c = connect(&lab).await;
    let three = format!("{}{}{}", get("/bye"), get("/x"), get("/nothing"));
    let got = exchange(&mut c, &three, ends_with(b"x-a: 1\r\n\r\n")).await;
    let got = text(&got);
    let bye = got.find("bye").expect("first answer");
    let ok = got.find("\r\n\r\nok").expect("second answer");
    let none = got.find("204 No Content").expect("third answer");
    assert!(bye < ok && ok < none, "{got}");
    let mut paths = Vec::new();
    for _ in 0..3 {
        paths.push(lab.next_record().await.exchange().request.uri.clone());
    }
    assert_eq!(paths, ["/bye", "/x", "/nothing"]);
    // The upstream closed after /bye; /x went on a new connection.
    assert_eq!(heads.lock().expect("heads").len(), 3);
}

#[tokio::test]
async fn a_malformed_upstream_body_ends_the_connection_and_is_recorded() {
    let (mut lab, _) = lab_with(1024).await;
    let mut c = connect(&lab).await;
    let got = exchange(&mut c, &get("/bad"), |_| false).await;
    assert!(got.is_empty(), "nothing of a broken answer: {}", text(&got));
    let e = lab.next_record().await;
    let ex = e.exchange();
    assert_eq!(ex.response.as_ref().map(|r| r.status), Some(200));
    assert_eq!(ex.response.as_ref().map(|r| r.body.complete), Some(false));
    let error = ex.error.as_deref().unwrap_or("");
    assert!(error.contains("invalid chunked body"), "{error}");
}

#[tokio::test]
async fn a_request_left_to_hyper_takes_the_rest_of_the_connection() {
    let (mut lab, heads) = lab_with(1024).await;
    let mut c = connect(&lab).await;
    // Served here first.
    exchange(&mut c, &get("/x"), ends_with(b"ok")).await;
    lab.next_record().await;
    // A chunked request body: hyper's, from the first byte of the request.
    let chunked = format!(
        "POST /inbox HTTP/1.1\r\nHost: {M2}\r\nTransfer-Encoding: chunked\r\n\r\n\
         2\r\n{{}}\r\n0\r\n\r\n"
    );
    let got = exchange(&mut c, &chunked, ends_with(b"ok")).await;
    assert!(text(&got).starts_with("HTTP/1.1 200 OK"), "{}", text(&got));
    let e = lab.next_record().await;
    assert_eq!(&e.exchange().request.body.captured[..], b"{}");
    // And the next one on that connection too (hyper re-frames the body).
    let got = exchange(&mut c, &get("/x"), ends_with(b"ok")).await;
    assert!(text(&got).starts_with("HTTP/1.1 200 OK"), "{}", text(&got));
    lab.next_record().await;
    let heads = heads.lock().expect("heads");
    assert!(
        heads
            .get(1)
            .is_some_and(|h| h.ends_with("\r\n\r\n2\r\n{}\r\n0\r\n\r\n")),
        "{heads:?}"
    );
    assert_eq!(heads.len(), 3, "{heads:?}");
}

/// The record without what differs between two sends of one request.
fn comparable(e: &Exchange) -> Exchange {
    let mut e = e.clone();
    (e.id, e.started_us, e.headers_us, e.total_us, e.client) = (0, 0, None, 0, None);
    if let Some(r) = e.response.as_mut() {
        r.headers = r.headers.iter().filter(|(n, _)| *n != "date").collect();
    }
    e
}

#[tokio::test]
async fn a_record_reads_the_same_whichever_path_made_it() {
    let (mut lab, _) = lab_with(1024).await;
    let post = format!(
        "POST /users/bob/inbox?x=1 HTTP/1.1\r\nHost: {M2}\r\nContent-Type: application/json\r\n\
         Accept: a\r\nX-Forwarded-For: 10.0.0.1\r\naccept: b\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let mut c = connect(&lab).await;
    exchange(&mut c, &post, ends_with(b"ok")).await;
    let fast = lab.next_record().await;
    // A rule whose head matches but whose activity does not: hyper
    // serves the request, and no rule touches it.
    let spec: RuleSpec = serde_json::from_value(serde_json::json!({
        "match": {"host": M2, "activity": "Delete"},
        "action": {"status": 503}
    }))
    .expect("rule");
    lab.inspector.add_fault(spec).expect("rule added");
    let mut c = connect(&lab).await;
    exchange(&mut c, &post, ends_with(b"ok")).await;
    let hyper = loop {
        let e = lab.next_record().await;
        if e.exchange().request.method == "POST" {
            break e;
        }
    };
    assert!(hyper.marks.fault.is_none());
    assert_eq!(comparable(fast.exchange()), comparable(hyper.exchange()));
    let accepts: Vec<&str> = fast
        .exchange()
        .request
        .headers
        .iter()
        .filter(|(n, _)| *n == "accept")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(accepts, ["a", "b"]);
}
