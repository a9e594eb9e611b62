//! Actor public keys for signature checks: fetched through the routed
//! upstream (never the outside world) with `Accept: application/activity+json`,
//! parsed from `publicKeyPem` (RSA or Ed25519) or a Multikey
//! `publicKeyMultibase` (Ed25519, in `assertionMethod`), and cached by
//! keyId (successes for the configured TTL, failures for at most 30 s).
//! Concurrent lookups of one keyId share a single fetch. The cache is
//! bounded. Keys learned by watching live in `watched`, not here.

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

use crate::analysis::KeySource;
use crate::config::SignatureConfig;
use crate::routes::SharedRoutes;
use crate::signature::{Problem, ProblemCode, PublicKey, multibase};

const MAX_KEY_DOCUMENT: usize = 1024 * 1024;
const MAX_CACHED_KEYS: usize = 4096;
const FAILURE_TTL: Duration = Duration::from_secs(30);

/// The `Accept` value for key fetches.
pub const ACCEPT_ACTIVITY: &str = "application/activity+json, application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"";

/// A public key from an actor document.
#[derive(Debug, PartialEq, Eq)]
pub struct ActorKey {
    /// The key.
    pub key: PublicKey,
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

    /// The key for `key_id`, from the cache or fetched now (the source
    /// says which: `Fetched` when this call fetched it, `Cache` when an
    /// earlier or concurrent one did).
    ///
    /// # Errors
    /// A problem with code `key_host_unknown`, `key_fetch_failed` or
    /// `key_invalid`.
    ///
    /// # Caveats
    /// A fetch is bounded by the configured key-fetch timeout.
    pub(crate) async fn key(&self, key_id: &str) -> Result<(Arc<ActorKey>, KeySource), Problem> {
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
        let mut fetched = false;
        let flag = &mut fetched;
        let (_, result) = slot
            .get_or_init(|| async move {
                *flag = true;
                (Instant::now(), self.fetch(key_id).await)
            })
            .await;
        let source = if fetched {
            KeySource::Fetched
        } else {
            KeySource::Cache
        };
        result.clone().map(|k| (k, source))
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

/// One key found in an actor (or key) document.
#[derive(Debug)]
pub(crate) struct DocKey {
    /// The key's own `id`, if it has one.
    pub id: Option<String>,
    /// The key.
    pub key: ActorKey,
}

fn str_of(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_owned)
}

/// Parses one key object: `publicKeyPem` (RSA, or Ed25519 SPKI) or
/// `publicKeyMultibase` (an Ed25519 Multikey). `owner` / `controller`
/// default to `doc_id`.
fn key_object(v: &serde_json::Value, doc_id: Option<&str>) -> Result<DocKey, String> {
    let owner = str_of(v, "owner")
        .or_else(|| str_of(v, "controller"))
        .or_else(|| doc_id.map(str::to_owned));
    let key = if let Some(pem) = str_of(v, "publicKeyPem") {
        parse_pem(&pem)?
    } else if let Some(mb) = str_of(v, "publicKeyMultibase") {
        PublicKey::Ed25519(multibase::ed25519_multikey(&mb)?)
    } else {
        return Err("the key has neither publicKeyPem nor publicKeyMultibase".into());
    };
    Ok(DocKey {
        id: str_of(v, "id"),
        key: ActorKey { key, owner },
    })
}

/// An RSA public key (SPKI or PKCS#1 PEM) or an Ed25519 SPKI PEM.
///
/// # Errors
/// Why the PEM is neither.
pub(crate) fn parse_pem(pem: &str) -> Result<PublicKey, String> {
    let pem = pem.trim();
    if let Ok(k) =
        RsaPublicKey::from_public_key_pem(pem).or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
    {
        return Ok(PublicKey::Rsa(k));
    }
    // Ed25519 SubjectPublicKeyInfo: a fixed 12-byte prefix, then the key.
    const ED25519_SPKI: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
        .map_err(|_| "publicKeyPem is not PEM".to_owned())?;
    match der.strip_prefix(&ED25519_SPKI[..]) {
        Some(key) => <[u8; 32]>::try_from(key)
            .map(PublicKey::Ed25519)
            .map_err(|_| "publicKeyPem holds a malformed Ed25519 key".to_owned()),
        None => Err("publicKeyPem is neither an RSA nor an Ed25519 public key".to_owned()),
    }
}

/// Every key an actor (or key) document carries: the document itself when
/// it is a key, `publicKey` (one or several) and the embedded
/// `assertionMethod` entries (Multikey). Keys that do not parse are
/// skipped.
pub(crate) fn document_keys(doc: &serde_json::Value) -> Vec<DocKey> {
    let doc_id = str_of(doc, "id");
    let mut out = Vec::new();
    if doc.get("publicKeyPem").is_some() || doc.get("publicKeyMultibase").is_some() {
        out.extend(key_object(doc, None).ok());
    }
    for field in ["publicKey", "assertionMethod"] {
        let entries: Vec<&serde_json::Value> = match doc.get(field) {
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            Some(v @ serde_json::Value::Object(_)) => vec![v],
            _ => Vec::new(),
        };
        out.extend(
            entries
                .into_iter()
                .filter_map(|k| key_object(k, doc_id.as_deref()).ok()),
        );
    }
    out
}

/// Finds `key_id`'s key in an actor (or key) document and parses it: the
/// key whose `id` is `key_id`, else the document's first key.
///
/// # Errors
/// A `key_invalid` problem.
pub(crate) fn parse_key_document(doc: &[u8], key_id: &str) -> Result<ActorKey, Problem> {
    let invalid = |m: String| Problem::new(ProblemCode::KeyInvalid, m);
    let doc: serde_json::Value = serde_json::from_slice(doc)
        .map_err(|e| invalid(format!("the key document is not JSON: {e}")))?;
    let doc_id = str_of(&doc, "id");
    if doc.get("publicKeyPem").is_some() || doc.get("publicKeyMultibase").is_some() {
        return key_object(&doc, None).map(|k| k.key).map_err(invalid);
    }
    // Parse errors of the wanted key are reported, not skipped.
    for field in ["publicKey", "assertionMethod"] {
        let entries: Vec<&serde_json::Value> = match doc.get(field) {
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            Some(v @ serde_json::Value::Object(_)) => vec![v],
            _ => Vec::new(),
        };
        if let Some(k) = entries
            .into_iter()
            .find(|k| k.get("id").and_then(|i| i.as_str()) == Some(key_id))
        {
            return key_object(k, doc_id.as_deref())
                .map(|k| k.key)
                .map_err(|e| invalid(format!("key {key_id}: {e}")));
        }
    }
    let first = match doc.get("publicKey") {
        Some(serde_json::Value::Array(a)) => a.first(),
        Some(v @ serde_json::Value::Object(_)) => Some(v),
        _ => None,
    }
    .ok_or_else(|| invalid("the actor document has no publicKey".into()))?;
    key_object(first, doc_id.as_deref())
        .map(|k| k.key)
        .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9421 B.1.4 `test-key-ed25519`, public.
    const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----";

    #[test]
    fn ed25519_pems_and_multikeys_parse() {
        let PublicKey::Ed25519(k) = parse_pem(ED25519_PEM).expect("pem") else {
            panic!("not Ed25519");
        };
        assert_eq!(k[..4], [0x26, 0xb4, 0x0b, 0x8f]);
        assert!(parse_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());

        let doc = serde_json::json!({
            "id": "https://a.test/u",
            "publicKey": [{ "id": "https://a.test/u#k1", "publicKeyPem": ED25519_PEM }],
            "assertionMethod": [
                "https://a.test/u#by-reference",
                {
                    "id": "https://a.test/u#ed",
                    "type": "Multikey",
                    "controller": "https://a.test/u",
                    "publicKeyMultibase": "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
                }
            ]
        });
        let keys = document_keys(&doc);
        let ids: Vec<_> = keys.iter().map(|k| k.id.as_deref()).collect();
        assert_eq!(
            ids,
            [Some("https://a.test/u#k1"), Some("https://a.test/u#ed")]
        );
        assert_eq!(keys[1].key.owner.as_deref(), Some("https://a.test/u"));

        let text = doc.to_string();
        let multikey = parse_key_document(text.as_bytes(), "https://a.test/u#ed").expect("key");
        assert_eq!(multikey.key.kind(), "Ed25519");
        let e = parse_key_document(b"{}", "x").expect_err("no key");
        assert_eq!(e.code, ProblemCode::KeyInvalid);
    }
}
