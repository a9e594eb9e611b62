//! The JSON API's documents as types: what the UI listener sends (built by
//! `view` from a record and its analysis) and what readers such as the
//! `client` module and `fedilab verify` parse. `API.md` documents every
//! field here; a test checks that it names them all.
//!
//! Plain data (serde both ways); no I/O, no analysis.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::analysis::{Analysis, KeySource, Kind, Verdict, Verification};
use crate::config::ServerKind;
use crate::exchange::{Headers, Marks, UpgradeRecord};
use crate::fault::RuleView;
use crate::signature::{Problem, Scheme};
use crate::store::StoreStats;

/// `GET /api/exchanges`: the exchanges the filters select, in request-start
/// order (`started_us`, ties by id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeList {
    /// One summary per exchange.
    pub exchanges: Vec<ExchangeSummary>,
    /// The highest id listed (the next poll's `after`), if any; not
    /// necessarily the last entry's, which is the latest to start.
    pub last_id: Option<u64>,
    /// The store's counters and limits.
    pub stats: StoreStats,
}

/// One exchange as the list and the `exchange` events show it.
///
/// `U` is what `upgrade` holds: in a summary whether the exchange was a
/// connection upgrade (WebSocket); in an [`ExchangeDetail`] its byte
/// counts, or `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeSummary<U = bool> {
    /// Increasing, never reused (also across restarts with persistence).
    pub id: u64,
    /// When the request arrived: RFC 3339 with milliseconds.
    pub started: String,
    /// The target host.
    pub host: String,
    /// The sending instance: the signature's keyId host, else the
    /// activity's actor host, else the `+https://host/` in the User-Agent.
    pub from: Option<String>,
    /// The client address (`10.42.0.15:40112`).
    pub client: Option<String>,
    /// The method (`POST`).
    pub method: String,
    /// Path and query as sent.
    pub uri: String,
    /// The response status; `null` when there was no response.
    pub status: Option<u16>,
    /// The classification.
    pub kind: Kind,
    /// Server-to-server traffic.
    pub federation: bool,
    /// `Create(Note)`, `Undo(Like)`, `Follow`; for a fetch, the fetched
    /// object's type.
    pub activity: Option<String>,
    /// What an implementation's extension adds (`reaction 👍`, `quote of
    /// URL`), or `refused unsigned (401): …` for a fetch a server refused
    /// without a signature.
    #[serde(default)]
    pub detail: Option<String>,
    /// The activity's actor (or the fetched object's).
    pub actor: Option<String>,
    /// The object's id.
    pub object: Option<String>,
    /// The request's signature, if any.
    pub signature: Option<SignatureSummary>,
    /// The signature verdict.
    pub verdict: Verdict,
    /// Where the verdict's key came from: `watched` (an actor document
    /// that crossed the proxy), `fetched`, `cache`; `null` when no key was
    /// used.
    #[serde(default)]
    pub key_source: Option<KeySource>,
    /// Every problem, most severe first.
    pub problems: Vec<Problem>,
    /// Request body bytes that crossed the proxy.
    pub request_size: u64,
    /// Response body bytes that crossed the proxy.
    pub response_size: Option<u64>,
    /// The response's `Content-Type`.
    pub content_type: Option<String>,
    /// From the request's arrival to the response's end.
    pub duration_ms: f64,
    /// See the type's documentation.
    pub upgrade: U,
    /// Why the exchange failed (upstream down, a peer went away).
    pub error: Option<String>,
    /// When the request arrived, in microseconds since the Unix epoch (ids
    /// follow completion; order by this for arrival).
    #[serde(default)]
    pub started_us: i64,
    /// `fault`, `replay_of`, `edited`: what the inspector did with it.
    #[serde(flatten)]
    pub marks: Marks,
}

/// The signature as a summary shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureSummary {
    /// Which standard.
    pub scheme: Scheme,
    /// `keyId` / `keyid`.
    pub key_id: Option<String>,
    /// The algorithm as written (`rsa-sha256`, `hs2019`, ...).
    pub algorithm: Option<String>,
}

/// `GET /api/exchanges/{id}`: a summary (with `upgrade` as byte counts)
/// plus everything recorded and found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDetail {
    /// The summary's fields.
    #[serde(flatten)]
    pub summary: ExchangeSummary<Option<UpgradeRecord>>,
    /// The URL the client asked for (scheme from `X-Forwarded-Proto`).
    pub url: String,
    /// The upstream it went to (`http://10.43.12.7:3000`).
    pub upstream: Option<String>,
    /// The request as received.
    pub request: RequestView,
    /// The response as received, if any.
    pub response: Option<ResponseView>,
    /// The ActivityPub view and the signature parsed without the key.
    pub analysis: Analysis,
    /// The signature checked with the actor's key.
    pub verification: Verification,
    /// Timings.
    pub timings: Timings,
    /// A curl command that replays the request.
    pub curl: String,
}

/// A request in an [`ExchangeDetail`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestView {
    /// The method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// `HTTP/1.1` and the like.
    pub version: String,
    /// `[name, value]` pairs in the order received, names in lower case.
    pub headers: Headers,
    /// The body.
    pub body: BodyView,
}

/// A response in an [`ExchangeDetail`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseView {
    /// The status.
    pub status: u16,
    /// `HTTP/1.1` and the like.
    pub version: String,
    /// `[name, value]` pairs in the order received.
    pub headers: Headers,
    /// The body.
    pub body: BodyView,
}

/// A body, decoded for display.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BodyView {
    /// Bytes that crossed the proxy.
    pub size: u64,
    /// Bytes captured (at most the capture limit).
    pub captured: usize,
    /// The capture is shorter than the body.
    pub truncated: bool,
    /// False when the stream ended early.
    pub complete: bool,
    /// The `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// Bytes after decoding.
    pub decoded_size: usize,
    /// Why decoding failed, if it did.
    pub decode_error: Option<String>,
    /// The decoded body, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The decoded body parsed, when it is also JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// The decoded body in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

/// When the response arrived, in microseconds since the request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// The response head.
    pub headers_us: Option<u64>,
    /// The end of the response (or of the upgraded connection).
    pub total_us: u64,
}

/// `GET /api/stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// The store's counters and limits.
    pub stats: StoreStats,
    /// Every routed host, sorted.
    pub hosts: Vec<String>,
    /// Where the proxy listens.
    pub proxy: String,
}

/// `GET /api/servers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerList {
    /// Sorted by host.
    pub servers: Vec<ServerView>,
}

/// One routed host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// The host.
    pub host: String,
    /// What runs behind it.
    pub kind: ServerKind,
    /// Its upstreams, longest path prefix first.
    pub upstreams: Vec<UpstreamView>,
}

/// One upstream of a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamView {
    /// `/`, or a prefix such as `/api/v1/streaming`.
    pub path_prefix: String,
    /// `http://host:port`.
    pub url: String,
}

/// The body of a `404` (and other errors).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

/// `GET /api/faults`: the rules and the timeline of changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultList {
    /// Every rule, oldest first.
    pub rules: Vec<RuleView>,
    /// Rule changes, oldest first (the last 1000).
    pub changes: Vec<FaultChange>,
}

/// One change of the fault rules, a marker in the UI's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultChange {
    /// Increasing.
    pub seq: u64,
    /// When (RFC 3339 with milliseconds).
    pub at: String,
    /// When, in microseconds since the Unix epoch.
    pub at_us: i64,
    /// `added`, `removed` or `cleared`.
    pub change: String,
    /// The rule, when one rule changed.
    pub rule: Option<u64>,
    /// The change in words (`rule 2 added: status 503 when host=mastodon2`).
    pub text: String,
}

/// `POST /api/exchanges/{id}/replay`'s optional body: what to change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The new body: a string is sent as is, other JSON as its text.
    #[serde(default)]
    pub body: Option<Value>,
    /// Headers to set (a string) or remove (`null`).
    #[serde(default)]
    pub headers: serde_json::Map<String, Value>,
}

/// The answer to a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayAnswer {
    /// The new exchange.
    pub id: u64,
    /// The exchange it re-sent.
    pub replay_of: u64,
    /// Whether the body or headers were changed.
    pub edited: bool,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
}
