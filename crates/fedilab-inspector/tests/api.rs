//! The JSON API over real HTTP: list filters, detail, HAR, SSE, delete.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;

/// Records four exchanges and returns their ids:
/// a signed Create(Note) M1 -> M2, a browser page on M1, a WebFinger
/// lookup on M1, an unsigned Follow from bob (M2) to M1.
async fn traffic(lab: &mut Lab) -> [u64; 4] {
    let create = lab.post_signed_create(ALICE_KEY, 1).await.exchange().id;
    lab.send("GET", M1, "/about", &[], vec![]).await;
    let about = lab.next_record().await.exchange().id;
    lab.send(
        "GET",
        M1,
        "/.well-known/webfinger?resource=acct:alice@mastodon1.fediverse.local",
        &[],
        vec![],
    )
    .await;
    let webfinger = lab.next_record().await.exchange().id;
    let follow = br#"{"type":"Follow","actor":"https://mastodon2.fediverse.local/users/bob","object":"https://mastodon1.fediverse.local/users/alice"}"#;
    lab.send(
        "POST",
        M1,
        "/users/alice/inbox",
        &[("content-type".into(), "application/activity+json".into())],
        follow.to_vec(),
    )
    .await;
    let follow = lab.next_record().await.exchange().id;
    [create, about, webfinger, follow]
}

async fn ids(lab: &Lab, query: &str) -> Vec<u64> {
    let reply = lab.api("GET", &format!("/api/exchanges{query}")).await;
    assert_eq!(reply.status, 200, "{query}");
    reply.json()["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(|x| x["id"].as_u64().expect("id"))
        .collect()
}

#[tokio::test]
async fn list_filters_select_what_they_say() {
    let mut lab = lab(|_| {}).await;
    let [create, about, webfinger, follow] = traffic(&mut lab).await;
    assert_eq!(
        ids(&lab, "").await,
        [create, webfinger, follow],
        "server-to-server by default"
    );
    assert_eq!(
        ids(&lab, "?all=true").await,
        [create, about, webfinger, follow]
    );
    assert_eq!(
        ids(&lab, "?instance=mastodon2.fediverse.local").await,
        [create, follow],
        "as target or sender"
    );
    assert_eq!(ids(&lab, "?method=get").await, [webfinger]);
    assert_eq!(ids(&lab, "?method=GET&all=1").await, [about, webfinger]);
    assert_eq!(ids(&lab, "?status=202").await, [create, follow]);
    assert_eq!(ids(&lab, "?status=2xx").await, [create, webfinger, follow]);
    assert_eq!(ids(&lab, "?status=4xx").await, Vec::<u64>::new());
    assert_eq!(ids(&lab, "?activity=create").await, [create]);
    assert_eq!(ids(&lab, "?activity=Follow").await, [follow]);
    assert_eq!(ids(&lab, "?activity=webfinger").await, [webfinger]);
    assert_eq!(ids(&lab, "?text=hello%20from%20the%20lab").await, [create]);
    assert_eq!(
        ids(&lab, "?limit=2").await,
        [webfinger, follow],
        "the newest"
    );
    assert_eq!(
        ids(&lab, &format!("?after={create}&limit=1")).await,
        [webfinger],
        "the oldest after"
    );
}

#[tokio::test]
async fn detail_shows_bodies_headers_verdict_and_curl() {
    let mut lab = lab(|_| {}).await;
    let [create, ..] = traffic(&mut lab).await;
    let d = lab
        .api("GET", &format!("/api/exchanges/{create}"))
        .await
        .json();
    assert_eq!(d["activity"], "Create(Note)");
    assert_eq!(d["kind"], "inbox_post");
    assert_eq!(d["verdict"], "valid");
    assert_eq!(d["from"], M1);
    assert_eq!(d["url"], "http://mastodon2.fediverse.local/users/bob/inbox");
    assert_eq!(d["request"]["body"]["json"]["object"]["type"], "Note");
    assert_eq!(d["response"]["status"], 202);
    assert_eq!(d["analysis"]["signature"]["scheme"], "draft_cavage");
    assert_eq!(d["analysis"]["signature"]["digest"]["status"], "match");
    assert!(
        d["request"]["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h[0] == "signature")
    );
    let curl = d["curl"].as_str().expect("curl");
    assert!(
        curl.starts_with("curl -i -X POST 'http://mastodon2.fediverse.local/users/bob/inbox'"),
        "{curl}"
    );
    assert!(curl.contains("-H 'digest: SHA-256="), "{curl}");
    assert!(curl.contains("--data-binary '{"), "{curl}");

    let missing = lab.api("GET", "/api/exchanges/999999").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn har_export_follows_the_filter() {
    let mut lab = lab(|_| {}).await;
    let [create, ..] = traffic(&mut lab).await;
    let har = lab.api("GET", "/api/har").await;
    assert!(
        har.headers
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(".har"))
    );
    let har = har.json();
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["creator"]["name"], "fedilab-inspector");
    assert_eq!(har["log"]["entries"].as_array().map(Vec::len), Some(3));
    let har = lab.api("GET", "/api/har?activity=Create").await.json();
    let entries = har["log"]["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["_fedilab"]["id"], create);
    assert_eq!(e["_fedilab"]["verdict"], "valid");
    assert_eq!(e["request"]["method"], "POST");
    assert_eq!(
        e["request"]["url"],
        "http://mastodon2.fediverse.local/users/bob/inbox"
    );
    assert!(
        e["request"]["postData"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("\"Create\""))
    );
    assert_eq!(e["response"]["status"], 202);
    assert_eq!(e["response"]["statusText"], "Accepted");
    assert!(
        e["startedDateTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T'))
    );
    assert!(e["time"].as_f64().is_some());
}

/// Reads SSE frames until one of type `event` arrives; returns its data.
async fn next_event(body: &mut hyper::body::Incoming, buf: &mut String, event: &str) -> Value {
    within("an SSE event", async {
        loop {
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut name = "message";
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if name == event {
                    return serde_json::from_str(&data).unwrap_or(Value::Null);
                }
            }
            let frame = body.frame().await.expect("stream open").expect("frame");
            if let Ok(data) = frame.into_data() {
                buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await
}

#[tokio::test]
async fn events_stream_new_exchanges_live_and_delete_clears() {
    let mut lab = lab(|_| {}).await;
    let req = http::Request::get(format!("http://{}/api/events?activity=Create", lab.ui()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within("SSE connect", lab.client.request(req))
        .await
        .expect("SSE");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = resp.into_body();
    let mut buf = String::new();
    next_event(&mut body, &mut buf, "ready").await;

    let [create, ..] = traffic(&mut lab).await;
    let ev = next_event(&mut body, &mut buf, "exchange").await;
    assert_eq!(ev["id"], create, "the filter lets only the Create through");
    assert_eq!(ev["activity"], "Create(Note)");
    assert_eq!(ev["verdict"], "valid");

    let del = lab.api("DELETE", "/api/exchanges").await;
    assert_eq!(del.status, 204);
    next_event(&mut body, &mut buf, "cleared").await;
    assert_eq!(ids(&lab, "?all=true").await, Vec::<u64>::new());
    let stats = lab.api("GET", "/api/stats").await.json();
    assert_eq!(stats["stats"]["count"], 0);
    assert_eq!(stats["hosts"][0], M1);
}

#[tokio::test]
async fn the_page_is_self_contained() {
    let lab = lab(|_| {}).await;
    let page = lab.api("GET", "/").await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("<script>") && html.contains("<style>"));
    for external in ["src=\"http", "href=\"http", "@import", "//cdn", "src=\"/"] {
        assert!(!html.contains(external), "external asset: {external}");
    }
}
