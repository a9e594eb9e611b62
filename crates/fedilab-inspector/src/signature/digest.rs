//! The body digest of a signed request: `Digest` (draft-cavage,
//! `SHA-256=base64`) or `Content-Digest` (RFC 9421, a structured
//! dictionary), checked against the captured body. Pure; never reads
//! the signature itself.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256, Sha512};

use super::rfc9421::split_top_level;
use super::{DigestCheck, DigestStatus, ProblemCode, Scheme, SignatureInfo};
use crate::exchange::{Body, Exchange, header_joined};

/// Checks the scheme's digest header against the captured body and
/// records the check (and its problems) in `info`.
pub(super) fn check(ex: &Exchange, info: &mut SignatureInfo) {
    let headers = &ex.request.headers;
    let body = &ex.request.body;
    let components = info.components.clone();
    let signed = |name: &str| components.iter().any(|c| c == name);

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
}

fn body_complete(body: &Body) -> bool {
    body.complete && !body.truncated
}

fn check_digest(value: &str, body: &Body) -> DigestCheck {
    // `SHA-256=base64, SHA-512=base64`
    let members = value.split(',').filter_map(|part| {
        let (alg, b64) = part.trim().split_once('=')?;
        Some((alg.trim().to_owned(), b64.trim()))
    });
    first_known_digest(members, body)
}

fn check_content_digest(value: &str, body: &Body) -> DigestCheck {
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
    body: &Body,
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
