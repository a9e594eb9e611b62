//! draft-cavage HTTP signatures (`Signature` or `Authorization:
//! Signature`): the parameters parsed and the signing string rebuilt from
//! the recorded request. Pure; the key is checked elsewhere.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Pending, ProblemCode, Scheme, SigAlg, SignatureInfo};
use crate::exchange::{Exchange, header, header_joined};

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

/// Parses a cavage signature and rebuilds its signing string.
pub(super) fn parse(ex: &Exchange, value: &str) -> SignatureInfo {
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
        None | Some("hs2019") => SigAlg::ByKey,
        Some("rsa-sha256") => SigAlg::Pkcs1Sha256,
        Some("rsa-sha512") => SigAlg::Pkcs1Sha512,
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
    let base = match signing_string(ex, &info.components, &get, None, None) {
        Ok(b) => b,
        Err(name) => {
            info.problem(
                ProblemCode::MissingComponent,
                format!("signed header {name:?} is not in the request"),
            );
            return info;
        }
    };
    let mut variants = Vec::new();
    let signed = |c: &str| info.components.iter().any(|x| x == c);
    if signed("host")
        && let Some(host) = header(&ex.request.headers, "host")
    {
        let scheme = header(&ex.request.headers, "x-forwarded-proto")
            .and_then(|v| v.split(',').next())
            .map_or("https", str::trim)
            .to_ascii_lowercase();
        for other in super::other_authorities(host, &scheme) {
            if let Ok(b) = signing_string(ex, &info.components, &get, Some(&other), None) {
                variants.push((super::port_cause(host, &other), b.into_bytes()));
            }
        }
    }
    if signed("(request-target)") {
        for frag in super::fragment_candidates(ex, info.key_id.as_deref()) {
            if let Ok(b) = signing_string(ex, &info.components, &get, None, Some(&frag)) {
                variants.push((
                    format!(
                        "(request-target) ends in #{frag}: the signer signed the URL with its fragment, which HTTP never sends"
                    ),
                    b.into_bytes(),
                ));
            }
        }
    }
    info.base = Some(base.clone());
    info.pending = Some(Pending {
        base: base.into_bytes(),
        signature: sig,
        alg,
        variants,
    });
    info
}

/// The signing string, optionally with another `host` value or a fragment
/// on the request target. `Err` names a signed header that is absent.
fn signing_string(
    ex: &Exchange,
    components: &[String],
    param: &dyn Fn(&str) -> Option<String>,
    host: Option<&str>,
    fragment: Option<&str>,
) -> Result<String, String> {
    let mut lines = Vec::with_capacity(components.len());
    for name in components {
        let value = match name.as_str() {
            "(request-target)" => Some(format!(
                "{} {}{}",
                ex.request.method.to_ascii_lowercase(),
                ex.request.uri,
                fragment.map(|f| format!("#{f}")).unwrap_or_default()
            )),
            "(created)" => param("created"),
            "(expires)" => param("expires"),
            "host" if host.is_some() => host.map(str::to_owned),
            h => header_joined(&ex.request.headers, h),
        };
        match value {
            Some(v) => lines.push(format!("{name}: {v}")),
            None => return Err(name.clone()),
        }
    }
    Ok(lines.join("\n"))
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
}
