//! JSON views of exchanges for the API and the UI: the list summary, the
//! detail (decoded bodies, pretty JSON, signature report) and copy-as-curl.
//!
//! Pure functions of a record and its analysis, returning the documents
//! of `api_types`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::analysis::{Analysis, Verification};
use crate::api_types::{
    BodyView, ExchangeDetail, ExchangeSummary, RequestView, ResponseView, SignatureSummary, Timings,
};
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

/// The summary of a record, with `upgrade` as `upgrade(record)` makes it.
fn summary_with<U>(
    ex: &Exchange,
    a: &Analysis,
    v: &Verification,
    upgrade: impl FnOnce(&Exchange) -> U,
) -> ExchangeSummary<U> {
    let resp = ex.response.as_ref();
    ExchangeSummary {
        id: ex.id,
        started: rfc3339(ex),
        host: ex.host.clone(),
        from: a.from.clone(),
        client: ex.client.clone(),
        method: ex.request.method.clone(),
        uri: ex.request.uri.clone(),
        status: resp.map(|r| r.status),
        kind: a.kind,
        federation: a.federation,
        activity: a.activity.clone(),
        detail: a.detail.clone(),
        actor: a.actor.clone(),
        object: a.object.clone(),
        signature: a.signature.as_ref().map(|s| SignatureSummary {
            scheme: s.scheme,
            key_id: s.key_id.clone(),
            algorithm: s.algorithm.clone(),
        }),
        verdict: v.verdict,
        key_source: v.key_source,
        problems: v.problems.clone(),
        request_size: ex.request.body.size,
        response_size: resp.map(|r| r.body.size),
        content_type: resp
            .and_then(|r| header(&r.headers, "content-type"))
            .map(str::to_owned),
        duration_ms: ex.total_us as f64 / 1000.0,
        upgrade: upgrade(ex),
        error: ex.error.clone(),
        started_us: ex.started_us,
        marks: crate::exchange::Marks::default(), // filled from the store entry
    }
}

pub(crate) fn summary(ex: &Exchange, a: &Analysis, v: &Verification) -> ExchangeSummary {
    summary_with(ex, a, v, |ex| ex.upgrade.is_some())
}

pub(crate) fn body_view(body: &Body, headers: &Headers) -> BodyView {
    let encoding = header(headers, "content-encoding");
    let d = decode(&body.captured, encoding, MAX_DECODED_BYTES);
    let mut v = BodyView {
        size: body.size,
        captured: body.captured.len(),
        truncated: body.truncated,
        complete: body.complete,
        content_encoding: encoding.map(str::to_owned),
        decoded_size: d.bytes.len(),
        decode_error: d.error.clone(),
        text: None,
        json: None,
        base64: None,
    };
    if let Ok(text) = std::str::from_utf8(&d.bytes) {
        let ct = header(headers, "content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let looks_json = ct.contains("json")
            || text.trim_start().starts_with('{')
            || text.trim_start().starts_with('[');
        if looks_json && let Ok(j) = serde_json::from_str::<Value>(text) {
            v.json = Some(j);
        }
        v.text = Some(text.to_owned());
    } else {
        v.base64 = Some(STANDARD.encode(&*d.bytes));
    }
    v
}

pub(crate) fn detail(ex: &Exchange, a: &Analysis, v: &Verification) -> ExchangeDetail {
    ExchangeDetail {
        summary: summary_with(ex, a, v, |ex| ex.upgrade.clone()),
        url: url_of(ex),
        upstream: ex.upstream.clone(),
        request: RequestView {
            method: ex.request.method.clone(),
            uri: ex.request.uri.clone(),
            version: ex.request.version.clone(),
            headers: ex.request.headers.clone(),
            body: body_view(&ex.request.body, &ex.request.headers),
        },
        response: ex.response.as_ref().map(|r| ResponseView {
            status: r.status,
            version: r.version.clone(),
            headers: r.headers.clone(),
            body: body_view(&r.body, &r.headers),
        }),
        analysis: a.clone(),
        verification: v.clone(),
        timings: Timings {
            headers_us: ex.headers_us,
            total_us: ex.total_us,
        },
        curl: curl(ex),
    }
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
            n,
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
