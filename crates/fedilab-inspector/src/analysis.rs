//! The ActivityPub view of a recorded exchange, computed off the hot path
//! (on read, cached in an opaque [`Cache`] the store keeps with each
//! record): classification, activity and
//! object types (`Create(Note)`, `Undo(Like)`), actor and object ids, the
//! sending instance, whether it is server-to-server traffic, and the HTTP
//! signature check with its verdict.
//!
//! [`analyze`] is pure; [`Analyzer::verification`] finds keys: learned by
//! watching actor documents cross the proxy (`watched`), else fetched
//! through the upstream. Callers hand in a record and its cache; the
//! store is read only to learn keys.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::SignatureConfig;
use crate::decode::{MAX_DECODED_BYTES, decode};
use crate::exchange::{Body, Exchange, Headers, header};
use crate::keys::{ActorKey, KeyFetcher};
use crate::signature::proof::BodyProof;
use crate::signature::{self, Problem, ProblemCode, PublicKey, Severity, SignatureInfo};
use crate::watched::KeyWatch;

/// What kind of federation request an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A POST of an activity to an inbox.
    InboxPost,
    /// A GET of an actor document.
    ActorFetch,
    /// A GET of another ActivityPub object.
    ObjectFetch,
    /// `/.well-known/webfinger`.
    Webfinger,
    /// `/.well-known/nodeinfo` and the NodeInfo document.
    Nodeinfo,
    /// Anything else (web UI, client API, media, ...).
    Other,
}

impl Kind {
    /// The name the API uses (`inbox_post`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InboxPost => "inbox_post",
            Kind::ActorFetch => "actor_fetch",
            Kind::ObjectFetch => "object_fetch",
            Kind::Webfinger => "webfinger",
            Kind::Nodeinfo => "nodeinfo",
            Kind::Other => "other",
        }
    }
}

/// The signature verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No signature.
    Unsigned,
    /// Verified with the actor's key, digest and date fine.
    Valid,
    /// Something a receiver would reject: see the problems.
    Invalid,
    /// Could not be decided (key not fetchable, unsupported algorithm).
    Unverifiable,
}

impl Verdict {
    /// The name the API uses (`valid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unsigned => "unsigned",
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unverifiable => "unverifiable",
        }
    }
}

/// Where the key a verdict used came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// Learned from an actor document that crossed the proxy.
    Watched,
    /// Fetched through the upstream for this verdict.
    Fetched,
    /// Fetched earlier (for another verdict) and still cached.
    Cache,
}

/// The outcome of checking one body proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofStatus {
    /// Verified with the key.
    Valid,
    /// Does not verify with the key.
    Invalid,
    /// The key could not be found or does not fit.
    Unverifiable,
    /// Present, not checked (LD signatures, other suites, malformed).
    NotVerified,
}

/// One body proof (FEP-8b32 or LD signature) and its check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofCheck {
    /// `eddsa-jcs-2022`, `RsaSignature2017`, ...
    pub suite: String,
    /// `verificationMethod` / `creator`.
    pub key_id: Option<String>,
    /// The outcome.
    pub status: ProofStatus,
    /// Where the key came from, when one was used.
    pub key_source: Option<KeySource>,
    /// Why, in words.
    pub message: String,
}

/// The pure part of the analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The classification.
    pub kind: Kind,
    /// Server-to-server traffic: ActivityPub, JRD or NodeInfo content
    /// types, WebFinger/NodeInfo paths, or a signed request.
    pub federation: bool,
    /// `Create(Note)`, `Follow`, `Undo(Like)`, or the fetched object's type.
    pub activity: Option<String>,
    /// What an implementation's extension adds to the type (Misskey's
    /// `reaction 👍`, `quote of URL`), or that a fetch was refused for
    /// lack of a signature.
    #[serde(default)]
    pub detail: Option<String>,
    /// The outer `type`.
    pub activity_type: Option<String>,
    /// The inner object's `type`, when it is embedded.
    pub object_type: Option<String>,
    /// `actor` (or `attributedTo`, or the id of a fetched actor).
    pub actor: Option<String>,
    /// The object's id.
    pub object: Option<String>,
    /// The activity's own id.
    pub id: Option<String>,
    /// The sending instance (from the keyId, the actor, or the User-Agent).
    pub from: Option<String>,
    /// The signature, parsed and checked without the key.
    pub signature: Option<SignatureInfo>,
    /// Proofs in the posted activity: FEP-8b32 `proof`s and LD
    /// `signature`s.
    #[serde(default)]
    pub proofs: Vec<BodyProof>,
}

/// The result of checking the signature with the actor's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The verdict.
    pub verdict: Verdict,
    /// Every problem (parse, digest, date, key, signature), most severe
    /// first.
    pub problems: Vec<Problem>,
    /// The algorithm that verified.
    pub algorithm: Option<String>,
    /// The key's owner per the actor document.
    pub key_owner: Option<String>,
    /// Where the key came from (`watched`, `fetched`, `cache`); `null`
    /// when no key was used.
    #[serde(default)]
    pub key_source: Option<KeySource>,
    /// The verdict in words: `valid; verified with rsa-sha256 (…)`,
    /// `signature valid, body changed after signing`, `invalid: …`.
    #[serde(default)]
    pub summary: String,
    /// The verdict against the receiving server's date window (Mastodon:
    /// 12 h) and a stricter 1 h one, when the signature carries a time.
    #[serde(default)]
    pub policy: Option<String>,
    /// The body proofs, checked.
    #[serde(default)]
    pub proofs: Vec<ProofCheck>,
}

fn content_type(headers: &Headers) -> String {
    header(headers, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// ActivityPub media types.
pub(crate) fn is_activity_type(ct: &str) -> bool {
    ct.contains("application/activity+json") || ct.contains("application/ld+json")
}

fn is_federation_type(ct: &str) -> bool {
    is_activity_type(ct)
        || ct.contains("application/jrd+json")
        || ct.contains("application/xrd+xml")
        || ct.contains("nodeinfo")
}

const ACTOR_TYPES: [&str; 5] = ["Person", "Service", "Application", "Group", "Organization"];

fn type_of(v: &Value) -> Option<String> {
    match v.get("type")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(|t| t.as_str().map(str::to_owned)),
        _ => None,
    }
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(|i| i.as_str()).map(str::to_owned),
        Value::Array(a) => a.first().and_then(id_of),
        _ => None,
    }
}

/// Parses a body as a JSON object, after content-decoding.
pub(crate) fn json_body(body: &Body, headers: &Headers) -> Option<Value> {
    if body.captured.is_empty() || body.truncated {
        return None;
    }
    let d = decode(
        &body.captured,
        header(headers, "content-encoding"),
        MAX_DECODED_BYTES,
    );
    let bytes: &[u8] = &d.bytes;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Classifies an exchange and reads its activity, without keys.
pub fn analyze(ex: &Exchange, cfg: &SignatureConfig) -> Analysis {
    let req = &ex.request;
    let path = req.uri.split('?').next().unwrap_or("");
    let req_ct = content_type(&req.headers);
    let resp_ct = ex
        .response
        .as_ref()
        .map(|r| content_type(&r.headers))
        .unwrap_or_default();
    let accept = header(&req.headers, "accept")
        .unwrap_or("")
        .to_ascii_lowercase();
    let signature = signature::inspect(ex, cfg);
    let is_get = req.method == "GET" || req.method == "HEAD";

    let kind = if path.starts_with("/.well-known/webfinger") {
        Kind::Webfinger
    } else if path.starts_with("/.well-known/nodeinfo")
        || path.starts_with("/nodeinfo/")
        || resp_ct.contains("nodeinfo")
    {
        Kind::Nodeinfo
    } else if req.method == "POST" && (path.ends_with("/inbox") || is_activity_type(&req_ct)) {
        Kind::InboxPost
    } else if is_get && (is_activity_type(&accept) || is_activity_type(&resp_ct)) {
        Kind::ObjectFetch
    } else {
        Kind::Other
    };
    let federation = kind != Kind::Other
        || signature.is_some()
        || is_federation_type(&req_ct)
        || is_federation_type(&resp_ct)
        || path.starts_with("/.well-known/host-meta");

    let mut a = Analysis {
        kind,
        federation,
        activity: None,
        detail: None,
        activity_type: None,
        object_type: None,
        actor: None,
        object: None,
        id: None,
        from: None,
        signature,
        proofs: Vec::new(),
    };

    let doc = match kind {
        Kind::InboxPost => json_body(&req.body, &req.headers),
        Kind::ObjectFetch => ex
            .response
            .as_ref()
            .filter(|r| (200..300).contains(&r.status))
            .and_then(|r| json_body(&r.body, &r.headers)),
        _ => None,
    };
    if let Some(doc) = doc {
        a.activity_type = type_of(&doc);
        a.id = doc.get("id").and_then(id_of);
        if kind == Kind::InboxPost {
            a.detail = crate::dialect::of_activity(&doc);
            a.proofs = signature::proof::find(&doc);
            a.actor = doc.get("actor").and_then(id_of);
            if let Some(obj) = doc.get("object") {
                a.object = id_of(obj);
                if obj.is_object() {
                    a.object_type = type_of(obj);
                }
            }
        } else {
            let t = a.activity_type.as_deref().unwrap_or("");
            if ACTOR_TYPES.contains(&t) {
                a.kind = Kind::ActorFetch;
                a.actor = a.id.clone();
            } else {
                a.actor = doc
                    .get("attributedTo")
                    .or_else(|| doc.get("actor"))
                    .and_then(id_of);
            }
            a.object = a.id.clone();
        }
        a.activity = a.activity_type.as_ref().map(|t| match &a.object_type {
            Some(o) => format!("{t}({o})"),
            None => t.clone(),
        });
    }

    if is_get && kind == Kind::ObjectFetch && a.activity.is_none() {
        a.detail = ex
            .response
            .as_ref()
            .and_then(|r| crate::dialect::of_refused_fetch(r.status, a.signature.is_some()));
    }
    a.from = a
        .signature
        .as_ref()
        .and_then(|s| s.key_id.as_deref())
        .and_then(host_of)
        .or_else(|| {
            (kind == Kind::InboxPost)
                .then(|| a.actor.as_deref().and_then(host_of))
                .flatten()
        })
        .or_else(|| {
            let ua = header(&req.headers, "user-agent")?;
            let start = ua.find("+http")? + 1;
            host_of(ua.get(start..)?.split([';', ')', ' ']).next()?)
        });
    a
}

/// Whether a key-side problem may go away on retry (so the entry's
/// verification is not cached).
fn transient(p: &Problem) -> bool {
    p.code == ProblemCode::KeyFetchFailed
}

/// The cached analysis of one record: empty until an [`Analyzer`] fills
/// it. Opaque; the store keeps one per entry.
#[derive(Debug, Default)]
pub struct Cache {
    analysis: OnceLock<Arc<Analysis>>,
    verification: tokio::sync::OnceCell<Arc<Verification>>,
}

/// Runs analyses and signature verification for recorded exchanges,
/// caching results in each record's [`Cache`].
#[derive(Debug)]
pub struct Analyzer {
    cfg: SignatureConfig,
    keys: KeyFetcher,
    watch: KeyWatch,
}

impl Analyzer {
    pub(crate) fn new(cfg: SignatureConfig, keys: KeyFetcher, watch: KeyWatch) -> Self {
        Self { cfg, keys, watch }
    }

    /// Learns the keys of every exchange recorded since the last call that
    /// may carry some (the background tick of `Inspector::start` calls
    /// this; so does every verdict).
    pub fn learn_keys(&self) {
        self.watch.catch_up();
    }

    /// Exchanges that may carry keys the watcher never read (it fell more
    /// than the store's queue behind).
    pub fn keys_missed(&self) -> u64 {
        self.watch.missed()
    }

    /// The pure analysis of a record (computed once per cache).
    pub fn analysis(&self, exchange: &Exchange, cache: &Cache) -> Arc<Analysis> {
        Arc::clone(
            cache
                .analysis
                .get_or_init(|| Arc::new(analyze(exchange, &self.cfg))),
        )
    }

    /// The signature verdict of a record, fetching the actor's key through
    /// the upstream if needed. Cached unless the key fetch failed (that is
    /// retried on the next read).
    ///
    /// # Caveats
    /// Bounded by the key-fetch timeout.
    pub async fn verification(&self, exchange: &Exchange, cache: &Cache) -> Arc<Verification> {
        if let Some(v) = cache.verification.get() {
            return Arc::clone(v);
        }
        let analysis = self.analysis(exchange, cache);
        let result = cache
            .verification
            .get_or_try_init(|| async {
                self.watch.catch_up();
                let v = self.verify(exchange, &analysis).await;
                if v.problems.iter().any(transient) {
                    Err(Arc::new(v))
                } else {
                    Ok(Arc::new(v))
                }
            })
            .await;
        match result {
            Ok(v) => Arc::clone(v),
            Err(v) => v,
        }
    }

    /// The key for `key_id` on `ex`: watched versions first (see
    /// `watched`), then the fetcher; the first that verifies wins. When
    /// none does, the watched key in effect (or the fetched one) and its
    /// problem.
    async fn checked_key(
        &self,
        ex: &Exchange,
        key_id: &str,
        check: impl Fn(&PublicKey) -> Result<&'static str, Problem>,
    ) -> Result<(Arc<ActorKey>, KeySource, Result<&'static str, Problem>), Problem> {
        let end = ex
            .started_us
            .saturating_add(i64::try_from(ex.total_us).unwrap_or(0));
        let mut first_failure = None;
        for key in self.watch.keys.candidates(key_id, ex.started_us, end) {
            match check(&key.key) {
                Ok(alg) => return Ok((key, KeySource::Watched, Ok(alg))),
                Err(p) => {
                    if first_failure.is_none() {
                        first_failure = Some((key, KeySource::Watched, Err(p)));
                    }
                }
            }
        }
        // A fetched key may be newer than the watched ones.
        match self.keys.key(key_id).await {
            Ok((key, source)) => {
                let r = check(&key.key);
                match first_failure {
                    Some(f) if r.is_err() => Ok(f),
                    _ => Ok((key, source, r)),
                }
            }
            Err(p) => first_failure.ok_or(p),
        }
    }

    async fn verify(&self, ex: &Exchange, a: &Analysis) -> Verification {
        let proofs = self.check_proofs(ex, a).await;
        let Some(sig) = &a.signature else {
            return Verification {
                verdict: Verdict::Unsigned,
                problems: Vec::new(),
                algorithm: None,
                key_owner: None,
                key_source: None,
                summary: "unsigned".to_owned(),
                policy: None,
                proofs,
            };
        };
        let mut problems = sig.problems.clone();
        let mut algorithm = None;
        let mut key_owner = None;
        let mut key_source = None;
        let mut crypto_ok = false;
        if let (Some(pending), Some(key_id)) = (&sig.pending, &sig.key_id) {
            let check = |k: &PublicKey| signature::verify_explained(k, pending);
            match self.checked_key(ex, key_id, check).await {
                Ok((key, source, result)) => {
                    key_owner.clone_from(&key.owner);
                    key_source = Some(source);
                    match result {
                        Ok(alg) => {
                            crypto_ok = true;
                            algorithm = Some(alg.to_owned());
                        }
                        Err(p) => problems.push(p),
                    }
                    if a.kind == Kind::InboxPost
                        && let (Some(owner), Some(actor)) = (&key.owner, &a.actor)
                        && owner != actor
                    {
                        problems.push(Problem::new(
                            ProblemCode::ActorMismatch,
                            format!("signed by {owner}, but the activity's actor is {actor}"),
                        ));
                    }
                }
                Err(p) => problems.push(p),
            }
        }
        problems.sort_by_key(|p| match p.severity {
            Severity::Error => 0,
            Severity::Unverifiable => 1,
            Severity::Warning => 2,
        });
        let verdict = if problems.iter().any(|p| p.severity == Severity::Error) {
            Verdict::Invalid
        } else if !crypto_ok
            || problems
                .iter()
                .any(|p| p.severity == Severity::Unverifiable)
        {
            Verdict::Unverifiable
        } else {
            Verdict::Valid
        };
        let summary = summarize(verdict, crypto_ok, algorithm.as_deref(), &problems);
        let policy = sig
            .skew_secs
            .map(|skew| signature::ReceiverPolicy::for_host(&ex.host).judge(verdict, skew));
        Verification {
            verdict,
            problems,
            algorithm,
            key_owner,
            key_source,
            summary,
            policy,
            proofs,
        }
    }

    async fn check_proofs(&self, ex: &Exchange, a: &Analysis) -> Vec<ProofCheck> {
        let mut out = Vec::with_capacity(a.proofs.len());
        for p in &a.proofs {
            let mut check = ProofCheck {
                suite: p.suite.clone(),
                key_id: p.key_id.clone(),
                status: ProofStatus::NotVerified,
                key_source: None,
                message: p.unchecked.clone().unwrap_or_default(),
            };
            if let (Some(pending), Some(key_id)) = (&p.pending, &p.key_id) {
                let verify = |k: &PublicKey| {
                    match k {
                    PublicKey::Ed25519(k) => signature::verify_ed25519(
                        k,
                        &pending.hash_data,
                        &pending.signature,
                    )
                    .then_some("ed25519")
                    .ok_or_else(|| {
                        Problem::new(
                            ProblemCode::BadSignature,
                            "the proof does not verify with the key: the document or the proof options changed after signing, or the wrong key",
                        )
                    }),
                    PublicKey::Rsa(_) => Err(Problem::new(
                        ProblemCode::KeyInvalid,
                        "eddsa-jcs-2022 needs an Ed25519 (Multikey) key, but the key is RSA",
                    )),
                }
                };
                match self.checked_key(ex, key_id, verify).await {
                    Ok((_, source, Ok(_))) => {
                        check.status = ProofStatus::Valid;
                        check.key_source = Some(source);
                        check.message = "verified with the Ed25519 key".to_owned();
                    }
                    Ok((_, source, Err(problem))) => {
                        check.status = if problem.code == ProblemCode::BadSignature {
                            ProofStatus::Invalid
                        } else {
                            ProofStatus::Unverifiable
                        };
                        check.key_source = Some(source);
                        check.message = problem.message;
                    }
                    Err(problem) => {
                        check.status = ProofStatus::Unverifiable;
                        check.message = problem.message;
                    }
                }
            } else if p.pending.is_some() {
                check.status = ProofStatus::Unverifiable;
                check.message = "the proof names no verificationMethod".to_owned();
            }
            out.push(check);
        }
        out
    }
}

/// The verdict in words. A digest mismatch under a signature that verifies
/// is "signature valid, body changed after signing", never "invalid,
/// verified with …".
fn summarize(
    verdict: Verdict,
    crypto_ok: bool,
    algorithm: Option<&str>,
    problems: &[Problem],
) -> String {
    let first = |s: Severity| problems.iter().find(|p| p.severity == s);
    match verdict {
        Verdict::Unsigned => "unsigned".to_owned(),
        Verdict::Valid => format!("valid; verified with {}", algorithm.unwrap_or("the key")),
        Verdict::Invalid if crypto_ok => {
            if problems
                .iter()
                .any(|p| p.code == ProblemCode::DigestMismatch)
            {
                "signature valid, body changed after signing".to_owned()
            } else {
                let why = first(Severity::Error).map_or("", |p| p.message.as_str());
                format!("signature valid, but a receiver rejects the request: {why}")
            }
        }
        Verdict::Invalid => format!(
            "invalid: {}",
            first(Severity::Error).map_or("", |p| p.message.as_str())
        ),
        Verdict::Unverifiable => format!(
            "unverifiable: {}",
            first(Severity::Unverifiable).map_or("the key was not found", |p| p.message.as_str())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::ResponseRecord;

    fn ex(
        method: &str,
        uri: &str,
        req_headers: &[(&str, &str)],
        req_body: &str,
        resp: Option<(&str, &str)>,
    ) -> Exchange {
        Exchange {
            id: 1,
            response: resp.map(|(ct, b)| ResponseRecord {
                status: 200,
                version: "HTTP/1.1".into(),
                headers: vec![("content-type", ct)].into(),
                body: Body::test_whole(b.as_bytes()),
            }),
            ..Exchange::test_request("b.test", method, uri, req_headers, req_body.as_bytes())
        }
    }

    #[test]
    fn a_digest_mismatch_under_a_good_signature_is_worded_as_such() {
        let digest = Problem::new(ProblemCode::DigestMismatch, "changed");
        assert_eq!(
            summarize(
                Verdict::Invalid,
                true,
                Some("rsa-sha256"),
                std::slice::from_ref(&digest)
            ),
            "signature valid, body changed after signing"
        );
        let bad = Problem::new(ProblemCode::BadSignature, "no");
        assert_eq!(
            summarize(Verdict::Invalid, false, None, &[digest, bad]),
            "invalid: changed"
        );
        assert_eq!(
            summarize(Verdict::Valid, true, Some("ed25519"), &[]),
            "valid; verified with ed25519"
        );
    }

    #[test]
    fn inbox_posts_name_their_activity() {
        let cfg = SignatureConfig::default();
        let e = ex(
            "POST",
            "/users/bob/inbox",
            &[("content-type", "application/activity+json")],
            r#"{"type":"Undo","actor":"https://a.test/users/alice","object":{"type":"Like","id":"https://a.test/l/1"}}"#,
            None,
        );
        let a = analyze(&e, &cfg);
        assert_eq!(a.kind, Kind::InboxPost);
        assert!(a.federation);
        assert_eq!(a.activity.as_deref(), Some("Undo(Like)"));
        assert_eq!(a.actor.as_deref(), Some("https://a.test/users/alice"));
        assert_eq!(a.object.as_deref(), Some("https://a.test/l/1"));
        assert_eq!(a.from.as_deref(), Some("a.test"));

        let e = ex(
            "POST",
            "/inbox",
            &[],
            r#"{"type":"Follow","actor":{"id":"https://a.test/u"},"object":"https://b.test/u"}"#,
            None,
        );
        let a = analyze(&e, &cfg);
        assert_eq!(a.activity.as_deref(), Some("Follow"));
        assert_eq!(a.actor.as_deref(), Some("https://a.test/u"));
    }

    #[test]
    fn fetches_and_well_knowns_are_classified() {
        let cfg = SignatureConfig::default();
        let actor = ex(
            "GET",
            "/users/bob",
            &[
                ("accept", "application/activity+json"),
                ("user-agent", "http.rb/5 (Mastodon/4.5; +https://a.test/)"),
            ],
            "",
            Some((
                "application/activity+json; charset=utf-8",
                r#"{"type":"Person","id":"https://b.test/users/bob"}"#,
            )),
        );
        let a = analyze(&actor, &cfg);
        assert_eq!(a.kind, Kind::ActorFetch);
        assert_eq!(a.activity.as_deref(), Some("Person"));
        assert_eq!(a.from.as_deref(), Some("a.test"));
        let note = ex(
            "GET",
            "/users/bob/statuses/1",
            &[("accept", "application/activity+json")],
            "",
            Some((
                "application/activity+json",
                r#"{"type":"Note","id":"https://b.test/n/1","attributedTo":"https://b.test/users/bob"}"#,
            )),
        );
        assert_eq!(analyze(&note, &cfg).kind, Kind::ObjectFetch);
        let wf = ex(
            "GET",
            "/.well-known/webfinger?resource=acct:bob@b.test",
            &[],
            "",
            None,
        );
        assert_eq!(analyze(&wf, &cfg).kind, Kind::Webfinger);
        let ni = ex("GET", "/nodeinfo/2.0", &[], "", None);
        assert_eq!(analyze(&ni, &cfg).kind, Kind::Nodeinfo);
        let web = ex("GET", "/about", &[], "", Some(("text/html", "<html>")));
        let a = analyze(&web, &cfg);
        assert_eq!(a.kind, Kind::Other);
        assert!(!a.federation);
    }
}
