//! What the steps of `fedilab verify` report, as types: one [`Evidence`]
//! per probe. Pod steps print them as JSON lines (the Ruby scripts in
//! `scripts/`), parsed by [`Evidence::from_log`]; host steps build them
//! directly. Missing fields take their defaults (a script that printed
//! less is judged on what it printed).
//!
//! Plain data; the judgment is `evaluate`'s.

use serde::{Deserialize, Serialize};

/// One probe's result, tagged by `probe` as the scripts print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "probe", rename_all = "snake_case")]
pub enum Evidence {
    /// `egress.rb`: TCP to a public address (must not connect).
    BlockedTcp(Reach),
    /// `egress.rb`: a DNS query to a public resolver (must not answer).
    BlockedDns(Reach),
    /// `egress.rb`: TCP to another instance's Service (must connect).
    AllowedTcp(Reach),
    /// `names.rb`: an instance host resolved inside the cluster.
    Resolve(InClusterLookup),
    /// `trust.rb`: HTTPS to an instance with one trust bundle.
    Https(HttpsProbe),
    /// The host side: an instance host asked of the embedded DNS.
    HostDns(HostLookup),
    /// The host side: what the inspector recorded of one activity.
    Inspector(InspectorRecords),
    /// `federation.rb`: one step of the round trip. The script prints
    /// these without `probe` (`{"step": "follow", "ok": true, ...}`).
    RoundTrip(RoundTripStep),
}

/// A line as a script prints it: a probe, or a round-trip step.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Probe(Evidence),
    Step(RoundTripStep),
}

impl Evidence {
    /// The evidence in a log: every line that is a JSON object of a known
    /// probe (or a round-trip step). Other lines (Ruby's warnings) are
    /// skipped.
    pub fn from_log(log: &str) -> Vec<Evidence> {
        log.lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .filter_map(|l| match serde_json::from_str::<Line>(l).ok()? {
                Line::Probe(e) => Some(e),
                Line::Step(s) => Some(Evidence::RoundTrip(s)),
            })
            .collect()
    }
}

/// A connection attempt of the egress check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reach {
    /// `host:port`.
    pub target: String,
    /// It connected (TCP) or answered (DNS).
    pub connected: bool,
    /// What happened, in words.
    pub detail: String,
}

/// A lookup inside the cluster (Ruby's `Resolv::DNS`, as Mastodon does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InClusterLookup {
    /// The instance host.
    pub host: String,
    /// The addresses found.
    pub addresses: Vec<String>,
    /// Traefik's ClusterIP; empty when the cluster has none.
    pub expected: String,
    /// What happened, in words.
    pub detail: String,
}

/// Which trust bundle an HTTPS probe used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bundle {
    /// The lab trust bundle (`SSL_CERT_FILE`): must verify.
    #[default]
    Lab,
    /// The image's system bundle: must fail verification.
    System,
}

impl Bundle {
    /// `lab` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bundle::Lab => "lab",
            Bundle::System => "system",
        }
    }
}

/// An HTTPS request to an instance's WebFinger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpsProbe {
    /// The instance host.
    pub host: String,
    /// The bundle used.
    pub bundle: Bundle,
    /// The bundle's path in the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The HTTP status; `None` when there was no answer.
    pub status: Option<u16>,
    /// The TLS handshake failed certificate verification.
    pub verify_error: bool,
    /// What happened, in words.
    pub detail: String,
}

/// An A query to the embedded DNS, from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostLookup {
    /// The instance host.
    pub host: String,
    /// The DNS server asked (`127.0.0.1:5300`).
    pub server: String,
    /// The addresses found.
    pub addresses: Vec<String>,
    /// What happened, in words.
    pub detail: String,
}

/// The inspector's inbox POSTs of one activity type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InspectorRecords {
    /// The activity asked for (`Follow`).
    pub activity: String,
    /// What the inspector listed (empty when it could not be asked).
    pub exchanges: Vec<RecordedExchange>,
    /// Why the inspector could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One exchange as the inspector summarised it (the fields of its
/// `ExchangeSummary` that the judgment reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedExchange {
    /// The inspector's id.
    pub id: u64,
    /// The receiving host.
    pub host: String,
    /// The sending instance.
    pub from: Option<String>,
    /// The classification (`inbox_post`).
    pub kind: String,
    /// `Follow`, `Accept(Follow)`, `Create(Note)`.
    pub activity: Option<String>,
    /// The response status.
    pub status: Option<u16>,
    /// The signature verdict (`valid`).
    pub verdict: String,
    /// The signature problems.
    pub problems: Vec<RecordedProblem>,
}

/// A signature problem the inspector found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedProblem {
    /// The code (`bad_signature`).
    pub code: String,
}

/// One step of the federation round trip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundTripStep {
    /// `env`, `resolve`, `follow`, `approve` (only when B held the follow
    /// as a request), `accepted`, `post`, `delivered`.
    pub step: String,
    /// The step succeeded.
    pub ok: bool,
    /// The API's HTTP status (0 when there was no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    /// What happened, in words.
    #[serde(default)]
    pub detail: String,
    /// How long the step waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// `resolve`: the account looked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `env`: A's kind (`mastodon`, `misskey`, `gotosocial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_kind: Option<String>,
    /// `env`: B's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_kind: Option<String>,
    /// `env`: the pod's `ALLOWED_PRIVATE_ADDRESSES` (a Mastodon A only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_private_addresses: Option<String>,
    /// `post`: the status's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_parse_into_probes_and_round_trip_steps() {
        let log = [
            "warning: something Ruby said",
            r#"{"probe":"blocked_tcp","target":"1.1.1.1:443","connected":false,"detail":"d"}"#,
            r#"{"step":"accepted","ok":true,"seconds":1.5,"detail":"following"}"#,
            r#"{"probe":"no_such_probe","target":"x"}"#,
            r#"{"step":"truncated"#,
        ]
        .join("\n");
        let evidence = Evidence::from_log(&log);
        assert_eq!(
            evidence,
            [
                Evidence::BlockedTcp(Reach {
                    target: "1.1.1.1:443".into(),
                    connected: false,
                    detail: "d".into(),
                }),
                Evidence::RoundTrip(RoundTripStep {
                    step: "accepted".into(),
                    ok: true,
                    seconds: Some(1.5),
                    detail: "following".into(),
                    ..RoundTripStep::default()
                }),
            ]
        );
        let again: Vec<String> = evidence
            .iter()
            .map(|e| serde_json::to_string(e).expect("json"))
            .collect();
        assert_eq!(Evidence::from_log(&again.join("\n")), evidence);
    }
}
