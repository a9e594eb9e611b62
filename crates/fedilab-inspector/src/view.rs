//! JSON views of exchanges for the API and the UI: the list summary, the
//! detail (decoded bodies, pretty JSON, signature report) and copy-as-curl.
//!
//! Pure functions of a record and its analysis.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::analysis::{Analysis, Verification};
use crate::decode::{MAX_DECODED_BYTES, decode};
use crate::exchange::{Body, Exchange, Headers, header};

/// The URL the client asked for: scheme (from X-Forwarded-Proto), Host,
/// path and query.
pub(crate) fn url_of(ex: &Exchange) -> String {
    let h = &ex.request.headers;
    let scheme = header(h, "x-forwarded-proto")
        .and_then(|v| v.split(',').next())
        .map_or("http", str::trim);
    let host = header(h, "host").unwrap_or(&ex.host);
    format!("{scheme}://{host}{}", ex.request.uri)
}

/// RFC 3339 with milliseconds.
pub(crate) fn rfc3339(ex: &Exchange) -> String {
    let ts = ex.started();
    format!("{:.3}", ts)
}

pub(crate) fn summary(ex: &Exchange, a: &Analysis, v: &Verification) -> Value {
    let resp = ex.response.as_ref();
    json!({
        "id": ex.id,
        "started": rfc3339(ex),
        "host": ex.host,
        "from": a.from,
        "client": ex.client,
        "method": ex.request.method,
        "uri": ex.request.uri,
        "status": resp.map(|r| r.status),
        "kind": a.kind,
        "federation": a.federation,
        "activity": a.activity,
        "actor": a.actor,
        "object": a.object,
        "signature": a.signature.as_ref().map(|s| json!({
            "scheme": s.scheme,
            "key_id": s.key_id,
            "algorithm": s.algorithm,
        })),
        "verdict": v.verdict,
        "problems": v.problems,
        "request_size": ex.request.body.size,
        "response_size": resp.map(|r| r.body.size),
        "content_type": resp.and_then(|r| header(&r.headers, "content-type")),
        "duration_ms": ex.total_us as f64 / 1000.0,
        "upgrade": ex.upgrade.is_some(),
        "error": ex.error,
    })
}

pub(crate) fn body_view(body: &Body, headers: &Headers) -> Value {
    let encoding = header(headers, "content-encoding");
    let d = decode(&body.captured, encoding, MAX_DECODED_BYTES);
    let mut v = json!({
        "size": body.size,
        "captured": body.captured.len(),
        "truncated": body.truncated,
        "complete": body.complete,
        "content_encoding": encoding,
        "decoded_size": d.bytes.len(),
        "decode_error": d.error,
    });
    if let Ok(text) = std::str::from_utf8(&d.bytes) {
        let ct = header(headers, "content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let looks_json = ct.contains("json")
            || text.trim_start().starts_with('{')
            || text.trim_start().starts_with('[');
        if looks_json && let Ok(j) = serde_json::from_str::<Value>(text) {
            v["json"] = j;
        }
        v["text"] = Value::String(text.to_owned());
    } else {
        v["base64"] = Value::String(STANDARD.encode(&*d.bytes));
    }
    v
}

fn headers_json(h: &Headers) -> Value {
    Value::Array(h.iter().map(|(n, v)| json!([n, v])).collect())
}

pub(crate) fn detail(ex: &Exchange, a: &Analysis, v: &Verification) -> Value {
    let mut d = summary(ex, a, v);
    d["url"] = Value::String(url_of(ex));
    d["upstream"] = json!(ex.upstream);
    d["request"] = json!({
        "method": ex.request.method,
        "uri": ex.request.uri,
        "version": ex.request.version,
        "headers": headers_json(&ex.request.headers),
        "body": body_view(&ex.request.body, &ex.request.headers),
    });
    d["response"] = match &ex.response {
        Some(r) => json!({
            "status": r.status,
            "version": r.version,
            "headers": headers_json(&r.headers),
            "body": body_view(&r.body, &r.headers),
        }),
        None => Value::Null,
    };
    d["analysis"] = serde_json::to_value(a).unwrap_or(Value::Null);
    d["verification"] = serde_json::to_value(v).unwrap_or(Value::Null);
    d["timings"] = json!({ "headers_us": ex.headers_us, "total_us": ex.total_us });
    d["upgrade"] = json!(ex.upgrade);
    d["curl"] = Value::String(curl(ex));
    d
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A curl command that replays the request to its original URL.
pub(crate) fn curl(ex: &Exchange) -> String {
    let mut parts = vec![
        "curl".to_owned(),
        "-i".to_owned(),
        "-X".to_owned(),
        ex.request.method.clone(),
        shell_quote(&url_of(ex)),
    ];
    for (n, v) in &ex.request.headers {
        if matches!(
            n.as_str(),
            "host" | "content-length" | "connection" | "x-forwarded-for" | "accept-encoding"
        ) {
            continue;
        }
        parts.push("-H".to_owned());
        parts.push(shell_quote(&format!("{n}: {v}")));
    }
    let body = &ex.request.body;
    if body.size > 0 {
        match std::str::from_utf8(&body.captured) {
            Ok(text) if !body.truncated => {
                parts.push("--data-binary".to_owned());
                parts.push(shell_quote(text));
            }
            _ => {
                parts.push("--data-binary".to_owned());
                parts.push("@body.bin".to_owned());
                parts.push(format!(
                    "# the body is binary or truncated ({} bytes): save it as body.bin",
                    body.size
                ));
            }
        }
    }
    parts.join(" ")
}
