//! Replay through the API: a recorded signed delivery re-sent unchanged
//! reaches the receiver with the same headers byte for byte (so its
//! signature still verifies there); an edited one is marked as edited and
//! fails the receiver's check. Both link to the original.

mod common;

use common::receiver::{self, received};
use common::*;
use fedilab_inspector::InspectorConfig;
use serde_json::Value;

async fn replay_lab() -> (Lab, receiver::Log) {
    let upstream = start_upstream().await;
    let (rx, log) = receiver::start().await;
    let config = InspectorConfig {
        routes: vec![route(M1, upstream), route(M2, rx)],
        ..InspectorConfig::default()
    };
    (start_inspector(config, upstream).await, log)
}

async fn detail(lab: &Lab, id: u64) -> Value {
    lab.api("GET", &format!("/api/exchanges/{id}")).await.json()
}

#[tokio::test]
async fn an_unchanged_replay_keeps_every_header_and_still_verifies() {
    let (mut lab, log) = replay_lab().await;
    let original = lab.post_signed_create(ALICE_KEY, 7).await.exchange().id;
    let reply = lab
        .api("POST", &format!("/api/exchanges/{original}/replay"))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer = reply.json();
    assert_eq!(answer["replay_of"], original);
    assert_eq!(answer["edited"], false);
    assert_eq!(answer["status"], 202);
    let id = answer["id"].as_u64().expect("id");
    assert!(id > original);

    let got = received(&log);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1].status, 202,
        "the receiver verified the signature again"
    );
    assert_eq!(got[0].body, got[1].body);
    for name in [
        "host",
        "date",
        "digest",
        "content-type",
        "signature",
        "content-length",
    ] {
        assert_eq!(got[0].header(name), got[1].header(name), "{name}");
    }

    let d = detail(&lab, id).await;
    assert_eq!(d["replay_of"], original);
    assert!(d.get("edited").is_none());
    assert_eq!(d["client"], "fedilab-inspector (replay)");
    assert_eq!(d["activity"], "Create(Note)");
    assert_eq!(d["verdict"], "valid");
    let list = lab.api("GET", "/api/exchanges").await.json();
    let item = list["exchanges"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["id"] == id)
        .expect("listed")
        .clone();
    assert_eq!(item["replay_of"], original);
}

#[tokio::test]
async fn an_edited_replay_is_marked_and_fails_the_receivers_check() {
    let (mut lab, log) = replay_lab().await;
    let original = lab.post_signed_create(ALICE_KEY, 8).await.exchange().id;
    let edit = serde_json::json!({
        "body": {"type": "Create", "actor": ALICE, "object": {"type": "Note", "content": "edited"}},
        "headers": {"x-lab-note": "edited by hand", "user-agent": null},
    });
    let reply = lab
        .api_json(
            "POST",
            &format!("/api/exchanges/{original}/replay"),
            &edit.to_string(),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer = reply.json();
    assert_eq!(answer["edited"], true);
    assert_eq!(answer["status"], 401);
    let id = answer["id"].as_u64().expect("id");

    let got = received(&log);
    assert_eq!(got.len(), 2);
    let sent: Value = serde_json::from_slice(&got[1].body).expect("JSON body");
    assert_eq!(sent, edit["body"]);
    assert_eq!(
        got[1].header("content-length"),
        Some(got[1].body.len().to_string().as_str())
    );
    assert_eq!(got[1].header("x-lab-note"), Some("edited by hand"));
    assert_eq!(got[1].header("signature"), got[0].header("signature"));

    let d = detail(&lab, id).await;
    assert_eq!(d["replay_of"], original);
    assert_eq!(d["edited"], true);
    assert_eq!(d["verdict"], "invalid");
}

#[tokio::test]
async fn replays_of_what_cannot_be_replayed_are_refused() {
    let mut lab = lab(|_| {}).await;
    assert_eq!(
        lab.api("POST", "/api/exchanges/999/replay").await.status,
        404
    );
    ws_echo(lab.proxy(), "hi").await;
    let ws = lab.next_record_id().await;
    let reply = lab
        .api("POST", &format!("/api/exchanges/{ws}/replay"))
        .await;
    assert_eq!(reply.status, 409, "a WebSocket upgrade");
    let create = lab.post_signed_create(ALICE_KEY, 1).await.exchange().id;
    let reply = lab
        .api_json(
            "POST",
            &format!("/api/exchanges/{create}/replay"),
            r#"{"bogus": 1}"#,
        )
        .await;
    assert_eq!(reply.status, 400);
    let reply = lab
        .api_json(
            "POST",
            &format!("/api/exchanges/{create}/replay"),
            r#"{"headers": {"x-n": 1}}"#,
        )
        .await;
    assert_eq!(reply.status, 400, "header values are strings");
}
