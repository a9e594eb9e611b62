//! The record of one proxied exchange: request and response heads, bodies as
//! received (bounded), timings, and WebSocket byte counts.
//!
//! Plain data with serde for the JSON-lines persistence. No I/O and no
//! ActivityPub analysis here: see `analysis` for that.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Header fields in the order received; names are lower case (HTTP/1 names
/// are case-insensitive and hyper normalises them), values lossily decoded
/// as UTF-8 for display.
///
/// Every name and value sits in one buffer: a head is two allocations
/// however many fields it has. Records are evicted long after they were
/// made, from memory no longer in cache, and each allocation freed then is
/// a cache miss on the proxy's thread: with a `String` per name and value,
/// evicting heads was most of what recording cost. Serialised as a list of
/// `[name, value]` pairs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Where each field's name and value end in `text`; each field starts
    /// where the one before it ended.
    ends: Vec<(u32, u32)>,
}

impl Headers {
    /// No fields, with room for `fields` fields of `bytes` bytes in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    /// Appends a field. A head beyond 4 GiB is not recorded further (the
    /// proxy keeps at most 64 KiB of a head).
    pub fn push(&mut self, name: &str, value: &str) {
        self.push_field(name, value, false);
    }

    /// [`Headers::push`] with the name put in ASCII lower case.
    pub fn push_lower(&mut self, name: &str, value: &str) {
        self.push_field(name, value, true);
    }

    fn push_field(&mut self, name: &str, value: &str, lower: bool) {
        if self.text.len() + name.len() + value.len() > u32::MAX as usize {
            return;
        }
        let start = self.text.len();
        self.text.push_str(name);
        if lower && let Some(added) = self.text.get_mut(start..) {
            added.make_ascii_lowercase();
        }
        let name_end = self.text.len() as u32;
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len() as u32));
    }

    /// The fields in order, as `(name, value)`.
    pub fn iter(&self) -> HeadersIter<'_> {
        HeadersIter {
            headers: self,
            next: 0,
        }
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No fields at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of every name and value.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    fn field(&self, i: usize) -> Option<(&str, &str)> {
        let &(name_end, value_end) = self.ends.get(i)?;
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).map_or(0, |e| e.1),
            None => 0,
        };
        Some((
            self.text.get(start as usize..name_end as usize)?,
            self.text.get(name_end as usize..value_end as usize)?,
        ))
    }
}

/// The fields of [`Headers`], in order.
#[derive(Clone, Debug)]
pub struct HeadersIter<'a> {
    headers: &'a Headers,
    next: usize,
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let field = self.headers.field(self.next)?;
        self.next += 1;
        Some(field)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.headers.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = HeadersIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut out = Headers::default();
        for (n, v) in iter {
            out.push(n.as_ref(), v.as_ref());
        }
        out
    }
}

impl<N: AsRef<str>, V: AsRef<str>> From<Vec<(N, V)>> for Headers {
    fn from(fields: Vec<(N, V)>) -> Self {
        fields.into_iter().collect()
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Headers {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<(String, String)>::deserialize(deserializer)?.into())
    }
}

/// The value of the first header field named `name` (lower case).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|&(n, _)| n == name).map(|(_, v)| v)
}

/// Every value of the fields named `name`, joined with ", " as RFC 9110
/// allows for list-valued fields.
pub fn header_joined(headers: &Headers, name: &str) -> Option<String> {
    let mut values = headers.iter().filter(|&(n, _)| n == name).map(|(_, v)| v);
    let first = values.next()?;
    let mut out = first.trim().to_owned();
    for v in values {
        out.push_str(", ");
        out.push_str(v.trim());
    }
    Some(out)
}

/// A body as it crossed the proxy: its first bytes (up to the capture limit),
/// exactly as received, still content-encoded.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Body {
    /// The captured bytes, at most the per-exchange capture limit.
    #[serde(with = "base64_bytes")]
    pub captured: Bytes,
    /// How many bytes crossed the proxy in all.
    pub size: u64,
    /// True when `captured` is shorter than `size`.
    pub truncated: bool,
    /// False when the stream ended early (an error, or a peer went away).
    pub complete: bool,
}

/// The request line and headers as received from the client.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// The method, as sent (`POST`).
    pub method: String,
    /// Path and query as sent (`/users/alice/inbox?x=1`).
    pub uri: String,
    /// `HTTP/1.1` and the like.
    pub version: String,
    /// Header fields in order.
    pub headers: Headers,
    /// The body.
    pub body: Body,
}

/// The status line and headers as received from the upstream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResponseRecord {
    /// The status code.
    pub status: u16,
    /// `HTTP/1.1` and the like.
    pub version: String,
    /// Header fields in order.
    pub headers: Headers,
    /// The body.
    pub body: Body,
}

/// Byte counts of a WebSocket (or other upgraded) connection that the proxy
/// passed through.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpgradeRecord {
    /// Bytes from the client to the upstream after the upgrade.
    pub bytes_to_upstream: u64,
    /// Bytes from the upstream to the client after the upgrade.
    pub bytes_to_client: u64,
    /// Why the tunnel ended, when it was not a clean close.
    pub error: Option<String>,
}

/// One request through the proxy and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exchange {
    /// Assigned by the store: increasing, never reused (also across restarts
    /// with persistence).
    pub id: u64,
    /// When the request head arrived, in microseconds since the Unix epoch.
    pub started_us: i64,
    /// The client's address (Traefik, in a lab).
    pub client: Option<String>,
    /// The Host the request was for, lower case, without a port.
    pub host: String,
    /// The upstream it was routed to, when the host is known.
    pub upstream: Option<String>,
    /// The request.
    pub request: RequestRecord,
    /// The response, when the upstream (or the proxy itself) sent one.
    pub response: Option<ResponseRecord>,
    /// What went wrong, when something did (unknown host, upstream down).
    pub error: Option<String>,
    /// Microseconds from the request head to the response head.
    pub headers_us: Option<u64>,
    /// Microseconds from the request head to the end of both bodies (or of
    /// the upgraded connection).
    pub total_us: u64,
    /// Set for upgraded connections (WebSocket).
    pub upgrade: Option<UpgradeRecord>,
}

/// What the inspector itself did with an exchange: the fault rule that
/// touched it, the exchange it replays. Kept beside the record in the
/// store and persisted with it; absent fields are omitted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marks {
    /// The fault rule that touched the exchange, and its action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<crate::fault::FaultMark>,
    /// The exchange this one re-sent (`POST /api/exchanges/{id}/replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<u64>,
    /// The replay changed the body or headers (a signature no longer
    /// verifies).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
}

impl Exchange {
    /// Roughly how many bytes of memory the record holds; the store's byte
    /// limit counts this.
    pub fn approx_size(&self) -> usize {
        fn headers(h: &Headers) -> usize {
            h.text_len() + h.len() * 8 + 48
        }
        let mut size = std::mem::size_of::<Self>()
            + self.host.len()
            + self.client.as_ref().map_or(0, String::len)
            + self.upstream.as_ref().map_or(0, String::len)
            + self.error.as_ref().map_or(0, String::len)
            + self.request.method.len()
            + self.request.uri.len()
            + headers(&self.request.headers)
            + self.request.body.captured.len();
        if let Some(r) = &self.response {
            size += headers(&r.headers) + r.body.captured.len();
        }
        size
    }

    /// The start time as a timestamp.
    pub fn started(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_microsecond(self.started_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

/// Serde for [`Bytes`] as standard base64 text.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

impl Exchange {
    /// A request not answered (yet), with no id or timings: what a fault
    /// rule's matching analyses before forwarding.
    pub(crate) fn unanswered(
        host: &str,
        method: &str,
        uri: &str,
        headers: Headers,
        body: Body,
    ) -> Self {
        Exchange {
            id: 0,
            started_us: 0,
            client: None,
            host: host.to_owned(),
            upstream: None,
            request: RequestRecord {
                method: method.to_owned(),
                uri: uri.to_owned(),
                version: "HTTP/1.1".to_owned(),
                headers,
                body,
            },
            response: None,
            error: None,
            headers_us: None,
            total_us: 0,
            upgrade: None,
        }
    }

    /// [`Exchange::unanswered`] with header fields and a whole body, the
    /// record unit tests start from.
    #[cfg(test)]
    pub(crate) fn test_request(
        host: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Self {
        Self::unanswered(
            host,
            method,
            uri,
            headers.iter().copied().collect(),
            Body::test_whole(body),
        )
    }
}

#[cfg(test)]
impl Body {
    /// A body captured whole.
    pub(crate) fn test_whole(bytes: &[u8]) -> Self {
        Body {
            captured: Bytes::copy_from_slice(bytes),
            size: bytes.len() as u64,
            truncated: false,
            complete: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_empty_values_and_repeats() {
        let h: Headers = vec![
            ("host", "a.example"),
            ("x-empty", ""),
            ("accept", "text/html"),
            ("accept", "application/activity+json"),
            ("x-ünïcode", "välue"),
        ]
        .into();
        let fields: Vec<(&str, &str)> = h.iter().collect();
        assert_eq!(
            fields,
            [
                ("host", "a.example"),
                ("x-empty", ""),
                ("accept", "text/html"),
                ("accept", "application/activity+json"),
                ("x-ünïcode", "välue"),
            ]
        );
        assert_eq!(h.len(), 5);
        assert_eq!(h.iter().size_hint(), (5, Some(5)));
        assert_eq!(header(&h, "x-empty"), Some(""));
        assert_eq!(
            header_joined(&h, "accept").as_deref(),
            Some("text/html, application/activity+json")
        );
        assert_eq!(header(&h, "missing"), None);
        assert!(Headers::default().iter().next().is_none());
    }

    #[test]
    fn headers_serialise_as_the_pairs_capture_files_hold() {
        // Capture files written before the compact form hold a list of
        // pairs; they must load, and new ones must read the same.
        let pairs = vec![
            ("host".to_owned(), "a.example".to_owned()),
            ("signature".to_owned(), "keyId=\"k\"".to_owned()),
        ];
        let old = serde_json::to_string(&pairs).expect("pairs");
        let h: Headers = serde_json::from_str(&old).expect("loads");
        assert_eq!(serde_json::to_string(&h).expect("serialises"), old);
        assert_eq!(h, Headers::from(pairs));
    }
}
