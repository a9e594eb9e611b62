//! A receiving server that checks what it gets the way a fediverse server
//! does: the Digest against the body and the draft-cavage signature against
//! Alice's key. It answers 202, or 401 with the reason, and keeps every
//! request it received for the test to compare.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

use super::{ALICE_PUB, sha256_b64};

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// 202, or 401 for a bad digest or signature.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub type Log = Arc<Mutex<Vec<Received>>>;

/// Starts the receiver; answers its address and its log.
pub async fn start() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let app = Router::new()
        .route("/users/{name}/inbox", post(inbox))
        .with_state(Arc::clone(&log));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, log)
}

pub fn received(log: &Log) -> Vec<Received> {
    log.lock().expect("log").clone()
}

async fn inbox(State(log): State<Log>, req: Request) -> (StatusCode, String) {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
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
    let verdict = check(parts.uri.path(), &headers, &body);
    let status = match &verdict {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::UNAUTHORIZED,
    };
    log.lock().expect("log").push(Received {
        headers,
        body,
        status: status.as_u16(),
    });
    (status, verdict.err().unwrap_or_default())
}

fn check(path: &str, headers: &[(String, String)], body: &[u8]) -> Result<(), String> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("no {n}"))
    };
    let digest = get("digest")?;
    if digest != format!("SHA-256={}", sha256_b64(body)) {
        return Err("digest mismatch".into());
    }
    let signature = get("signature")?;
    let sig = signature
        .split("signature=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no signature value")?;
    let sig = STANDARD.decode(sig).map_err(|_| "signature not base64")?;
    let signing = format!(
        "(request-target): post {path}\nhost: {}\ndate: {}\ndigest: {digest}\ncontent-type: {}",
        get("host")?,
        get("date")?,
        get("content-type")?
    );
    let key = RsaPublicKey::from_public_key_pem(ALICE_PUB).map_err(|e| e.to_string())?;
    key.verify(
        rsa::Pkcs1v15Sign::new::<Sha256>(),
        &Sha256::digest(signing.as_bytes()),
        &sig,
    )
    .map_err(|_| "bad signature".to_owned())
}
