//! Routes at runtime: path-prefix routes (longest prefix wins), the server
//! list in the API, and `Inspector::set_routes` swapping routes without
//! losing recordings.

mod common;

use common::*;
use fedilab_inspector::{Route, ServerKind};
use tokio::net::TcpListener;

/// An address nothing listens on.
async fn dead_port() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test]
async fn prefix_routes_servers_list_and_a_route_swap_that_keeps_recordings() {
    let dead = dead_port().await;
    let mut lab = lab(|c| {
        c.routes.push(
            format!("{M1}/api/v1/streaming=http://{dead}")
                .parse()
                .expect("route"),
        );
    })
    .await;

    // The catch-all of M1 answers; its streaming prefix goes elsewhere.
    let about = lab.send("GET", M1, "/about", &[], vec![]).await;
    assert_eq!(about.status, 200);
    let first = lab.next_record().await;
    assert_eq!(
        first.exchange().upstream.as_deref(),
        Some(format!("http://{}", lab.upstream).as_str())
    );
    let streaming = lab
        .send("GET", M1, "/api/v1/streaming/health", &[], vec![])
        .await;
    assert_eq!(streaming.status, 502);
    let second = lab.next_record().await;
    assert_eq!(
        second.exchange().upstream.as_deref(),
        Some(format!("http://{dead}").as_str())
    );

    // GET /api/servers lists hosts, kinds and upstreams, longest prefix first.
    let servers = lab.api("GET", "/api/servers").await.json();
    let list = servers["servers"].as_array().expect("servers");
    let hosts: Vec<&str> = list.iter().filter_map(|s| s["host"].as_str()).collect();
    assert_eq!(hosts, [M1, M2, WS]);
    assert_eq!(list[0]["kind"], "instance");
    assert_eq!(list[0]["upstreams"][0]["path_prefix"], "/api/v1/streaming");
    assert_eq!(list[0]["upstreams"][1]["path_prefix"], "/");

    // Swap: M1 only, plus an attached server. Duplicates are refused first.
    let mine = "mine.fediverse.local";
    let upstream = format!("http://{}", lab.upstream);
    let dup = vec![
        Route::new(M1, "/", &upstream).expect("route"),
        Route::new(M1, "", &upstream).expect("route"),
    ];
    assert!(lab.inspector.set_routes(&dup).is_err());
    let routes = vec![
        Route::new(M1, "/", &upstream).expect("route"),
        Route::new(mine, "/", &upstream)
            .expect("route")
            .with_kind(ServerKind::Attached),
    ];
    lab.inspector.set_routes(&routes).expect("swap");
    let reply = lab.send("GET", mine, "/about", &[], vec![]).await;
    assert_eq!(reply.status, 200);
    lab.next_record().await;
    let gone = lab.send("GET", M2, "/about", &[], vec![]).await;
    assert_eq!(gone.status, 502);
    lab.next_record().await;

    let servers = lab.api("GET", "/api/servers").await.json();
    assert_eq!(servers["servers"][1]["host"], mine);
    assert_eq!(servers["servers"][1]["kind"], "attached");
    let stats = lab.api("GET", "/api/stats").await.json();
    assert_eq!(stats["hosts"], serde_json::json!([M1, mine]));
    assert_eq!(stats["stats"]["count"], 4, "recordings survive the swap");
}
