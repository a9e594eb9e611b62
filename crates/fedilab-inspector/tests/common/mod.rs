//! Shared test fixtures: an in-process upstream (actor documents with a real
//! RSA key, an inbox, an echo endpoint, a WebSocket echo), an inspector in
//! front of it, a client, and request signers for draft-cavage and RFC 9421.
#![allow(dead_code)]

pub mod receiver;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use fedilab_inspector::store::{Entry, StoreEvent};
use fedilab_inspector::{Inspector, InspectorConfig, Route};
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey as _;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub const ALICE_KEY: &str = include_str!("../fixtures/alice.key.pem");
pub const ALICE_PUB: &str = include_str!("../fixtures/alice.pub.pem");
pub const MALLORY_KEY: &str = include_str!("../fixtures/mallory.key.pem");

pub const M1: &str = "mastodon1.fediverse.local";
pub const M2: &str = "mastodon2.fediverse.local";
pub const WS: &str = "streaming.fediverse.local";
pub const ALICE: &str = "https://mastodon1.fediverse.local/users/alice";
pub const ALICE_KEY_ID: &str = "https://mastodon1.fediverse.local/users/alice#main-key";
/// Bob's inbox on [`M2`], where Alice's activities go.
pub const INBOX: &str = "/users/bob/inbox";

/// Every await in a test goes through this.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

pub fn key(pem: &str) -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(pem).expect("fixture key")
}

/// The upstream every route points at: serves actors (with alice's public
/// key) on any host, accepts inbox POSTs, echoes requests.
fn upstream_app() -> Router {
    Router::new()
        .route("/users/{name}", get(actor))
        .route("/users/{name}/inbox", post(inbox))
        .route("/inbox", post(inbox))
        .route("/echo", any(echo))
        .route(
            "/about",
            get(|| async { ([("content-type", "text/html")], "<html>about</html>") }),
        )
        .route(
            "/big",
            get(|| async {
                (
                    [("content-type", "application/octet-stream")],
                    vec![7u8; 3 * 1024 * 1024],
                )
            }),
        )
        .route(
            "/.well-known/webfinger",
            get(|| async {
                (
                    [("content-type", "application/jrd+json")],
                    r#"{"subject":"acct:alice@mastodon1.fediverse.local"}"#,
                )
            }),
        )
}

async fn actor(Path(name): Path<String>, headers: HeaderMap) -> impl IntoResponse {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("unknown");
    let id = format!("https://{host}/users/{name}");
    let doc = serde_json::json!({
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": id,
        "type": "Person",
        "preferredUsername": name,
        "inbox": format!("{id}/inbox"),
        "publicKey": { "id": format!("{id}#main-key"), "owner": id, "publicKeyPem": ALICE_PUB },
    });
    (
        [("content-type", "application/activity+json; charset=utf-8")],
        doc.to_string(),
    )
}

async fn inbox(body: Bytes) -> impl IntoResponse {
    let _ = body.len();
    StatusCode::ACCEPTED
}

async fn echo(req: Request) -> impl IntoResponse {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let doc = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": STANDARD.encode(&body),
    });
    ([("content-type", "application/json")], doc.to_string())
}

/// A WebSocket echo server; returns its address.
async fn ws_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        let _ = ws.close(None).await;
                        break;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

pub struct Lab {
    pub inspector: Inspector,
    pub upstream: SocketAddr,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub events: broadcast::Receiver<StoreEvent>,
}

pub async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, upstream_app()).await;
    });
    addr
}

/// Upstream, WebSocket upstream, and an inspector routing M1, M2 and WS.
pub async fn lab(tweak: impl FnOnce(&mut InspectorConfig)) -> Lab {
    let upstream = start_upstream().await;
    let ws = ws_upstream().await;
    let mut config = InspectorConfig {
        routes: vec![route(M1, upstream), route(M2, upstream), route(WS, ws)],
        ..InspectorConfig::default()
    };
    tweak(&mut config);
    start_inspector(config, upstream).await
}

pub fn route(host: &str, addr: SocketAddr) -> Route {
    format!("{host}=http://{addr}").parse().expect("route")
}

pub async fn start_inspector(config: InspectorConfig, upstream: SocketAddr) -> Lab {
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let ui = TcpListener::bind("127.0.0.1:0").await.expect("bind ui");
    let inspector = Inspector::start(config, proxy, Some(ui)).expect("start inspector");
    let events = inspector.store().subscribe();
    Lab {
        inspector,
        upstream,
        client: Client::builder(TokioExecutor::new()).build_http(),
        events,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON reply")
    }
}

impl Lab {
    pub fn proxy(&self) -> SocketAddr {
        self.inspector.proxy_addr()
    }

    pub fn ui(&self) -> SocketAddr {
        self.inspector.ui_addr().expect("ui")
    }

    /// Sends a request through the proxy with `Host: host`.
    pub async fn send(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy()))
            .header("host", host);
        for (n, v) in headers {
            req = req.header(n.as_str(), v.as_str());
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        self.call(req).await
    }

    /// Calls the UI/API listener.
    pub async fn api(&self, method: &str, path: &str) -> Reply {
        self.api_with(method, path, &[]).await
    }

    /// Calls the UI/API listener with extra headers (a `host` one
    /// replaces the listener's address).
    pub async fn api_with(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.ui()));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        self.call(req).await
    }

    /// Calls the UI/API listener with a JSON body.
    pub async fn api_json(&self, method: &str, path: &str, json: &str) -> Reply {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.ui()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json.to_owned())))
            .expect("request");
        self.call(req).await
    }

    async fn call(&self, req: http::Request<Full<Bytes>>) -> Reply {
        within("request", async {
            let resp = self.client.request(req).await.expect("send");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
        .await
    }

    /// Posts Alice's Create(Note) number `n` to Bob's inbox, signed
    /// (draft-cavage, rsa-sha256) with `key_pem` under Alice's key id, and
    /// returns what the store recorded.
    pub async fn post_signed_create(&mut self, key_pem: &str, n: u32) -> Arc<Entry> {
        let key = key(key_pem);
        let body = create_note(n);
        let headers = inbox_cavage(&key, &body).headers();
        self.send("POST", M2, INBOX, &headers, body).await;
        self.next_record().await
    }

    /// The id of the next exchange the store records (it may be evicted
    /// already).
    pub async fn next_record_id(&mut self) -> u64 {
        within("a recorded exchange", async {
            loop {
                if let StoreEvent::Added(id) = self.events.recv().await.expect("store events") {
                    return id;
                }
            }
        })
        .await
    }

    /// The next exchange the store records.
    pub async fn next_record(&mut self) -> Arc<Entry> {
        within("a recorded exchange", async {
            loop {
                match self.events.recv().await.expect("store events") {
                    StoreEvent::Added(id) => {
                        return self.inspector.store().get(id).expect("entry present");
                    }
                    StoreEvent::Cleared | StoreEvent::FaultChange(_) => {}
                }
            }
        })
        .await
    }
}

pub fn sha256_b64(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

pub fn http_date(secs_ago: i64) -> String {
    let ts = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs_ago);
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&ts)
        .expect("date")
}

fn rsa_sign(key: &RsaPrivateKey, data: &str) -> String {
    let sig = key
        .sign(
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(data.as_bytes()),
        )
        .expect("sign");
    STANDARD.encode(sig)
}

/// A Create(Note) of about 1.3 KB from alice to bob.
pub fn create_note(n: u32) -> Vec<u8> {
    let content = "Hello from the lab! ".repeat(30);
    serde_json::json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{ALICE}/statuses/{n}/activity"),
        "type": "Create",
        "actor": ALICE,
        "published": "2026-01-01T00:00:00Z",
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        "cc": ["https://mastodon2.fediverse.local/users/bob"],
        "object": {
            "id": format!("{ALICE}/statuses/{n}"),
            "type": "Note",
            "attributedTo": ALICE,
            "content": format!("<p>{content}</p>"),
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
        }
    })
    .to_string()
    .into_bytes()
}

/// draft-cavage headers the way Mastodon signs an inbox POST:
/// `(request-target) host date digest content-type`.
/// A draft-cavage signature of `body` posted to [`INBOX`] on [`M2`] under
/// Alice's key id, made now with `key`.
pub fn inbox_cavage<'a>(key: &'a RsaPrivateKey, body: &'a [u8]) -> Cavage<'a> {
    Cavage {
        key,
        key_id: ALICE_KEY_ID,
        algorithm: "rsa-sha256",
        host: M2,
        path: INBOX,
        date: http_date(0),
        signed_body: body,
    }
}

pub struct Cavage<'a> {
    pub key: &'a RsaPrivateKey,
    pub key_id: &'a str,
    pub algorithm: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub date: String,
    /// The body the signature covers (the Digest is computed over it).
    pub signed_body: &'a [u8],
}

impl Cavage<'_> {
    pub fn headers(&self) -> Vec<(String, String)> {
        let digest = format!("SHA-256={}", sha256_b64(self.signed_body));
        let ct = "application/activity+json";
        let signing = format!(
            "(request-target): post {}\nhost: {}\ndate: {}\ndigest: {}\ncontent-type: {}",
            self.path, self.host, self.date, digest, ct
        );
        let sig = rsa_sign(self.key, &signing);
        vec![
            ("date".into(), self.date.clone()),
            ("digest".into(), digest),
            ("content-type".into(), ct.into()),
            (
                "signature".into(),
                format!(
                    "keyId=\"{}\",algorithm=\"{}\",headers=\"(request-target) host date digest content-type\",signature=\"{sig}\"",
                    self.key_id, self.algorithm
                ),
            ),
        ]
    }
}

/// RFC 9421 headers over `@method @target-uri content-digest content-type`
/// with `rsa-v1_5-sha256`, built here independently of the inspector.
pub fn rfc9421_headers(
    key: &RsaPrivateKey,
    key_id: &str,
    host: &str,
    path: &str,
    signed_body: &[u8],
    created: i64,
) -> Vec<(String, String)> {
    let cd = format!("sha-256=:{}:", sha256_b64(signed_body));
    let ct = "application/activity+json";
    let params = format!(
        "(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\");created={created};keyid=\"{key_id}\";alg=\"rsa-v1_5-sha256\""
    );
    let base = format!(
        "\"@method\": POST\n\"@target-uri\": http://{host}{path}\n\"content-digest\": {cd}\n\"content-type\": {ct}\n\"@signature-params\": {params}"
    );
    let sig = rsa_sign(key, &base);
    vec![
        ("content-digest".into(), cd),
        ("content-type".into(), ct.into()),
        ("signature-input".into(), format!("sig1={params}")),
        ("signature".into(), format!("sig1=:{sig}:")),
    ]
}

pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The WebSocket message helper: connect through the proxy with `Host: WS`.
pub async fn ws_echo(proxy: SocketAddr, text: &str) -> String {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    within("websocket echo", async {
        let stream = tokio::net::TcpStream::connect(proxy)
            .await
            .expect("connect");
        let req = format!("ws://{WS}/api/v1/streaming")
            .into_client_request()
            .expect("ws request");
        let (mut ws, resp) = tokio_tungstenite::client_async(req, stream)
            .await
            .expect("ws handshake through the proxy");
        assert_eq!(resp.status(), 101);
        ws.send(Message::text(text)).await.expect("send");
        let reply = loop {
            match ws.next().await.expect("message").expect("ws") {
                Message::Text(t) => break t.to_string(),
                _ => continue,
            }
        };
        ws.close(None).await.expect("close");
        while let Some(Ok(_)) = ws.next().await {}
        reply
    })
    .await
}
