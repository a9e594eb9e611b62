//! RFC 9421 HTTP Message Signatures (`Signature-Input` / `Signature`):
//! structured-field dictionaries and inner lists parsed, the signature base
//! rebuilt from the recorded request. Pure; the key is checked elsewhere.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Pending, ProblemCode, Scheme, SigAlg, SignatureInfo};
use crate::exchange::{Exchange, header, header_joined};

/// Splits a structured-field dictionary into `(key, raw member text)` at
/// top-level commas (outside quotes and parentheses).
pub(super) fn split_top_level(s: &str) -> Vec<(String, String)> {
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

/// Parses an RFC 9421 signature and rebuilds its signature base.
pub(super) fn parse(ex: &Exchange, input: &str) -> SignatureInfo {
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
        None => SigAlg::ByKey,
        Some("rsa-v1_5-sha256") => SigAlg::Pkcs1Sha256,
        Some("rsa-pss-sha512") => SigAlg::PssSha512,
        Some("ed25519") => SigAlg::Ed25519,
        Some(other) => {
            info.problem(
                ProblemCode::UnsupportedAlgorithm,
                format!(
                    "alg {other:?} is not supported (rsa-v1_5-sha256, rsa-pss-sha512 and ed25519 are)"
                ),
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
    let plain = Shape {
        authority: &authority,
        host_header: None,
        fragment: None,
    };
    let base = match base_of(ex, &list.components, raw_input.trim(), &scheme, &plain) {
        Ok(b) => b,
        Err((code, message)) => {
            info.problem(code, message);
            return info;
        }
    };
    let mut variants = Vec::new();
    let uses = |c: &str| list.components.iter().any(|x| x == c);
    if uses("@authority") || uses("@target-uri") || uses("host") {
        for other in super::other_authorities(&authority, &scheme) {
            let shape = Shape {
                authority: &other,
                host_header: Some(&other),
                fragment: None,
            };
            if let Ok(b) = base_of(ex, &list.components, raw_input.trim(), &scheme, &shape) {
                variants.push((super::port_cause(&authority, &other), b.into_bytes()));
            }
        }
    }
    if uses("@target-uri") {
        for frag in super::fragment_candidates(ex, info.key_id.as_deref()) {
            let shape = Shape {
                authority: &authority,
                host_header: None,
                fragment: Some(&frag),
            };
            if let Ok(b) = base_of(ex, &list.components, raw_input.trim(), &scheme, &shape) {
                variants.push((
                    format!(
                        "@target-uri ends in #{frag}: the signer signed the URL with its fragment, which HTTP never sends"
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

/// How a signature base is rebuilt: from what arrived, or with one known
/// difference (another authority, a fragment on the target URI).
struct Shape<'a> {
    authority: &'a str,
    host_header: Option<&'a str>,
    fragment: Option<&'a str>,
}

fn base_of(
    ex: &Exchange,
    components: &[String],
    raw_input: &str,
    scheme: &str,
    shape: &Shape<'_>,
) -> Result<String, (ProblemCode, String)> {
    let headers = &ex.request.headers;
    let uri = &ex.request.uri;
    let authority = shape.authority;
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri.as_str(), None),
    };
    let mut base = String::new();
    for c in components {
        let value = match c.as_str() {
            "@method" => Some(ex.request.method.clone()),
            "@target-uri" => Some(match shape.fragment {
                Some(f) => format!("{scheme}://{authority}{uri}#{f}"),
                None => format!("{scheme}://{authority}{uri}"),
            }),
            "@authority" => Some(authority.to_owned()),
            "@scheme" => Some(scheme.to_owned()),
            "@request-target" => Some(uri.clone()),
            "@path" => Some(path.to_owned()),
            "@query" => Some(format!("?{}", query.unwrap_or(""))),
            d if d.starts_with('@') => {
                return Err((
                    ProblemCode::UnsupportedComponent,
                    format!("derived component {d:?} is not supported"),
                ));
            }
            "host" if shape.host_header.is_some() => shape.host_header.map(str::to_owned),
            h => header_joined(headers, h),
        };
        let Some(value) = value else {
            return Err((
                ProblemCode::MissingComponent,
                format!("signed component {c:?} is not in the request"),
            ));
        };
        base.push_str(&format!("\"{c}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {raw_input}"));
    Ok(base)
}
#[cfg(test)]
mod tests {
    use super::*;

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
}
