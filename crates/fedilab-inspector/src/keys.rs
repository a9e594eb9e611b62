//! Actor public keys for signature checks: fetched through the routed
//! upstream (never the outside world) with `Accept: application/activity+json`,
//! parsed from `publicKeyPem`, and cached by keyId (successes for the
//! configured TTL, failures for at most 30 s). Concurrent lookups of one
//! keyId share a single fetch. The cache is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use tokio::sync::OnceCell;

use crate::config::SignatureConfig;
use crate::routes::SharedRoutes;
use crate::signature::{Problem, ProblemCode};

const MAX_KEY_DOCUMENT: usize = 1024 * 1024;
const MAX_CACHED_KEYS: usize = 4096;
const FAILURE_TTL: Duration = Duration::from_secs(30);

/// The `Accept` value for key fetches.
pub const ACCEPT_ACTIVITY: &str = "application/activity+json, application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"";

/// A public key from an actor document.
#[derive(Debug)]
pub struct ActorKey {
    /// The key.
    pub key: RsaPublicKey,
    /// `publicKey.owner` (or the document's id).
    pub owner: Option<String>,
}

type Slot = Arc<OnceCell<(Instant, Result<Arc<ActorKey>, Problem>)>>;

/// Fetches and caches actor keys through the upstreams.
#[derive(Debug)]
pub(crate) struct KeyFetcher {
    client: Client<HttpConnector, Empty<Bytes>>,
    routes: SharedRoutes,
    cache: Mutex<HashMap<String, Slot>>,
    cfg: SignatureConfig,
}

impl KeyFetcher {
    pub(crate) fn new(routes: SharedRoutes, cfg: SignatureConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.key_fetch_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            routes,
            cache: Mutex::new(HashMap::new()),
            cfg,
        }
    }

    /// The key for `key_id`, from the cache or fetched now.
    ///
    /// # Errors
    /// A problem with code `key_host_unknown`, `key_fetch_failed` or
    /// `key_invalid`.
    ///
    /// # Caveats
    /// A fetch is bounded by the configured key-fetch timeout.
    pub(crate) async fn key(&self, key_id: &str) -> Result<Arc<ActorKey>, Problem> {
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let fresh = |s: &Slot| match s.get() {
                None => true,
                Some((at, Ok(_))) => now.duration_since(*at) < self.cfg.key_ttl,
                Some((at, Err(_))) => now.duration_since(*at) < FAILURE_TTL.min(self.cfg.key_ttl),
            };
            if cache.len() >= MAX_CACHED_KEYS {
                cache.retain(|_, s| fresh(s));
                if cache.len() >= MAX_CACHED_KEYS {
                    cache.clear();
                }
            }
            match cache.get(key_id) {
                Some(s) if fresh(s) => Arc::clone(s),
                _ => {
                    let s: Slot = Arc::new(OnceCell::new());
                    cache.insert(key_id.to_owned(), Arc::clone(&s));
                    s
                }
            }
        };
        let (_, result) = slot
            .get_or_init(|| async { (Instant::now(), self.fetch(key_id).await) })
            .await;
        result.clone()
    }

    async fn fetch(&self, key_id: &str) -> Result<Arc<ActorKey>, Problem> {
        let fail = |m: String| Problem::new(ProblemCode::KeyFetchFailed, m);
        let url = key_id.split('#').next().unwrap_or(key_id);
        let uri: Uri = url
            .parse()
            .map_err(|_| fail(format!("keyId {key_id:?} is not a URL")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| fail(format!("keyId {key_id:?} has no host")))?
            .clone();
        let host = authority.host().to_ascii_lowercase();
        let target = self
            .routes
            .load()
            .lookup(&host, uri.path())
            .map(|t| t.authority.clone())
            .ok_or_else(|| {
            Problem::new(
                ProblemCode::KeyHostUnknown,
                format!("the key's host {host} is not routed by the inspector, so its key was not fetched"),
            )
        })?;
        let pq = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let upstream_uri = format!("http://{target}{pq}");
        let req = Request::get(&upstream_uri)
            .header(header::HOST, authority.as_str())
            .header(header::ACCEPT, ACCEPT_ACTIVITY)
            .header("x-forwarded-proto", uri.scheme_str().unwrap_or("https"))
            .header(header::USER_AGENT, "fedilab-inspector (key fetch)")
            .body(Empty::new())
            .map_err(|e| fail(format!("cannot build the key request: {e}")))?;
        let fetch = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| fail(format!("GET {url} through {target} failed: {e}")))?;
            let status = resp.status();
            let encoding = resp
                .headers()
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(resp.into_body(), MAX_KEY_DOCUMENT)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the key document from {url} failed: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(fail(format!(
                    "GET {url} answered {status} (servers with authorized fetch need a signed fetch)"
                )));
            }
            let decoded = crate::decode::decode(&body, encoding.as_deref(), MAX_KEY_DOCUMENT);
            parse_key_document(&decoded.bytes, key_id).map(Arc::new)
        };
        match tokio::time::timeout(self.cfg.key_fetch_timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(fail(format!(
                "GET {url} took longer than {:?}",
                self.cfg.key_fetch_timeout
            ))),
        }
    }
}

/// Finds `key_id`'s PEM in an actor (or key) document and parses it.
///
/// # Errors
/// A `key_invalid` problem.
pub(crate) fn parse_key_document(doc: &[u8], key_id: &str) -> Result<ActorKey, Problem> {
    let invalid = |m: String| Problem::new(ProblemCode::KeyInvalid, m);
    let doc: serde_json::Value = serde_json::from_slice(doc)
        .map_err(|e| invalid(format!("the key document is not JSON: {e}")))?;
    let str_of =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let (pem, owner) = if let Some(pem) = str_of(&doc, "publicKeyPem") {
        (pem, str_of(&doc, "owner"))
    } else {
        let keys: Vec<&serde_json::Value> = match doc.get("publicKey") {
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            Some(v @ serde_json::Value::Object(_)) => vec![v],
            _ => Vec::new(),
        };
        let key = keys
            .iter()
            .find(|k| k.get("id").and_then(|i| i.as_str()) == Some(key_id))
            .or_else(|| keys.first())
            .ok_or_else(|| invalid("the actor document has no publicKey".into()))?;
        let pem = str_of(key, "publicKeyPem")
            .ok_or_else(|| invalid("publicKey has no publicKeyPem".into()))?;
        (pem, str_of(key, "owner").or_else(|| str_of(&doc, "id")))
    };
    let key = RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| invalid(format!("publicKeyPem is not an RSA public key: {e}")))?;
    Ok(ActorKey { key, owner })
}
