//! Listing order through the real API: exchanges are listed by request
//! start (ids follow completion), while the `after` cursor still hands a
//! poller each exchange exactly once. A slow request held open by its
//! upstream starts first and completes last.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use common::*;
use fedilab_inspector::InspectorConfig;
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

const HOST: &str = "slowfast.fediverse.local";

struct Gate {
    arrived: mpsc::Sender<()>,
    release: Notify,
}

/// An upstream whose `/slow` reports its arrival and answers only once
/// released; `/fast` answers at once.
async fn gated_upstream() -> (SocketAddr, Arc<Gate>, mpsc::Receiver<()>) {
    let (arrived, rx) = mpsc::channel(4);
    let gate = Arc::new(Gate {
        arrived,
        release: Notify::new(),
    });
    let app = Router::new()
        .route(
            "/slow",
            get(|State(g): State<Arc<Gate>>| async move {
                let released = g.release.notified();
                let _ = g.arrived.send(()).await;
                released.await;
                "slow"
            }),
        )
        .route("/fast", get(|| async { "fast" }))
        .with_state(Arc::clone(&gate));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, gate, rx)
}

/// `GET /api/exchanges?{query}`: the uris and ids listed, and `last_id`.
async fn page(lab: &Lab, query: &str) -> (Vec<(String, u64)>, Option<u64>) {
    let reply = lab.api("GET", &format!("/api/exchanges?{query}")).await;
    assert_eq!(reply.status, 200, "{query}");
    let doc = reply.json();
    let listed = doc["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|x| {
            (
                x["uri"].as_str().expect("uri").to_owned(),
                x["id"].as_u64().expect("id"),
            )
        })
        .collect();
    (listed, doc["last_id"].as_u64())
}

fn uris(listed: &[(String, u64)]) -> Vec<&str> {
    listed.iter().map(|(u, _)| u.as_str()).collect()
}

#[tokio::test]
async fn a_slow_request_started_first_lists_first_and_polling_sees_each_once() {
    let (upstream, gate, mut arrived) = gated_upstream().await;
    let mut lab = start_inspector(
        InspectorConfig {
            routes: vec![route(HOST, upstream)],
            ..InspectorConfig::default()
        },
        upstream,
    )
    .await;

    // The slow request: its head has crossed the proxy (so its start is
    // recorded) once the upstream has it.
    let client = lab.client.clone();
    let proxy = lab.proxy();
    let slow = tokio::spawn(async move {
        let req = http::Request::get(format!("http://{proxy}/slow"))
            .header("host", HOST)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = client.request(req).await.expect("slow request");
        resp.into_body()
            .collect()
            .await
            .expect("slow body")
            .to_bytes()
    });
    within("the slow request upstream", arrived.recv())
        .await
        .expect("arrival");

    let (listed, cursor) = page(&lab, "all=1&after=0").await;
    assert!(listed.is_empty(), "nothing has completed: {listed:?}");
    assert_eq!(cursor, None);

    // The fast one starts second and completes first.
    let fast = lab.send("GET", HOST, "/fast", &[], vec![]).await;
    assert_eq!(fast.body, "fast");
    let fast_id = lab.next_record_id().await;

    let mut seen = Vec::new();
    let (first, cursor) = page(&lab, "all=1&after=0").await;
    assert_eq!(uris(&first), ["/fast"]);
    assert_eq!(cursor, Some(fast_id));
    seen.extend(first.iter().map(|(_, id)| *id));

    gate.release.notify_one();
    let body = within("the slow answer", slow).await.expect("slow task");
    assert_eq!(body, "slow");
    let slow_id = lab.next_record_id().await;
    assert!(slow_id > fast_id, "ids follow completion");

    // The whole list: the slow one first, although its id is higher; the
    // cursor is the highest id, not the last entry's.
    let (all, cursor) = page(&lab, "all=1").await;
    assert_eq!(
        all,
        [("/slow".to_owned(), slow_id), ("/fast".to_owned(), fast_id)]
    );
    assert_eq!(cursor, Some(slow_id));
    let (from_start, cursor) = page(&lab, "all=1&after=0").await;
    assert_eq!(from_start, all);
    assert_eq!(cursor, Some(slow_id));

    // The poller: the exchange that started earlier arrives in the later
    // page; nothing is repeated or missed.
    let (second, cursor) = page(&lab, &format!("all=1&after={fast_id}")).await;
    assert_eq!(uris(&second), ["/slow"]);
    assert_eq!(cursor, Some(slow_id));
    seen.extend(second.iter().map(|(_, id)| *id));
    let (third, cursor) = page(&lab, &format!("all=1&after={slow_id}")).await;
    assert!(third.is_empty());
    assert_eq!(cursor, None);
    seen.sort_unstable();
    assert_eq!(seen, [fast_id, slow_id], "each exactly once");

    // `limit` keeps the newest by completion, listed by start.
    let (newest, cursor) = page(&lab, "all=1&limit=1").await;
    assert_eq!(uris(&newest), ["/slow"]);
    assert_eq!(cursor, Some(slow_id));
    let (oldest_after, _) = page(&lab, "all=1&after=0&limit=1").await;
    assert_eq!(
        uris(&oldest_after),
        ["/fast"],
        "the lowest id after the cursor"
    );

    // HAR: the same order, by startedDateTime.
    let har = lab.api("GET", "/api/har?all=1").await.json();
    let entries = har["log"]["entries"].as_array().expect("entries");
    let ids: Vec<u64> = entries
        .iter()
        .map(|e| e["_fedilab"]["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, [slow_id, fast_id]);
    let started: Vec<&str> = entries
        .iter()
        .map(|e| e["startedDateTime"].as_str().expect("startedDateTime"))
        .collect();
    let mut sorted = started.clone();
    sorted.sort_unstable();
    assert_eq!(started, sorted, "entries sorted by startedDateTime");
    let times: Vec<Value> = entries.iter().map(|e| e["time"].clone()).collect();
    assert!(times.iter().all(Value::is_f64), "{times:?}");
}
