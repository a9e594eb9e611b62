//! HTTP signatures as the fediverse uses them, checked from a recorded
//! request: draft-cavage `Signature` (and `Authorization: Signature`) with
//! `rsa-sha256`, `rsa-sha512` or `hs2019`, and RFC 9421
//! `Signature-Input` / `Signature` with `rsa-v1_5-sha256` or
//! `rsa-pss-sha512`.
//!
//! [`inspect`] is pure: it parses the headers, rebuilds the signing string
//! (cavage) or signature base (RFC 9421), checks `Digest` /
//! `Content-Digest` against the captured body and the `Date` / `created`
//! skew against when the request arrived. [`verify_rsa`] checks the
//! signature bytes against a public key. Fetching that key is `keys`' job.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::RsaPublicKey;
use serde::Serialize;
use sha2::{Digest as _, Sha256, Sha512};

use crate::config::SignatureConfig;
use crate::exchange::{Exchange, header, header_joined};

/// Which signature standard a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// draft-cavage-http-signatures (Mastodon's default).
    DraftCavage,
    /// RFC 9421 HTTP Message Signatures.
    Rfc9421,
}

/// What is wrong (or noteworthy) about a signature, as a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    /// The fetched document holds no usable RSA public key.
    KeyInvalid,
    /// The signature does not verify with the fetched key.
    BadSignature,
    /// The key's owner is not the activity's actor.
    ActorMismatch,
}

/// How much a problem matters for the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

/// The RSA algorithm to check with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`rsa-sha256`, `rsa-v1_5-sha256`).
    Pkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (`rsa-sha512`).
    Pkcs1Sha512,
    /// RSASSA-PSS with SHA-512 (`rsa-pss-sha512`).
    PssSha512,
    /// Decided by the key (`hs2019`, or no `alg` in RFC 9421): PKCS1-v1_5
    /// SHA-256 first, then PSS SHA-512.
    ByKey,
}

/// What remains to check once the key is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The signing string / signature base.
    pub base: Vec<u8>,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// How to check.
    pub alg: RsaAlg,
}

/// Everything learnt from a request's signature headers without the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
        rfc9421(ex, &input)
    } else if let Some(sig) = header_joined(headers, "signature") {
        cavage(ex, &sig)
    } else {
        let auth = header(headers, "authorization")?;
        let params = auth.strip_prefix("Signature ")?;
        cavage(ex, params)
    };
    check_common(ex, cfg, &mut info);
    Some(info)
}

/// Checks shared by both schemes: digest, date window, expected components.
fn check_common(ex: &Exchange, cfg: &SignatureConfig, info: &mut SignatureInfo) {
    let headers = &ex.request.headers;
    let body = &ex.request.body;
    let components = info.components.clone();
    let signed = |name: &str| components.iter().any(|c| c == name);

    // Digest.
    let digest_header = match info.scheme {
        Scheme::Rfc9421 => "content-digest",
        Scheme::DraftCavage => "digest",
    };
    let has_body = body.size > 0;
    match header_joined(headers, digest_header) {
        Some(value) => {
            let check = match info.scheme {
                Scheme::Rfc9421 => check_content_digest(&value, body),
                Scheme::DraftCavage => check_digest(&value, body),
            };
            let mut check = check;
            check.header = digest_header.to_owned();
            check.signed = signed(digest_header);
            match check.status {
                DigestStatus::Mismatch => info.problem(
                    ProblemCode::DigestMismatch,
                    format!(
                        "the body ({} bytes) does not hash to the {} {} value: the body was changed after signing",
                        body.size, digest_header, check.algorithm
                    ),
                ),
                DigestStatus::NotChecked => info.problem(
                    ProblemCode::BodyNotCaptured,
                    "the body was not fully captured, so its digest was not checked",
                ),
                DigestStatus::Unsupported => info.problem(
                    ProblemCode::UnsupportedAlgorithm,
                    format!("no supported algorithm in {digest_header}: {value}"),
                ),
                DigestStatus::Match => {}
            }
            if !check.signed && has_body {
                info.problem(
                    ProblemCode::DigestNotSigned,
                    format!("{digest_header} is present but not signed"),
                );
            }
            info.digest = Some(check);
        }
        None if has_body => info.problem(
            ProblemCode::DigestMissing,
            format!("a request with a body needs a signed {digest_header} header"),
        ),
        None => {}
    }

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

fn body_complete(body: &crate::exchange::Body) -> bool {
    body.complete && !body.truncated
}

fn check_digest(value: &str, body: &crate::exchange::Body) -> DigestCheck {
    // `SHA-256=base64, SHA-512=base64`
    let members = value.split(',').filter_map(|part| {
        let (alg, b64) = part.trim().split_once('=')?;
        Some((alg.trim().to_owned(), b64.trim()))
    });
    first_known_digest(members, body)
}

fn check_content_digest(value: &str, body: &crate::exchange::Body) -> DigestCheck {
    // `sha-256=:base64:, sha-512=:base64:` (a structured dictionary).
    let members = split_top_level(value);
    let members = members.iter().map(|(alg, raw)| {
        let b64 = raw.trim().trim_start_matches(':').trim_end_matches(':');
        (alg.clone(), b64)
    });
    first_known_digest(members, body)
}

/// The verdict for the first member whose algorithm fedilab computes
/// (SHA-256, SHA-512; names compared case-insensitively), else Unsupported
/// naming the first algorithm given.
fn first_known_digest<'a>(
    members: impl Iterator<Item = (String, &'a str)>,
    body: &crate::exchange::Body,
) -> DigestCheck {
    let mut first_alg = None;
    for (alg, b64) in members {
        first_alg.get_or_insert_with(|| alg.clone());
        let actual: Vec<u8> = match alg.to_ascii_lowercase().as_str() {
            "sha-256" => Sha256::digest(&body.captured).to_vec(),
            "sha-512" => Sha512::digest(&body.captured).to_vec(),
            _ => continue,
        };
        let expected = STANDARD.decode(b64).ok();
        return DigestCheck {
            header: String::new(),
            algorithm: alg,
            status: if !body_complete(body) {
                DigestStatus::NotChecked
            } else if expected.as_deref() == Some(&actual[..]) {
                DigestStatus::Match
            } else {
                DigestStatus::Mismatch
            },
            signed: false,
        };
    }
    DigestCheck {
        header: String::new(),
        algorithm: first_alg.unwrap_or_default(),
        status: DigestStatus::Unsupported,
        signed: false,
    }
}

/// Splits `k="v", k2=token` (cavage parameters) into pairs.
fn cavage_params(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=value at {rest:?}"))?;
        let key = key.trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("unterminated quote in {key}"))?;
            (value, q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            let (v, r) = after.split_at(end);
            (v.trim().to_owned(), r)
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

fn cavage(ex: &Exchange, value: &str) -> SignatureInfo {
    let mut info = SignatureInfo::new(Scheme::DraftCavage);
    let params = match cavage_params(value) {
        Ok(p) => p,
        Err(e) => {
            info.problem(
                ProblemCode::Malformed,
                format!("the Signature header does not parse: {e}"),
            );
            return info;
        }
    };
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    info.key_id = get("keyId");
    info.algorithm = get("algorithm");
    info.created = get("created").and_then(|v| v.parse().ok());
    info.expires = get("expires").and_then(|v| v.parse().ok());
    let headers_param = get("headers").unwrap_or_else(|| "date".to_owned());
    info.components = headers_param
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    if info.key_id.is_none() {
        info.problem(ProblemCode::Malformed, "the Signature has no keyId");
    }
    let sig = match get("signature").map(|s| STANDARD.decode(s.trim())) {
        Some(Ok(sig)) => sig,
        Some(Err(_)) => {
            info.problem(ProblemCode::Malformed, "the signature is not base64");
            return info;
        }
        None => {
            info.problem(ProblemCode::Malformed, "the Signature has no signature");
            return info;
        }
    };
    let alg = match info
        .algorithm
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("hs2019") => RsaAlg::ByKey,
        Some("rsa-sha256") => RsaAlg::Pkcs1Sha256,
        Some("rsa-sha512") => RsaAlg::Pkcs1Sha512,
        Some(other) => {
            info.problem(
                ProblemCode::UnsupportedAlgorithm,
                format!(
                    "algorithm {other:?} is not supported (rsa-sha256, rsa-sha512, hs2019 are)"
                ),
            );
            return info;
        }
    };
    let mut lines = Vec::with_capacity(info.components.len());
    for name in &info.components {
        let value = match name.as_str() {
            "(request-target)" => Some(format!(
                "{} {}",
                ex.request.method.to_ascii_lowercase(),
                ex.request.uri
            )),
            "(created)" => get("created"),
            "(expires)" => get("expires"),
            h => header_joined(&ex.request.headers, h),
        };
        match value {
            Some(v) => lines.push(format!("{name}: {v}")),
            None => {
                info.problem(
                    ProblemCode::MissingComponent,
                    format!("signed header {name:?} is not in the request"),
                );
                return info;
            }
        }
    }
    let base = lines.join("\n");
    info.base = Some(base.clone());
    info.pending = Some(Pending {
        base: base.into_bytes(),
        signature: sig,
        alg,
    });
    info
}

/// Splits a structured-field dictionary into `(key, raw member text)` at
/// top-level commas (outside quotes and parentheses).
fn split_top_level(s: &str) -> Vec<(String, String)> {
    let mut members = Vec::new();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut escaped = false;
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut push = |piece: &str| {
        let piece = piece.trim();
        if piece.is_empty() {
            return;
        }
        match piece.split_once('=') {
            Some((k, v)) => members.push((k.trim().to_owned(), v.trim().to_owned())),
            None => members.push((piece.to_owned(), String::new())),
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                push(s.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    push(s.get(start..).unwrap_or(""));
    members
}

/// A parsed RFC 9421 inner list: component names and the parameters.
struct InnerList {
    components: Vec<String>,
    component_params: bool,
    params: Vec<(String, String)>,
}

fn parse_inner_list(raw: &str) -> Result<InnerList, String> {
    let rest = raw
        .trim()
        .strip_prefix('(')
        .ok_or("the signature input is not an inner list")?;
    let close = {
        let mut in_str = false;
        let mut found = None;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_str = !in_str,
                ')' if !in_str => {
                    found = Some(i);
                    break;
                }
                _ => {}
            }
        }
        found.ok_or("unterminated inner list")?
    };
    let (items, params) = rest.split_at(close);
    let params = params.get(1..).unwrap_or("");
    let mut components = Vec::new();
    let mut component_params = false;
    for item in items.split_whitespace() {
        let (name, p) = match item.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (item, None),
        };
        if p.is_some() {
            component_params = true;
        }
        let name = name
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .ok_or_else(|| format!("component {item} is not a string"))?;
        components.push(name.to_owned());
    }
    let mut out_params = Vec::new();
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, "?1"));
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(v);
        out_params.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(InnerList {
        components,
        component_params,
        params: out_params,
    })
}

fn rfc9421(ex: &Exchange, input: &str) -> SignatureInfo {
    let mut info = SignatureInfo::new(Scheme::Rfc9421);
    let inputs = split_top_level(input);
    let sigs = header_joined(&ex.request.headers, "signature")
        .map(|s| split_top_level(&s))
        .unwrap_or_default();
    let Some((label, raw_input, raw_sig)) = inputs.iter().find_map(|(label, raw)| {
        sigs.iter()
            .find(|(l, _)| l == label)
            .map(|(_, s)| (label.clone(), raw.clone(), s.clone()))
    }) else {
        info.problem(
            ProblemCode::Malformed,
            "no Signature member matches a Signature-Input label",
        );
        return info;
    };
    info.label = Some(label);
    let list = match parse_inner_list(&raw_input) {
        Ok(l) => l,
        Err(e) => {
            info.problem(
                ProblemCode::Malformed,
                format!("Signature-Input does not parse: {e}"),
            );
            return info;
        }
    };
    let param = |k: &str| {
        list.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    info.key_id = param("keyid");
    info.algorithm = param("alg");
    info.created = param("created").and_then(|v| v.parse().ok());
    info.expires = param("expires").and_then(|v| v.parse().ok());
    info.components = list.components.clone();
    if info.key_id.is_none() {
        info.problem(ProblemCode::Malformed, "Signature-Input has no keyid");
    }
    let sig = match STANDARD.decode(raw_sig.trim().trim_start_matches(':').trim_end_matches(':')) {
        Ok(s) => s,
        Err(_) => {
            info.problem(
                ProblemCode::Malformed,
                "the signature is not a base64 byte sequence",
            );
            return info;
        }
    };
    if list.component_params {
        info.problem(
            ProblemCode::UnsupportedComponent,
            "component parameters (;sf, ;key, ;req, ;name) are not supported",
        );
        return info;
    }
    let alg = match info.algorithm.as_deref() {
        None => RsaAlg::ByKey,
        Some("rsa-v1_5-sha256") => RsaAlg::Pkcs1Sha256,
        Some("rsa-pss-sha512") => RsaAlg::PssSha512,
        Some(other) => {
            info.problem(
                ProblemCode::UnsupportedAlgorithm,
                format!("alg {other:?} is not supported (rsa-v1_5-sha256 and rsa-pss-sha512 are)"),
            );
            return info;
        }
    };
    let headers = &ex.request.headers;
    let authority = header(headers, "host")
        .unwrap_or(&ex.host)
        .to_ascii_lowercase();
    let scheme = header(headers, "x-forwarded-proto")
        .and_then(|v| v.split(',').next())
        .map_or("http", str::trim)
        .to_ascii_lowercase();
    let uri = &ex.request.uri;
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri.as_str(), None),
    };
    let mut base = String::new();
    for c in &list.components {
        let value = match c.as_str() {
            "@method" => Some(ex.request.method.clone()),
            "@target-uri" => Some(format!("{scheme}://{authority}{uri}")),
            "@authority" => Some(authority.clone()),
            "@scheme" => Some(scheme.clone()),
            "@request-target" => Some(uri.clone()),
            "@path" => Some(path.to_owned()),
            "@query" => Some(format!("?{}", query.unwrap_or(""))),
            d if d.starts_with('@') => {
                info.problem(
                    ProblemCode::UnsupportedComponent,
                    format!("derived component {d:?} is not supported"),
                );
                return info;
            }
            h => header_joined(headers, h),
        };
        let Some(value) = value else {
            info.problem(
                ProblemCode::MissingComponent,
                format!("signed component {c:?} is not in the request"),
            );
            return info;
        };
        base.push_str(&format!("\"{c}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {}", raw_input.trim()));
    info.base = Some(base.clone());
    info.pending = Some(Pending {
        base: base.into_bytes(),
        signature: sig,
        alg,
    });
    info
}

/// Checks signature bytes over `base` with `key`. Returns the algorithm
/// that verified.
///
/// # Errors
/// A [`ProblemCode::BadSignature`] problem when no allowed algorithm
/// verifies.
pub fn verify_rsa(key: &RsaPublicKey, pending: &Pending) -> Result<&'static str, Problem> {
    let pkcs256 = || {
        key.verify(
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(&pending.base),
            &pending.signature,
        )
        .is_ok()
    };
    let pkcs512 = || {
        key.verify(
            rsa::Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(&pending.base),
            &pending.signature,
        )
        .is_ok()
    };
    let pss512 = || {
        key.verify(
            rsa::Pss::new::<Sha512>(),
            &Sha512::digest(&pending.base),
            &pending.signature,
        )
        .is_ok()
    };
    let ok = match pending.alg {
        RsaAlg::Pkcs1Sha256 => pkcs256().then_some("rsa-sha256 (RSASSA-PKCS1-v1_5, SHA-256)"),
        RsaAlg::Pkcs1Sha512 => pkcs512().then_some("rsa-sha512 (RSASSA-PKCS1-v1_5, SHA-512)"),
        RsaAlg::PssSha512 => pss512().then_some("rsa-pss-sha512 (RSASSA-PSS, SHA-512)"),
        RsaAlg::ByKey => {
            if pkcs256() {
                Some("RSASSA-PKCS1-v1_5, SHA-256")
            } else if pss512() {
                Some("RSASSA-PSS, SHA-512")
            } else {
                None
            }
        }
    };
    ok.ok_or_else(|| {
        Problem::new(
            ProblemCode::BadSignature,
            "the signature does not verify with the actor's public key: wrong key, or the signed components differ from what arrived",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cavage_params_parse_quotes_and_escapes() {
        let p = cavage_params(r#"keyId="https://a/u#k",algorithm="rsa-sha256", headers="(request-target) host", signature="YQ==",created=123"#)
            .expect("params");
        assert_eq!(p.len(), 5);
        assert_eq!(p[0], ("keyId".into(), "https://a/u#k".into()));
        assert_eq!(p[4], ("created".into(), "123".into()));
        let p = cavage_params(r#"a="x\"y""#).expect("params");
        assert_eq!(p[0].1, "x\"y");
        assert!(cavage_params(r#"a="open"#).is_err());
    }

    #[test]
    fn dictionaries_split_at_top_level() {
        let d = split_top_level(r#"sig1=("@method" "a,b");keyid="x,y", sig2=("@path")"#);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, "sig1");
        assert_eq!(d[0].1, r#"("@method" "a,b");keyid="x,y""#);
        let l = parse_inner_list(&d[0].1).expect("inner list");
        assert_eq!(l.components, vec!["@method", "a,b"]);
        assert_eq!(l.params, vec![("keyid".into(), "x,y".into())]);
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
