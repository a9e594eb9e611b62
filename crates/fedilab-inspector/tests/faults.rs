//! Fault rules end to end: rules posted to the API change what the proxy
//! does to real requests between a sender and a receiving server that
//! checks digests and signatures (`common::receiver`). Each action, with
//! counts, a time window (on the rules' own clock, moved forward by the
//! test) and seeded probabilities; the marks in the API and HAR; the
//! timeline of rule changes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::receiver::{self, Log, received};
use common::*;
use fedilab_inspector::InspectorConfig;
use fedilab_inspector::store::Entry;
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;

/// M1 is the ordinary upstream (it serves Alice's actor, so verdicts
/// work); M2 is the checking receiver.
async fn fault_lab() -> (Lab, Log) {
    let upstream = start_upstream().await;
    let (rx, log) = receiver::start().await;
    let config = InspectorConfig {
        routes: vec![route(M1, upstream), route(M2, rx)],
        ..InspectorConfig::default()
    };
    (start_inspector(config, upstream).await, log)
}

async fn add_rule(lab: &Lab, json: &str) -> u64 {
    let reply = lab.api_json("POST", "/api/faults", json).await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_u64().expect("rule id")
}

/// Alice's signed Create(Note) number `n` to Bob's inbox on M2: the reply
/// and the record.
async fn deliver(lab: &mut Lab, n: u32) -> (Reply, Arc<Entry>, Vec<u8>, Vec<(String, String)>) {
    let key = key(ALICE_KEY);
    let body = create_note(n);
    let headers = inbox_cavage(&key, &body).headers();
    let reply = lab.send("POST", M2, INBOX, &headers, body.clone()).await;
    (reply, lab.next_record().await, body, headers)
}

async fn detail(lab: &Lab, id: u64) -> Value {
    let reply = lab.api("GET", &format!("/api/exchanges/{id}")).await;
    assert_eq!(reply.status, 200);
    reply.json()
}

fn sent<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .expect("sent header")
}

#[tokio::test]
async fn a_status_rule_answers_matching_requests_itself_as_often_as_its_count() {
    let (mut lab, log) = fault_lab().await;
    let rule = add_rule(
        &lab,
        r#"{"match": {"host": "mastodon2", "from": "mastodon1", "method": "post",
             "path_prefix": "/users/", "activity": "Create", "count": 2},
            "action": {"status": 503, "body": "busy", "retry_after": 30}}"#,
    )
    .await;

    // A Follow matches host and path but not the activity: untouched,
    // forwarded, and not counted.
    let follow = br#"{"type":"Follow","actor":"https://mastodon1.fediverse.local/users/alice","object":"https://mastodon2.fediverse.local/users/bob"}"#;
    let reply = lab
        .send(
            "POST",
            M2,
            INBOX,
            &[("content-type".into(), "application/activity+json".into())],
            follow.to_vec(),
        )
        .await;
    assert_eq!(reply.status, 401, "the receiver answered (no signature)");
    let rec = lab.next_record().await;
    assert!(rec.marks.fault.is_none());
    assert_eq!(received(&log).len(), 1);

    for n in 0..2 {
        let (reply, rec, body, _) = deliver(&mut lab, n).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.headers["retry-after"], "30");
        assert_eq!(reply.headers["x-fedilab-fault"], rule.to_string().as_str());
        assert_eq!(&reply.body[..], b"busy");
        assert_eq!(
            &rec.exchange().request.body.captured[..],
            &body[..],
            "recorded"
        );
        let d = detail(&lab, rec.exchange().id).await;
        assert_eq!(d["fault"]["rule"], rule);
        assert_eq!(
            d["fault"]["action"],
            serde_json::json!({"status": 503, "body": "busy", "retry_after": 30})
        );
        assert_eq!(d["activity"], "Create(Note)");
    }
    assert_eq!(received(&log).len(), 1, "answered without forwarding");

    let (reply, rec, _, _) = deliver(&mut lab, 3).await;
    assert_eq!(reply.status, 202, "the count is used up");
    assert!(detail(&lab, rec.exchange().id).await.get("fault").is_none());
    assert_eq!(received(&log).len(), 2);

    let list = lab.api("GET", "/api/faults").await.json();
    assert_eq!(list["rules"][0]["id"], rule);
    assert_eq!(list["rules"][0]["applied"], 2);
    assert_eq!(list["rules"][0]["active"], false);
}

#[tokio::test]
async fn a_delay_rule_holds_the_request_then_forwards_it() {
    let (mut lab, log) = fault_lab().await;
    let rule = add_rule(
        &lab,
        r#"{"match": {"path_prefix": "/users/bob/inbox"}, "action": {"delay_ms": 150}}"#,
    )
    .await;
    let (reply, rec, body, _) = deliver(&mut lab, 1).await;
    assert_eq!(reply.status, 202);
    assert_eq!(received(&log)[0].body, body);
    assert_eq!(rec.marks.fault.as_ref().map(|f| f.rule), Some(rule));
    // The delay is part of the recorded duration (a lower bound only).
    assert!(
        rec.exchange().total_us >= 150_000,
        "{}",
        rec.exchange().total_us
    );
}

#[tokio::test]
async fn a_reset_rule_closes_the_connection_unanswered() {
    let (mut lab, log) = fault_lab().await;
    let rule = add_rule(
        &lab,
        r#"{"match": {"host": "mastodon2.fediverse.local"}, "action": {"reset": true}}"#,
    )
    .await;
    let key = key(ALICE_KEY);
    let body = create_note(1);
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{INBOX}", lab.proxy()))
        .header("host", M2);
    for (n, v) in inbox_cavage(&key, &body).headers() {
        req = req.header(n, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let result = within("reset request", lab.client.request(req)).await;
    assert!(
        result.is_err(),
        "no answer: {:?}",
        result.map(|r| r.status())
    );
    let rec = lab.next_record().await;
    assert!(rec.exchange().response.is_none());
    assert!(
        rec.exchange()
            .error
            .as_deref()
            .is_some_and(|e| e.contains(&format!("fault rule {rule}"))),
        "{:?}",
        rec.exchange().error
    );
    assert_eq!(rec.marks.fault.as_ref().map(|f| f.rule), Some(rule));
    assert!(received(&log).is_empty());
    // Other hosts are untouched.
    assert_eq!(lab.send("GET", M1, "/about", &[], vec![]).await.status, 200);
}

/// The reset is a TCP RST, not a FIN: the client's read fails with
/// "connection reset", as it does against a server that crashed mid-request.
#[tokio::test]
async fn a_reset_rule_sends_a_tcp_rst() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (lab, _log) = fault_lab().await;
    add_rule(
        &lab,
        r#"{"match": {"host": "mastodon2.fediverse.local"}, "action": {"reset": true}}"#,
    )
    .await;
    let mut stream = within("connect", tokio::net::TcpStream::connect(lab.proxy()))
        .await
        .expect("connects");
    let request = format!(
        "POST {INBOX} HTTP/1.1\r\nhost: {M2}\r\ncontent-type: application/activity+json\r\n\
         content-length: 2\r\n\r\n{{}}"
    );
    within("write", stream.write_all(request.as_bytes()))
        .await
        .expect("written");
    let mut buf = [0u8; 512];
    let read = within("read", stream.read(&mut buf)).await;
    match read {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!(
            "expected a reset, read {n} bytes: {:?}",
            String::from_utf8_lossy(buf.get(..n).unwrap_or_default())
        ),
    }
}

#[tokio::test]
async fn corrupting_the_body_breaks_the_digest_at_the_receiver() {
    let (mut lab, log) = fault_lab().await;
    add_rule(
        &lab,
        r#"{"match": {"activity": "Create(Note)"}, "action": {"corrupt": "body"}}"#,
    )
    .await;
    let (reply, rec, body, _) = deliver(&mut lab, 1).await;
    assert_eq!(reply.status, 401);
    assert_eq!(&reply.body[..], b"digest mismatch");
    let got = &received(&log)[0].body;
    assert_eq!(got.len(), body.len(), "same length");
    assert_eq!(
        got.iter().zip(&body).filter(|(a, b)| a != b).count(),
        1,
        "one byte differs"
    );
    serde_json::from_slice::<Value>(got).expect("still JSON");
    // The record holds what was forwarded: its verdict says why it fails.
    let d = detail(&lab, rec.exchange().id).await;
    assert_eq!(d["verdict"], "invalid");
    assert_eq!(d["fault"]["action"]["corrupt"], "body");
}

#[tokio::test]
async fn corrupting_the_signature_breaks_its_check_at_the_receiver() {
    let (mut lab, log) = fault_lab().await;
    add_rule(
        &lab,
        r#"{"match": {"method": "POST"}, "action": {"corrupt": "signature"}}"#,
    )
    .await;
    let (reply, rec, body, headers) = deliver(&mut lab, 1).await;
    assert_eq!(reply.status, 401);
    assert_eq!(&reply.body[..], b"bad signature");
    let got = &received(&log)[0];
    assert_eq!(got.body, body);
    assert_eq!(got.header("digest"), Some(sent(&headers, "digest")));
    let signature = got.header("signature").expect("signature");
    assert_ne!(signature, sent(&headers, "signature"));
    assert_eq!(signature.len(), sent(&headers, "signature").len());
    let d = detail(&lab, rec.exchange().id).await;
    assert_eq!(d["verdict"], "invalid");
    assert!(
        d["request"]["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h[0] == "signature" && h[1] == signature),
        "the record shows the signature as forwarded"
    );
}

#[tokio::test]
async fn a_duplicate_rule_delivers_the_same_request_twice() {
    let (mut lab, log) = fault_lab().await;
    let rule = add_rule(
        &lab,
        r#"{"match": {"activity": "Create"}, "action": {"duplicate": true}}"#,
    )
    .await;
    let (reply, first, body, headers) = deliver(&mut lab, 1).await;
    assert_eq!(reply.status, 202);
    let second = lab.next_record().await;
    let got = received(&log);
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.body, body);
        assert_eq!(r.status, 202, "the signature still verifies");
        for name in ["signature", "date", "digest"] {
            assert_eq!(r.header(name), Some(sent(&headers, name)), "{name}");
        }
    }
    for rec in [&first, &second] {
        assert_eq!(rec.marks.fault.as_ref().map(|f| f.rule), Some(rule));
    }
    assert_eq!(
        second.exchange().client.as_deref(),
        Some("fedilab-inspector (duplicate)")
    );
}

#[tokio::test]
async fn a_rule_with_a_window_stops_when_its_clock_passes_it() {
    let (mut lab, _log) = fault_lab().await;
    add_rule(
        &lab,
        r#"{"match": {"host": "mastodon2", "for_seconds": 60}, "action": {"status": 500}}"#,
    )
    .await;
    assert_eq!(deliver(&mut lab, 1).await.0.status, 500);
    lab.inspector
        .faults()
        .advance_clock(Duration::from_secs(59));
    assert_eq!(deliver(&mut lab, 2).await.0.status, 500, "still inside");
    lab.inspector.faults().advance_clock(Duration::from_secs(2));
    assert_eq!(deliver(&mut lab, 3).await.0.status, 202, "window over");
    let list = lab.api("GET", "/api/faults").await.json();
    assert_eq!(list["rules"][0]["active"], false);
    assert_eq!(list["rules"][0]["applied"], 2);
}

#[tokio::test]
async fn a_seeded_probability_affects_the_same_requests_every_run() {
    let (mut lab, _log) = fault_lab().await;
    let rule = r#"{"match": {"host": "mastodon2", "probability": 0.5, "seed": 42}, "action": {"status": 503}}"#;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let id = add_rule(&lab, rule).await;
        let mut pattern = Vec::new();
        for n in 0..24 {
            pattern.push(deliver(&mut lab, n).await.0.status == 503);
        }
        assert_eq!(
            lab.api("DELETE", &format!("/api/faults/{id}")).await.status,
            204
        );
        runs.push(pattern);
    }
    assert_eq!(runs[0], runs[1], "same seed, same requests affected");
    let hit = runs[0].iter().filter(|h| **h).count();
    assert!(hit > 0 && hit < 24, "{hit} of 24 at p=0.5");
}

#[tokio::test]
async fn the_api_validates_lists_and_removes_rules_and_keeps_a_timeline() {
    let (mut lab, _log) = fault_lab().await;
    for bad in [
        r#"{"match": {}, "action": {"status": 503, "reset": true}}"#,
        r#"{"action": {}}"#,
        r#"{"match": {"colour": "red"}, "action": {"reset": true}}"#,
        r#"{"match": {"probability": 2}, "action": {"reset": true}}"#,
        r#"not json"#,
    ] {
        let reply = lab.api_json("POST", "/api/faults", bad).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert!(reply.json()["error"].is_string());
    }
    let a = add_rule(&lab, r#"{"action": {"status": 418}}"#).await;
    let b = add_rule(
        &lab,
        r#"{"match": {"host": "nowhere"}, "action": {"delay_ms": 1}}"#,
    )
    .await;
    let (reply, rec, _, _) = deliver(&mut lab, 1).await;
    assert_eq!(reply.status, 418, "no match means every request");

    // HAR carries the mark.
    let har = lab.api("GET", "/api/har").await.json();
    let entry = har["log"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["_fedilab"]["id"] == rec.exchange().id)
        .expect("entry")
        .clone();
    assert_eq!(entry["_fedilab"]["fault"]["rule"], a);
    assert_eq!(entry["_fedilab"]["fault"]["action"]["status"], 418);
    // And so does the list.
    let list = lab.api("GET", "/api/exchanges").await.json();
    assert_eq!(list["exchanges"][0]["fault"]["rule"], a);

    assert_eq!(
        lab.api("DELETE", &format!("/api/faults/{a}")).await.status,
        204
    );
    assert_eq!(
        lab.api("DELETE", &format!("/api/faults/{a}")).await.status,
        404
    );
    assert_eq!(deliver(&mut lab, 2).await.0.status, 202);
    assert_eq!(lab.api("DELETE", "/api/faults").await.status, 204);
    let faults = lab.api("GET", "/api/faults").await.json();
    assert_eq!(faults["rules"], serde_json::json!([]));
    let changes: Vec<(String, Value)> = faults["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap_or("").to_owned(),
                c["rule"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("added".to_owned(), Value::from(a)),
            ("added".to_owned(), Value::from(b)),
            ("removed".to_owned(), Value::from(a)),
            ("cleared".to_owned(), Value::Null),
        ]
    );
    assert!(
        faults["changes"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("answer 418"))
    );
}

#[tokio::test]
async fn rules_from_the_configuration_apply_from_the_start() {
    let upstream = start_upstream().await;
    let (rx, _log) = receiver::start().await;
    let config = InspectorConfig {
        routes: vec![route(M1, upstream), route(M2, rx)],
        faults: vec![
            "host=mastodon2,status=429,retry-after=5"
                .parse()
                .expect("rule"),
        ],
        ..InspectorConfig::default()
    };
    let mut lab = start_inspector(config, upstream).await;
    let (reply, _, _, _) = deliver(&mut lab, 1).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "5");
    let faults = lab.api("GET", "/api/faults").await.json();
    assert_eq!(faults["changes"][0]["change"], "added");
}

#[tokio::test]
async fn the_event_stream_announces_rule_changes() {
    let (lab, _log) = fault_lab().await;
    let req = http::Request::get(format!("http://{}/api/events", lab.ui()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within("events", lab.client.request(req))
        .await
        .expect("events");
    let mut body = resp.into_body();
    let mut text = String::new();
    let mut added = false;
    within("a fault event", async {
        loop {
            let frame = body.frame().await.expect("open").expect("frame");
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
            if text.contains("event: ready") && !added {
                added = true;
                add_rule(&lab, r#"{"action": {"reset": true}}"#).await;
            }
            if text.contains("event: fault") && text.contains("\"change\":\"added\"") {
                return;
            }
        }
    })
    .await;
}
