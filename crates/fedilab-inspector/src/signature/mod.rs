//! HTTP signatures as the fediverse uses them, checked from a recorded
//! request: draft-cavage `Signature` (and `Authorization: Signature`) with
//! `rsa-sha256`, `rsa-sha512` or `hs2019`, and RFC 9421
//! `Signature-Input` / `Signature` with `rsa-v1_5-sha256`,
//! `rsa-pss-sha512` or `ed25519`; and the proofs bodies carry
//! (`proof`: FEP-8b32 `eddsa-jcs-2022`; `signature`: LD signatures).
//!
//! [`inspect`] is pure: it parses the headers, rebuilds the signing string
//! (cavage) or signature base (RFC 9421), checks `Digest` /
//! `Content-Digest` against the captured body and the `Date` / `created`
//! skew against when the request arrived. [`verify_rsa`] checks the
//! signature bytes against a public key ([`verify`] for RSA or Ed25519).
//! Fetching that key is `keys`' job.
//!
//! By role: `cavage` and `rfc9421` parse their headers and rebuild
//! what was signed, `digest` checks the body against `Digest` /
//! `Content-Digest`; `proof` finds and checks body proofs (with `jcs`
//! and `multibase`); this module holds the shared types, the date and
//! target checks, [`verify`] and [`verify_rsa`].

mod cavage;
mod digest;
pub mod jcs;
pub mod multibase;
pub mod proof;
mod rfc9421;

use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

use crate::config::SignatureConfig;
use crate::exchange::{Exchange, header, header_joined};

/// Which signature standard a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// draft-cavage-http-signatures (Mastodon's default).
    DraftCavage,
    /// RFC 9421 HTTP Message Signatures.
    Rfc9421,
}

/// What is wrong (or noteworthy) about a signature, as a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// The signature headers do not parse.
    Malformed,
    /// An algorithm the inspector cannot check.
    UnsupportedAlgorithm,
    /// A component (derived or header) the inspector cannot rebuild.
    UnsupportedComponent,
    /// A signed header is absent from the request.
    MissingComponent,
    /// The body's hash differs from `Digest` / `Content-Digest`.
    DigestMismatch,
    /// A request with a body has no `Digest` / `Content-Digest`.
    DigestMissing,
    /// The digest header exists but is not among the signed components.
    DigestNotSigned,
    /// Neither `Date` nor a creation time is signed.
    DateNotSigned,
    /// `Date` / `created` is older than the allowed window.
    DateStale,
    /// `Date` / `created` is too far in the future.
    DateInFuture,
    /// `expires` has passed.
    Expired,
    /// The request target is not signed (a replay to another path would
    /// verify).
    TargetNotSigned,
    /// The body was not fully captured, so its digest was not checked.
    BodyNotCaptured,
    /// The keyId's host is not one the inspector routes to.
    KeyHostUnknown,
    /// The key could not be fetched.
    KeyFetchFailed,
    /// The key document holds no usable public key (RSA or Ed25519).
    KeyInvalid,
    /// The signature does not verify with the fetched key.
    BadSignature,
    /// The key's owner is not the activity's actor.
    ActorMismatch,
}

/// How much a problem matters for the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Receivers such as Mastodon reject the request.
    Error,
    /// The inspector could not decide.
    Unverifiable,
    /// Worth knowing; does not change the verdict.
    Warning,
}

impl ProblemCode {
    /// The code the API uses (`bad_signature`).
    pub fn as_str(self) -> &'static str {
        use ProblemCode as P;
        match self {
            P::Malformed => "malformed",
            P::UnsupportedAlgorithm => "unsupported_algorithm",
            P::UnsupportedComponent => "unsupported_component",
            P::MissingComponent => "missing_component",
            P::DigestMismatch => "digest_mismatch",
            P::DigestMissing => "digest_missing",
            P::DigestNotSigned => "digest_not_signed",
            P::DateNotSigned => "date_not_signed",
            P::DateStale => "date_stale",
            P::DateInFuture => "date_in_future",
            P::Expired => "expired",
            P::TargetNotSigned => "target_not_signed",
            P::BodyNotCaptured => "body_not_captured",
            P::KeyHostUnknown => "key_host_unknown",
            P::KeyFetchFailed => "key_fetch_failed",
            P::KeyInvalid => "key_invalid",
            P::BadSignature => "bad_signature",
            P::ActorMismatch => "actor_mismatch",
        }
    }

    /// The severity of this kind of problem.
    pub fn severity(self) -> Severity {
        use ProblemCode as P;
        match self {
            P::Malformed
            | P::MissingComponent
            | P::DigestMismatch
            | P::DigestMissing
            | P::DigestNotSigned
            | P::DateNotSigned
            | P::DateStale
            | P::DateInFuture
            | P::Expired
            | P::BadSignature => Severity::Error,
            P::UnsupportedAlgorithm
            | P::UnsupportedComponent
            | P::KeyHostUnknown
            | P::KeyFetchFailed
            | P::KeyInvalid => Severity::Unverifiable,
            P::TargetNotSigned | P::BodyNotCaptured | P::ActorMismatch => Severity::Warning,
        }
    }
}

/// One problem with a human-readable reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable code.
    pub code: ProblemCode,
    /// Severity of the code.
    pub severity: Severity,
    /// Why, in words.
    pub message: String,
}

impl Problem {
    /// A problem with the code's severity.
    pub fn new(code: ProblemCode, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: code.severity(),
            message: message.into(),
        }
    }
}

/// Outcome of the digest check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestStatus {
    /// The body hashes to the header's value.
    Match,
    /// It does not.
    Mismatch,
    /// The body was not fully captured.
    NotChecked,
    /// No algorithm the inspector knows (SHA-256, SHA-512).
    Unsupported,
}

/// The `Digest` or `Content-Digest` check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestCheck {
    /// `digest` or `content-digest`.
    pub header: String,
    /// `SHA-256` and the like, as written.
    pub algorithm: String,
    /// The outcome.
    pub status: DigestStatus,
    /// Whether the header is among the signed components.
    pub signed: bool,
}

/// An actor's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// An RSA key (`publicKeyPem`).
    Rsa(RsaPublicKey),
    /// An Ed25519 key (a Multikey `publicKeyMultibase`, or an Ed25519 PEM).
    Ed25519([u8; 32]),
}

impl PublicKey {
    /// `RSA` or `Ed25519`.
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::Rsa(_) => "RSA",
            PublicKey::Ed25519(_) => "Ed25519",
        }
    }
}

/// The algorithm to check with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`rsa-sha256`, `rsa-v1_5-sha256`).
    Pkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (`rsa-sha512`).
    Pkcs1Sha512,
    /// RSASSA-PSS with SHA-512 (`rsa-pss-sha512`).
    PssSha512,
    /// Decided by the key (`hs2019`, or no `alg` in RFC 9421): for RSA
    /// PKCS1-v1_5 SHA-256 first, then PSS SHA-512; Ed25519 for an Ed25519
    /// key.
    ByKey,
    /// Ed25519 (RFC 9421 `ed25519`).
    Ed25519,
}

/// What remains to check once the key is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The signing string / signature base.
    pub base: Vec<u8>,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// How to check.
    pub alg: SigAlg,
    /// Signature bases that differ from what arrived in one known way, each
    /// with that cause in words (`the signer signed the Host with its
    /// port`): tried only when `base` does not verify, to name the cause.
    pub variants: Vec<(String, Vec<u8>)>,
}

/// Everything learnt from a request's signature headers without the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureInfo {
    /// Which standard.
    pub scheme: Scheme,
    /// RFC 9421 label (`sig1`).
    pub label: Option<String>,
    /// `keyId` / `keyid`.
    pub key_id: Option<String>,
    /// The algorithm as written (`rsa-sha256`, `hs2019`, ...).
    pub algorithm: Option<String>,
    /// The signed components, in order.
    pub components: Vec<String>,
    /// `created`, Unix seconds.
    pub created: Option<i64>,
    /// `expires`, Unix seconds.
    pub expires: Option<i64>,
    /// The `Date` header.
    pub date: Option<String>,
    /// Seconds between the signed time (`created` or `Date`) and arrival;
    /// positive when the signature is older than its arrival.
    pub skew_secs: Option<i64>,
    /// The digest check.
    pub digest: Option<DigestCheck>,
    /// The signing string / signature base the inspector rebuilt.
    pub base: Option<String>,
    /// Problems found without the key.
    pub problems: Vec<Problem>,
    /// What remains for [`verify_rsa`].
    #[serde(skip)]
    pub pending: Option<Pending>,
}

impl SignatureInfo {
    fn new(scheme: Scheme) -> Self {
        Self {
            scheme,
            label: None,
            key_id: None,
            algorithm: None,
            components: Vec::new(),
            created: None,
            expires: None,
            date: None,
            skew_secs: None,
            digest: None,
            base: None,
            problems: Vec::new(),
            pending: None,
        }
    }

    fn problem(&mut self, code: ProblemCode, message: impl Into<String>) {
        self.problems.push(Problem::new(code, message));
    }
}

/// Parses and checks the signature of a recorded request, if it has one.
/// RFC 9421 wins when a request carries both kinds.
pub fn inspect(ex: &Exchange, cfg: &SignatureConfig) -> Option<SignatureInfo> {
    let headers = &ex.request.headers;
    let mut info = if let Some(input) = header_joined(headers, "signature-input") {
        rfc9421::parse(ex, &input)
    } else if let Some(sig) = header_joined(headers, "signature") {
        cavage::parse(ex, &sig)
    } else {
        let auth = header(headers, "authorization")?;
        let params = auth.strip_prefix("Signature ")?;
        cavage::parse(ex, params)
    };
    check_common(ex, cfg, &mut info);
    Some(info)
}

/// Checks shared by both schemes: digest, date window, expected components.
fn check_common(ex: &Exchange, cfg: &SignatureConfig, info: &mut SignatureInfo) {
    let headers = &ex.request.headers;
    let components = info.components.clone();
    let signed = |name: &str| components.iter().any(|c| c == name);

    digest::check(ex, info);

    // Date / created.
    info.date = header(headers, "date").map(str::to_owned);
    let created_signed = match info.scheme {
        Scheme::DraftCavage => signed("(created)"),
        Scheme::Rfc9421 => info.created.is_some(),
    };
    let signed_time = if created_signed {
        info.created
    } else if signed("date") {
        match info.date.as_deref().map(parse_http_date) {
            Some(Some(t)) => Some(t),
            Some(None) => {
                info.problem(
                    ProblemCode::Malformed,
                    "the Date header is not an HTTP date",
                );
                None
            }
            None => None,
        }
    } else {
        info.problem(
            ProblemCode::DateNotSigned,
            "neither Date nor a creation time is signed, so the signature can be replayed forever",
        );
        None
    };
    let arrived = ex.started_us.div_euclid(1_000_000);
    if let Some(t) = signed_time {
        let skew = arrived - t;
        info.skew_secs = Some(skew);
        let max_age = i64::try_from(cfg.max_age.as_secs()).unwrap_or(i64::MAX);
        let max_future = i64::try_from(cfg.max_future.as_secs()).unwrap_or(i64::MAX);
        if skew > max_age {
            info.problem(
                ProblemCode::DateStale,
                format!(
                    "signed {} before it arrived; the limit is {}",
                    human_secs(skew),
                    human_secs(max_age)
                ),
            );
        } else if -skew > max_future {
            info.problem(
                ProblemCode::DateInFuture,
                format!(
                    "signed {} in the future; the limit is {}",
                    human_secs(-skew),
                    human_secs(max_future)
                ),
            );
        }
    }
    if let Some(exp) = info.expires
        && exp < arrived
    {
        info.problem(
            ProblemCode::Expired,
            format!("expired {} before it arrived", human_secs(arrived - exp)),
        );
    }
    let target_signed = match info.scheme {
        Scheme::DraftCavage => signed("(request-target)"),
        Scheme::Rfc9421 => signed("@target-uri") || signed("@request-target") || signed("@path"),
    };
    if !target_signed {
        info.problem(
            ProblemCode::TargetNotSigned,
            "the request target is not signed",
        );
    }
}

/// How a kind of receiving server judges a signature's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiverPolicy {
    /// `Mastodon`.
    pub server: &'static str,
    /// The oldest signature it accepts, in seconds.
    pub max_age_secs: i64,
    /// How far in the future a signature may be, in seconds.
    pub max_future_secs: i64,
}

/// The stricter window other servers use, in seconds.
pub const STRICT_WINDOW_SECS: i64 = 3600;

impl ReceiverPolicy {
    /// Mastodon: 12 h old, 1 h in the future.
    pub const MASTODON: ReceiverPolicy = ReceiverPolicy {
        server: "Mastodon",
        max_age_secs: 12 * 3600,
        max_future_secs: 3600,
    };

    /// The policy of the server behind `host`. Routes do not say which
    /// software runs behind a host yet, and every lab instance is Mastodon
    /// today, so this is Mastodon's.
    pub fn for_host(_host: &str) -> &'static ReceiverPolicy {
        &Self::MASTODON
    }

    /// The verdict against this policy and a 1 h window, for a signature
    /// made `skew` seconds before it arrived (negative: in the future):
    /// `valid; Mastodon accepts it; a server with a 1 h window would not
    /// (signed 3h00m before it arrived)`.
    pub fn judge(&self, verdict: crate::analysis::Verdict, skew: i64) -> String {
        let accepts = skew <= self.max_age_secs && -skew <= self.max_future_secs;
        let strict = skew.abs() <= STRICT_WINDOW_SECS;
        let what = if verdict == crate::analysis::Verdict::Valid {
            "it"
        } else {
            "its date"
        };
        let when = if skew >= 0 {
            format!("signed {} before it arrived", human_secs(skew))
        } else {
            format!("signed {} in the future", human_secs(-skew))
        };
        let server = self.server;
        let v = verdict.as_str();
        match (accepts, strict) {
            (true, true) => {
                format!("{v}; {server} accepts {what}; so would a server with a 1 h window")
            }
            (true, false) => format!(
                "{v}; {server} accepts {what}; a server with a 1 h window would not ({when})"
            ),
            (false, true) => {
                format!(
                    "{v}; {server} rejects {what} ({when}); a server with a 1 h window would accept it"
                )
            }
            (false, false) => format!(
                "{v}; {server} rejects {what} ({when}; it accepts {} old, {} ahead)",
                human_secs(self.max_age_secs),
                human_secs(self.max_future_secs)
            ),
        }
    }
}

/// The other ways a signer may have written `authority`: without its
/// port, or with the scheme's default port (then the other default).
fn other_authorities(authority: &str, scheme: &str) -> Vec<String> {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            vec![host.to_owned()]
        }
        _ if scheme == "http" => vec![format!("{authority}:80"), format!("{authority}:443")],
        _ => vec![format!("{authority}:443"), format!("{authority}:80")],
    }
}

/// The cause when a signature verifies with `other` as the host.
fn port_cause(actual: &str, other: &str) -> String {
    if other.len() > actual.len() {
        format!(
            "the host is {other}: the signer signed the host with its port, but the request's Host is {actual}"
        )
    } else {
        format!(
            "the host is {other}: the signer signed the host without its port, but the request's Host is {actual}"
        )
    }
}

/// Fragments a signer may have left on the URL it signed (fetches only):
/// the keyId's own (a signed fetch of a key URL such as `…#main-key`),
/// then `main-key`.
fn fragment_candidates(ex: &Exchange, key_id: Option<&str>) -> Vec<String> {
    if ex.request.method != "GET" && ex.request.method != "HEAD" {
        return Vec::new();
    }
    let mut out: Vec<String> = key_id
        .and_then(|k| k.split_once('#'))
        .map(|(_, f)| f.to_owned())
        .into_iter()
        .collect();
    if !out.iter().any(|f| f == "main-key") {
        out.push("main-key".to_owned());
    }
    out
}

fn human_secs(s: i64) -> String {
    let s = s.unsigned_abs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Parses an HTTP date (IMF-fixdate, as RFC 9110 requires) into Unix
/// seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let ts = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(s.trim())
        .ok()?;
    Some(ts.as_second())
}

/// Checks signature bytes over `base` with `key` (RSA or Ed25519). Returns
/// the algorithm that verified.
///
/// # Errors
/// A [`ProblemCode::BadSignature`] problem when the signature does not
/// verify, or the key's type does not fit the algorithm.
pub fn verify(key: &PublicKey, pending: &Pending) -> Result<&'static str, Problem> {
    verify_base(key, pending, &pending.base)
}

fn verify_base(key: &PublicKey, pending: &Pending, base: &[u8]) -> Result<&'static str, Problem> {
    match (key, pending.alg) {
        (PublicKey::Rsa(k), _) => verify_rsa_base(k, pending.alg, base, &pending.signature),
        (PublicKey::Ed25519(k), SigAlg::Ed25519 | SigAlg::ByKey) => {
            verify_ed25519(k, base, &pending.signature)
                .then_some("ed25519")
                .ok_or_else(bad_signature)
        }
        (PublicKey::Ed25519(_), _) => Err(Problem::new(
            ProblemCode::BadSignature,
            "the algorithm is RSA, but the key is Ed25519",
        )),
    }
}

/// Checks `signature` over `message` with an Ed25519 public key (ring).
pub fn verify_ed25519(key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(message, signature)
        .is_ok()
}

/// [`verify`], and when the signature does not verify over what arrived,
/// the first of [`Pending::variants`] it verifies over names the cause in
/// the problem.
///
/// # Errors
/// As [`verify`].
pub fn verify_explained(key: &PublicKey, pending: &Pending) -> Result<&'static str, Problem> {
    let err = match verify(key, pending) {
        Ok(alg) => return Ok(alg),
        Err(e) => e,
    };
    for (cause, base) in &pending.variants {
        if verify_base(key, pending, base).is_ok() {
            return Err(Problem::new(
                ProblemCode::BadSignature,
                format!(
                    "the signature does not verify over the request as it arrived, but does over a base where {cause}"
                ),
            ));
        }
    }
    Err(err)
}

fn bad_signature() -> Problem {
    Problem::new(
        ProblemCode::BadSignature,
        "the signature does not verify with the actor's public key: wrong key, or the signed components differ from what arrived",
    )
}

/// Checks RSA signature bytes over `base` with `key`. Returns the algorithm
/// that verified.
///
/// # Errors
/// A [`ProblemCode::BadSignature`] problem when no allowed algorithm
/// verifies.
pub fn verify_rsa(key: &RsaPublicKey, pending: &Pending) -> Result<&'static str, Problem> {
    verify_rsa_base(key, pending.alg, &pending.base, &pending.signature)
}

fn verify_rsa_base(
    key: &RsaPublicKey,
    alg: SigAlg,
    base: &[u8],
    signature: &[u8],
) -> Result<&'static str, Problem> {
    let pkcs256 = || {
        key.verify(
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(base),
            signature,
        )
        .is_ok()
    };
    let pkcs512 = || {
        key.verify(
            rsa::Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(base),
            signature,
        )
        .is_ok()
    };
    let pss512 = || {
        key.verify(rsa::Pss::new::<Sha512>(), &Sha512::digest(base), signature)
            .is_ok()
    };
    let ok = match alg {
        SigAlg::Pkcs1Sha256 => pkcs256().then_some("rsa-sha256 (RSASSA-PKCS1-v1_5, SHA-256)"),
        SigAlg::Pkcs1Sha512 => pkcs512().then_some("rsa-sha512 (RSASSA-PKCS1-v1_5, SHA-512)"),
        SigAlg::PssSha512 => pss512().then_some("rsa-pss-sha512 (RSASSA-PSS, SHA-512)"),
        SigAlg::ByKey => {
            if pkcs256() {
                Some("RSASSA-PKCS1-v1_5, SHA-256")
            } else if pss512() {
                Some("RSASSA-PSS, SHA-512")
            } else {
                None
            }
        }
        SigAlg::Ed25519 => {
            return Err(Problem::new(
                ProblemCode::BadSignature,
                "alg is ed25519, but the key is RSA",
            ));
        }
    };
    ok.ok_or_else(bad_signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_policy_names_mastodon_and_a_1_h_window() {
        use crate::analysis::Verdict;
        let m = ReceiverPolicy::for_host("mastodon2.fediverse.local");
        assert_eq!(
            m.judge(Verdict::Valid, 30),
            "valid; Mastodon accepts it; so would a server with a 1 h window"
        );
        assert_eq!(
            m.judge(Verdict::Valid, 3 * 3600 + 60),
            "valid; Mastodon accepts it; a server with a 1 h window would not (signed 3h01m before it arrived)"
        );
        assert_eq!(
            m.judge(Verdict::Invalid, 13 * 3600),
            "invalid; Mastodon rejects its date (signed 13h00m before it arrived; it accepts 12h00m old, 1h00m ahead)"
        );
        assert_eq!(
            m.judge(Verdict::Invalid, -2 * 3600),
            "invalid; Mastodon rejects its date (signed 2h00m in the future; it accepts 12h00m old, 1h00m ahead)"
        );
    }

    #[test]
    fn hosts_toggle_their_port() {
        assert_eq!(other_authorities("a.test:443", "https"), ["a.test"]);
        assert_eq!(
            other_authorities("a.test", "https"),
            ["a.test:443", "a.test:80"]
        );
        assert_eq!(
            other_authorities("a.test", "http"),
            ["a.test:80", "a.test:443"]
        );
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
