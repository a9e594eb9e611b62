//! Exchange filters, shared by the list, HAR and SSE endpoints (as query
//! parameters) and the UI: instance, method, status, activity type, free
//! text, and the switch between server-to-server traffic (the default) and
//! everything.

use serde::Deserialize;

use crate::analysis::Analysis;
use crate::decode::{MAX_DECODED_BYTES, decode};
use crate::exchange::{Body, Exchange, Headers, header};

/// Which exchanges to show. Every field is optional; all given ones must
/// match.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filter {
    /// The target host or the sending instance (exact, case-insensitive).
    pub instance: Option<String>,
    /// The method (`POST`).
    pub method: Option<String>,
    /// A status (`202`), a class (`4xx`), or `none` (no response).
    pub status: Option<String>,
    /// A substring of the activity (`Create`, `Create(Note)`, `Undo(Like)`)
    /// or a kind (`inbox_post`, `actor_fetch`, `webfinger`, ...).
    pub activity: Option<String>,
    /// A case-insensitive substring of the URL, headers or (decoded) bodies.
    pub text: Option<String>,
    /// `true` or `1`: include non-federation traffic (web UI, client API,
    /// media). Default: server-to-server traffic only.
    pub all: Option<String>,
    /// Only exchanges with a larger id (ids follow completion: the
    /// polling cursor, see `ExchangeList::last_id`).
    pub after: Option<u64>,
    /// At most this many (default 500, at most 10000): the lowest ids
    /// after `after`, else the highest ids; listed by request start.
    pub limit: Option<usize>,
}

fn nonempty(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Filter {
    /// Whether `all` was switched on.
    pub fn everything(&self) -> bool {
        matches!(nonempty(&self.all), Some("true" | "1" | "yes" | "on"))
    }

    /// The effective limit.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(500).clamp(1, 10_000)
    }

    /// Whether an exchange (with its analysis) passes the filter. `after`
    /// and `limit` are the caller's business.
    pub fn matches(&self, ex: &Exchange, a: &Analysis) -> bool {
        if !self.everything() && !a.federation {
            return false;
        }
        if let Some(inst) = nonempty(&self.instance) {
            let inst = inst.to_ascii_lowercase();
            if ex.host != inst && a.from.as_deref() != Some(inst.as_str()) {
                return false;
            }
        }
        if let Some(m) = nonempty(&self.method)
            && !ex.request.method.eq_ignore_ascii_case(m)
        {
            return false;
        }
        if let Some(s) = nonempty(&self.status) {
            let status = ex.response.as_ref().map(|r| r.status);
            let ok = match (s.to_ascii_lowercase().as_str(), status) {
                ("none", None) => true,
                (class, Some(st)) if class.len() == 3 && class.ends_with("xx") => {
                    class.as_bytes().first().map(|c| c - b'0') == Some((st / 100) as u8)
                }
                (exact, Some(st)) => exact.parse::<u16>().ok() == Some(st),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        if let Some(act) = nonempty(&self.activity) {
            let act = act.to_ascii_lowercase();
            let label = a.activity.as_deref().unwrap_or("").to_ascii_lowercase();
            if !label.contains(&act) && a.kind.as_str() != act {
                return false;
            }
        }
        if let Some(text) = nonempty(&self.text)
            && !contains_text(ex, &text.to_lowercase())
        {
            return false;
        }
        true
    }
}

fn contains_text(ex: &Exchange, needle: &str) -> bool {
    let hit = |s: &str| s.to_lowercase().contains(needle);
    let headers_hit = |h: &Headers| h.iter().any(|(n, v)| hit(n) || hit(v));
    let body_hit = |b: &Body, h: &Headers| {
        let d = decode(
            &b.captured,
            header(h, "content-encoding"),
            MAX_DECODED_BYTES,
        );
        hit(&String::from_utf8_lossy(&d.bytes))
    };
    hit(&ex.host)
        || hit(&ex.request.method)
        || hit(&ex.request.uri)
        || ex.error.as_deref().is_some_and(hit)
        || headers_hit(&ex.request.headers)
        || body_hit(&ex.request.body, &ex.request.headers)
        || ex
            .response
            .as_ref()
            .is_some_and(|r| headers_hit(&r.headers) || body_hit(&r.body, &r.headers))
}
