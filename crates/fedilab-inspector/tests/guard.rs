//! The UI listener refuses other web pages in the user's browser: a
//! DNS-rebinding `Host` and cross-site writes, over real HTTP.

mod common;

use common::*;

/// Records one exchange and returns how many the store holds.
async fn one_recorded(lab: &mut Lab) -> usize {
    lab.send("GET", M1, "/about", &[], vec![]).await;
    lab.next_record().await;
    lab.inspector.store().snapshot().len()
}

#[tokio::test]
async fn a_rebinding_host_is_refused_and_loopback_names_are_not() {
    let mut lab = lab(|_| {}).await;
    one_recorded(&mut lab).await;
    let port = lab.ui().port();

    let evil = format!("evil.example:{port}");
    let reply = lab
        .api_with("GET", "/api/exchanges?all=true", &[("host", &evil)])
        .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("Host")),
        "says why"
    );
    assert!(
        !String::from_utf8_lossy(&reply.body).contains("/about"),
        "no recording leaks"
    );
    let page = lab.api_with("GET", "/", &[("host", &evil)]).await;
    assert_eq!(page.status, 403, "the page too");

    for ok in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let reply = lab
            .api_with("GET", "/api/exchanges?all=true", &[("host", &ok)])
            .await;
        assert_eq!(reply.status, 200, "{ok}");
        assert_eq!(reply.json()["exchanges"][0]["uri"], "/about", "{ok}");
    }
    let wrong_port = format!("localhost:{}", port.wrapping_add(1));
    let reply = lab
        .api_with("GET", "/api/stats", &[("host", &wrong_port)])
        .await;
    assert_eq!(reply.status, 403, "the port must match");
}

#[tokio::test]
async fn a_cross_site_delete_is_refused_and_clears_nothing() {
    let mut lab = lab(|_| {}).await;
    let held = one_recorded(&mut lab).await;
    assert_eq!(held, 1);

    let reply = lab
        .api_with(
            "DELETE",
            "/api/exchanges",
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(reply.status, 403);
    let reply = lab
        .api_with(
            "DELETE",
            "/api/exchanges",
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(reply.status, 403, "a cross-site fetch without Origin");
    assert_eq!(lab.inspector.store().snapshot().len(), 1, "still recorded");

    let same = format!("http://localhost:{}", lab.ui().port());
    let reply = lab
        .api_with(
            "DELETE",
            "/api/exchanges",
            &[("origin", &same), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(reply.status, 204, "same-origin, as the page sends it");
    assert_eq!(lab.inspector.store().snapshot().len(), 0);
}

#[tokio::test]
async fn a_delete_without_browser_headers_is_a_curl_and_allowed() {
    let mut lab = lab(|_| {}).await;
    one_recorded(&mut lab).await;
    let reply = lab.api("DELETE", "/api/exchanges").await;
    assert_eq!(reply.status, 204);
    assert_eq!(lab.inspector.store().snapshot().len(), 0);
}

#[tokio::test]
async fn a_cross_site_page_can_neither_add_fault_rules_nor_replay() {
    let mut lab = lab(|_| {}).await;
    let id = lab.post_signed_create(ALICE_KEY, 1).await.exchange().id;
    for path in [
        "/api/faults".to_owned(),
        format!("/api/exchanges/{id}/replay"),
    ] {
        let reply = lab
            .api_with("POST", &path, &[("origin", "http://evil.example")])
            .await;
        assert_eq!(reply.status, 403, "{path}");
        let reply = lab
            .api_with("POST", &path, &[("sec-fetch-site", "cross-site")])
            .await;
        assert_eq!(reply.status, 403, "{path} without Origin");
    }
    let reply = lab
        .api_with(
            "DELETE",
            "/api/faults",
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(lab.inspector.faults().list().is_empty(), "no rule added");
    assert_eq!(
        lab.inspector.store().snapshot().len(),
        1,
        "nothing replayed"
    );
}
