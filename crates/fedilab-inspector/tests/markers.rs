//! Markers on the timeline (`POST`/`GET /api/markers`) and the clear that
//! `fedilab reset --clear-recordings` uses, through
//! `fedilab_inspector::client` over real HTTP.

mod common;

use std::time::Duration;

use common::*;
use fedilab_inspector::client::{self, ClientError};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_marker_sits_after_the_last_exchange_and_clear_empties_the_recording() {
    let mut lab = lab(|_| {}).await;
    let reply = lab.api("GET", "/api/markers").await;
    assert_eq!(reply.json()["markers"], serde_json::json!([]));
    lab.send("GET", M1, "/about", &[], vec![]).await;
    lab.next_record().await;
    let last = lab.inspector.store().snapshot()[0].exchange().id;

    client::mark(lab.ui(), "reset", "reset to fresh at 12:03:04", T)
        .await
        .expect("marked");
    let markers = lab.api("GET", "/api/markers").await.json();
    let m = &markers["markers"][0];
    assert_eq!(m["kind"], "reset");
    assert_eq!(m["text"], "reset to fresh at 12:03:04");
    assert_eq!(m["after"], last);
    assert!(m["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{m}");

    let err = client::mark(lab.ui(), "no spaces", "x", T)
        .await
        .expect_err("bad kind");
    assert!(matches!(err, ClientError::Status(s) if s == 400), "{err:?}");

    // A web page cannot add one (the guard's Origin rule).
    let reply = lab
        .api_with("POST", "/api/markers", &[("origin", "http://evil.example")])
        .await;
    assert_eq!(reply.status, 403);

    client::clear(lab.ui(), T).await.expect("cleared");
    assert!(lab.inspector.store().snapshot().is_empty());
    // Markers stay: they say where the recording was cleared.
    let markers = lab.api("GET", "/api/markers").await.json();
    assert_eq!(markers["markers"].as_array().map(Vec::len), Some(1));
}
