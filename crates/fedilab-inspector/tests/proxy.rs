//! The proxy against real loopback upstreams: byte-for-byte forwarding,
//! X-Forwarded-*, unknown hosts, malformed HTTP, WebSocket pass-through,
//! capture limits, store bounds and persistence.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use fedilab_inspector::StoreLimits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn forwards_requests_byte_for_byte_and_records_them() {
    let mut lab = lab(|_| {}).await;
    let body: Vec<u8> = (0u8..=255).cycle().take(5000).collect();
    let headers = vec![
        (
            "date".to_owned(),
            "Sun, 06 Nov 1994 08:49:37 GMT".to_owned(),
        ),
        (
            "digest".to_owned(),
            format!("SHA-256={}", sha256_b64(&body)),
        ),
        (
            "signature".to_owned(),
            "keyId=\"k\",signature=\"AAAA\"".to_owned(),
        ),
        (
            "content-type".to_owned(),
            "application/activity+json".to_owned(),
        ),
        (
            "x-odd".to_owned(),
            "spaced ,  value;\"q\" \t end".to_owned(),
        ),
        ("x-forwarded-for".to_owned(), "10.42.0.7".to_owned()),
    ];
    let reply = lab
        .send("PUT", M1, "/echo?b=2&a=%20x&a=1", &headers, body.clone())
        .await;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["uri"], "/echo?b=2&a=%20x&a=1");
    assert_eq!(
        STANDARD
            .decode(echo["body"].as_str().expect("body"))
            .expect("b64"),
        body
    );
    let got: Vec<(String, String)> =
        serde_json::from_value(echo["headers"].clone()).expect("headers");
    let get = |n: &str| got.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(get("host").as_deref(), Some(M1));
    for (n, v) in &headers[..5] {
        assert_eq!(get(n).as_deref(), Some(v.as_str()), "header {n}");
    }
    assert_eq!(get("content-length").as_deref(), Some("5000"));
    assert_eq!(
        get("x-forwarded-for").as_deref(),
        Some("10.42.0.7, 127.0.0.1")
    );
    assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));

    let rec = lab.next_record().await;
    let ex = rec.exchange();
    assert_eq!(ex.host, M1);
    assert_eq!(ex.request.method, "PUT");
    assert_eq!(ex.request.uri, "/echo?b=2&a=%20x&a=1");
    assert_eq!(&ex.request.body.captured[..], &body[..]);
    assert!(ex.request.body.complete && !ex.request.body.truncated);
    let resp = ex.response.as_ref().expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(&resp.body.captured[..], &reply.body[..]);
    assert!(ex.headers_us.is_some());
    assert_eq!(
        ex.upstream.as_deref(),
        Some(format!("http://{}", lab.upstream).as_str())
    );
}

#[tokio::test]
async fn unknown_host_gets_a_502_page_naming_the_known_hosts() {
    let mut lab = lab(|_| {}).await;
    let reply = lab.send("GET", "elsewhere.example", "/", &[], vec![]).await;
    assert_eq!(reply.status, 502);
    let page = String::from_utf8_lossy(&reply.body);
    assert!(page.contains("elsewhere.example"), "{page}");
    assert!(page.contains(M1) && page.contains(M2), "{page}");
    let rec = lab.next_record().await;
    assert!(
        rec.exchange()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no route"))
    );
    assert_eq!(
        rec.exchange().response.as_ref().map(|r| r.status),
        Some(502)
    );
}

#[tokio::test]
async fn an_unreachable_upstream_gets_a_502_and_is_recorded() {
    // A port that was free a moment ago: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut lab = lab(|c| c.routes.push(route("down.fediverse.local", dead))).await;
    let reply = lab
        .send("GET", "down.fediverse.local", "/x", &[], vec![])
        .await;
    assert_eq!(reply.status, 502);
    let rec = lab.next_record().await;
    assert!(
        rec.exchange()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("failed")),
        "{:?}",
        rec.exchange().error
    );
}

async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    within("raw exchange", async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        // The proxy closes the connection after a 400.
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

#[tokio::test]
async fn malformed_http_gets_400_and_the_proxy_keeps_serving() {
    let lab = lab(|_| {}).await;
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: mastodon1.fediverse.local\r\nbad header line\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let reply = raw_exchange(lab.proxy(), garbage).await;
        assert!(
            reply.starts_with("HTTP/1.1 400"),
            "{garbage:?} got {reply:?}"
        );
    }
    let reply = lab.send("GET", M1, "/about", &[], vec![]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"<html>about</html>");
}

#[tokio::test]
async fn a_websocket_echo_passes_through_and_is_logged_once() {
    let mut lab = lab(|_| {}).await;
    let reply = ws_echo(lab.proxy(), "hello through the inspector").await;
    assert_eq!(reply, "hello through the inspector");
    let rec = lab.next_record().await;
    let ex = rec.exchange();
    assert_eq!(ex.host, WS);
    assert_eq!(ex.response.as_ref().map(|r| r.status), Some(101));
    let up = ex.upgrade.as_ref().expect("upgrade record");
    assert!(
        up.bytes_to_upstream > 27 && up.bytes_to_client > 27,
        "{up:?}"
    );
    // Exactly one exchange for the whole connection.
    assert_eq!(lab.inspector.store().stats().count, 1);
}

#[tokio::test]
async fn bodies_beyond_the_capture_limit_are_forwarded_whole_and_kept_truncated() {
    let mut lab = lab(|c| c.max_body_bytes = 64 * 1024).await;
    let reply = lab.send("GET", M1, "/big", &[], vec![]).await;
    assert_eq!(reply.body.len(), 3 * 1024 * 1024);
    let rec = lab.next_record().await;
    let body = &rec.exchange().response.as_ref().expect("response").body;
    assert_eq!(body.size, 3 * 1024 * 1024);
    assert_eq!(body.captured.len(), 64 * 1024);
    assert!(body.truncated && body.complete);
}

#[tokio::test]
async fn the_store_stays_within_its_limits_through_the_proxy() {
    let mut lab = lab(|c| {
        c.limits = StoreLimits {
            max_exchanges: 50,
            max_bytes: 64 * 1024 * 1024,
        };
    })
    .await;
    let note = create_note(1);
    for _ in 0..300 {
        let r = lab
            .send("POST", M2, "/users/bob/inbox", &[], note.clone())
            .await;
        assert_eq!(r.status, 202);
    }
    // Records land when both bodies end, a hair after the reply.
    for _ in 0..300 {
        lab.next_record_id().await;
    }
    let stats = lab.inspector.store().stats();
    assert_eq!(stats.count, 50, "{stats:?}");
    assert_eq!(stats.recorded, 300, "{stats:?}");
    assert_eq!(stats.evicted, 250, "{stats:?}");
    let snap = lab.inspector.store().snapshot();
    assert!(
        snap.windows(2)
            .all(|w| w[0].exchange().id < w[1].exchange().id)
    );
}

#[tokio::test]
async fn persisted_exchanges_come_back_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("capture.jsonl");
    let mut first = lab(|c| c.persist = Some(file.clone())).await;
    first
        .send("POST", M2, "/users/bob/inbox", &[], create_note(7))
        .await;
    let id = first.next_record().await.exchange().id;
    let config = fedilab_inspector::InspectorConfig {
        routes: vec![route(M1, first.upstream), route(M2, first.upstream)],
        persist: Some(file.clone()),
        ..Default::default()
    };
    let upstream = first.upstream;
    within("shutdown", first.inspector.shutdown())
        .await
        .expect("flush");

    let mut second = start_inspector(config, upstream).await;
    let back = second.inspector.store().get(id).expect("reloaded");
    assert_eq!(
        &back.exchange().request.body.captured[..],
        &create_note(7)[..]
    );
    second.send("GET", M1, "/about", &[], vec![]).await;
    assert!(second.next_record().await.exchange().id > id);
}
