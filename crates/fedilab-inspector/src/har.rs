//! HAR 1.2 export (the format browsers' devtools import) of recorded
//! exchanges. Bodies are decoded for display; binary ones are base64 with
//! `encoding: "base64"`. Fedilab's analysis rides along in `_fedilab`
//! fields, which HAR allows for custom data.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::analysis::{Analysis, Verification};
use crate::decode::{MAX_DECODED_BYTES, decode};
use crate::exchange::{Body, Exchange, Headers, Marks, header};
use crate::view::{rfc3339, url_of};

fn headers(h: &Headers) -> Value {
    Value::Array(
        h.iter()
            .map(|(n, v)| json!({ "name": n, "value": v }))
            .collect(),
    )
}

fn query(uri: &str) -> Value {
    let q = uri.split_once('?').map_or("", |(_, q)| q);
    Value::Array(
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                json!({ "name": n, "value": v })
            })
            .collect(),
    )
}

fn text_of(body: &Body, h: &Headers) -> (String, Option<&'static str>, usize) {
    let d = decode(
        &body.captured,
        header(h, "content-encoding"),
        MAX_DECODED_BYTES,
    );
    let len = d.bytes.len();
    match std::str::from_utf8(&d.bytes) {
        Ok(t) => (t.to_owned(), None, len),
        Err(_) => (STANDARD.encode(&*d.bytes), Some("base64"), len),
    }
}

/// One HAR entry; `_fedilab` carries the analysis and the inspector's
/// marks (`fault`, `replay_of`, `edited`).
pub fn entry(
    ex: &Exchange,
    marks: &Marks,
    a: Option<&Analysis>,
    v: Option<&Verification>,
) -> Value {
    let req = &ex.request;
    let mut request = json!({
        "method": req.method,
        "url": url_of(ex),
        "httpVersion": req.version,
        "cookies": [],
        "headers": headers(&req.headers),
        "queryString": query(&req.uri),
        "headersSize": -1,
        "bodySize": req.body.size,
    });
    if req.body.size > 0 {
        let (text, _, _) = text_of(&req.body, &req.headers);
        request["postData"] = json!({
            "mimeType": header(&req.headers, "content-type").unwrap_or(""),
            "params": [],
            "text": text,
        });
    }
    let response = match &ex.response {
        Some(r) => {
            let (text, encoding, size) = text_of(&r.body, &r.headers);
            let mut content = json!({
                "size": size,
                "mimeType": header(&r.headers, "content-type").unwrap_or(""),
                "text": text,
            });
            if let Some(e) = encoding {
                content["encoding"] = json!(e);
            }
            json!({
                "status": r.status,
                "statusText": http::StatusCode::from_u16(r.status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
                "httpVersion": r.version,
                "cookies": [],
                "headers": headers(&r.headers),
                "content": content,
                "redirectURL": header(&r.headers, "location").unwrap_or(""),
                "headersSize": -1,
                "bodySize": r.body.size,
            })
        }
        None => json!({
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": { "size": 0, "mimeType": "" },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": ex.error,
        }),
    };
    let total_ms = ex.total_us as f64 / 1000.0;
    let wait_ms = ex.headers_us.map_or(total_ms, |h| h as f64 / 1000.0);
    json!({
        "startedDateTime": rfc3339(ex),
        "time": total_ms,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "send": 0,
            "wait": wait_ms,
            "receive": (total_ms - wait_ms).max(0.0),
            "ssl": -1,
        },
        "comment": a.and_then(|a| a.activity.clone()).unwrap_or_default(),
        "_fedilab": {
            "id": ex.id,
            "kind": a.map(|a| a.kind),
            "activity": a.and_then(|a| a.activity.clone()),
            "from": a.and_then(|a| a.from.clone()),
            "verdict": v.map(|v| v.verdict),
            "fault": marks.fault,
            "replay_of": marks.replay_of,
            "edited": marks.edited,
        },
    })
}

/// A HAR 1.2 document from entries (in order).
pub fn document(entries: Vec<Value>) -> Value {
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "fedilab-inspector", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries,
        }
    })
}
