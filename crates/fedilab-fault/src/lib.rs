//! The shape of an inspector fault rule: what it matches ([`Match`]: host,
//! sender, method, path prefix, activity type, a probability, a count, a
//! time window), the one action it applies ([`Action`]), the whole rule
//! ([`RuleSpec`], `{"match": {...}, "action": {...}}` in JSON and YAML),
//! its validation ([`RuleSpec::check`]) and its compact `key=value,...`
//! form.
//!
//! Shared by the inspector (which applies rules: `fedilab_inspector::fault`)
//! and the lab profile (whose `inspector.faults` are rules), so a rule has
//! one definition and one validation. Pure data: no I/O, no clock, no
//! matching of requests.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a rule matches. Every field that is set must match; none set
/// matches every request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The target host (`mastodon2.fediverse.local`, or just `mastodon2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The sending instance, as the list's `from` shows it (the
    /// signature's keyId host, else the actor's, else the User-Agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The method (`POST`), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A prefix of the request path (`/users/bob/inbox`, `/inbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The activity: `Create` matches `Create(Note)`; `Accept(Follow)`
    /// matches only that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// The chance (0 to 1) that a matching request is affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Seeds the rule's random draws, so a run can be repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Affect at most this many requests, then stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Affect requests for this many seconds from the rule's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
}

/// Which part an action's `corrupt` breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Corrupt {
    /// One letter of the body changes case (same length, still JSON): the
    /// digest no longer matches.
    Body,
    /// One character of the signature value changes: it no longer verifies.
    Signature,
}

/// What a rule does; exactly one of `delay_ms`, `status`, `reset`,
/// `corrupt`, `duplicate` is set (`body` and `retry_after` go with
/// `status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Wait this long, then forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Answer with this status without forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The body of the `status` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The `Retry-After` of the `status` answer, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Close the connection without answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
    /// Forward, but break the body or the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<Corrupt>,
    /// Forward, then deliver the same request a second time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// A rule as posted: `{"match": {...}, "action": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// What it matches.
    #[serde(default, rename = "match")]
    pub matcher: Match,
    /// What it does.
    pub action: Action,
}

/// Why a rule was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    /// Not one action (none, or several).
    #[error(
        "a rule needs exactly one action of delay_ms, status, reset, corrupt, duplicate (found {0})"
    )]
    Actions(usize),
    /// `body` or `retry_after` without `status`.
    #[error("body and retry_after go with status")]
    StatusExtras,
    /// A status code outside 100..=599.
    #[error("status {0} is not an HTTP status code")]
    Status(u16),
    /// `reset: false` or `duplicate: false`.
    #[error("{0} must be true")]
    False(&'static str),
    /// A probability outside 0..=1.
    #[error("probability {0} is not between 0 and 1")]
    Probability(f64),
    /// The compact `key=value,...` form did not parse.
    #[error("{0}")]
    Syntax(String),
}

impl RuleError {
    /// The field of the rule the error is about, as a path below the rule
    /// (`action`, `action.status`, `match.probability`); `""` for the
    /// compact form's syntax errors.
    pub fn field(&self) -> &'static str {
        match self {
            RuleError::Actions(_) | RuleError::StatusExtras => "action",
            RuleError::Status(_) => "action.status",
            RuleError::False("reset") => "action.reset",
            RuleError::False(_) => "action.duplicate",
            RuleError::Probability(_) => "match.probability",
            RuleError::Syntax(_) => "",
        }
    }
}

impl RuleSpec {
    /// Checks that the rule can be applied: exactly one action, `body` and
    /// `retry_after` only with `status`, a status code in 100..=599, a
    /// probability in 0..=1, `reset` and `duplicate` only as `true`.
    ///
    /// # Errors
    /// The first [`RuleError`] found, in that order.
    pub fn check(&self) -> Result<(), RuleError> {
        let a = &self.action;
        let set = [
            a.delay_ms.is_some(),
            a.status.is_some(),
            a.reset.is_some(),
            a.corrupt.is_some(),
            a.duplicate.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            return Err(RuleError::Actions(set));
        }
        if a.status.is_none() && (a.body.is_some() || a.retry_after.is_some()) {
            return Err(RuleError::StatusExtras);
        }
        if let Some(p) = self.matcher.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(RuleError::Probability(p));
        }
        if let Some(code) = a.status
            && !(100..=599).contains(&code)
        {
            return Err(RuleError::Status(code));
        }
        if a.reset == Some(false) {
            return Err(RuleError::False("reset"));
        }
        if a.duplicate == Some(false) {
            return Err(RuleError::False("duplicate"));
        }
        Ok(())
    }

    /// Whether the action needs the request body (a corrupted body, a
    /// duplicate).
    pub fn acts_on_body(&self) -> bool {
        self.action.corrupt == Some(Corrupt::Body) || self.action.duplicate.is_some()
    }

    /// Whether matching needs the analysis of the request (the sender or
    /// the activity).
    pub fn matches_on_body(&self) -> bool {
        self.matcher.activity.is_some() || self.matcher.from.is_some()
    }
}

impl RuleSpec {
    /// The rule in words: `status 503 when host=mastodon2 activity=Create`.
    pub fn describe(&self) -> String {
        let a = &self.action;
        let mut out = if let Some(ms) = a.delay_ms {
            format!("delay {ms} ms")
        } else if let Some(s) = a.status {
            let mut t = format!("answer {s}");
            if let Some(r) = a.retry_after {
                t.push_str(&format!(" (Retry-After {r})"));
            }
            t
        } else if a.reset.is_some() {
            "reset".to_owned()
        } else if let Some(c) = a.corrupt {
            match c {
                Corrupt::Body => "corrupt the body".to_owned(),
                Corrupt::Signature => "corrupt the signature".to_owned(),
            }
        } else {
            "deliver twice".to_owned()
        };
        let m = &self.matcher;
        let mut when = Vec::new();
        let mut field = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                when.push(format!("{k}={v}"));
            }
        };
        field("host", m.host.clone());
        field("from", m.from.clone());
        field("method", m.method.clone());
        field("path_prefix", m.path_prefix.clone());
        field("activity", m.activity.clone());
        field("probability", m.probability.map(|p| p.to_string()));
        field("count", m.count.map(|c| c.to_string()));
        field("for_seconds", m.for_seconds.map(|c| c.to_string()));
        if when.is_empty() {
            out.push_str(" for every request");
        } else {
            out.push_str(" when ");
            out.push_str(&when.join(" "));
        }
        out
    }
}

/// The compact form: JSON (`{"match":...,"action":...}`) or comma-separated
/// `key=value` pairs whose keys are the match and action fields
/// (`host=mastodon2,activity=Accept(Follow),status=503`); `reset` and
/// `duplicate` need no value.
impl FromStr for RuleSpec {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        let s = s.trim();
        if s.starts_with('{') {
            let spec: RuleSpec =
                serde_json::from_str(s).map_err(|e| RuleError::Syntax(e.to_string()))?;
            spec.check()?;
            return Ok(spec);
        }
        let mut spec = RuleSpec::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = key.trim().replace('-', "_");
            let value = value.trim();
            let text = || Some(value.to_owned());
            let num = |what: &str| {
                value.parse::<u64>().map_err(|_| {
                    RuleError::Syntax(format!("{what}={value:?} is not a whole number"))
                })
            };
            let m = &mut spec.matcher;
            let a = &mut spec.action;
            match key.as_str() {
                "host" => m.host = text(),
                "from" => m.from = text(),
                "method" => m.method = text(),
                "path_prefix" | "path" => m.path_prefix = text(),
                "activity" => m.activity = text(),
                "probability" => {
                    m.probability = Some(value.parse().map_err(|_| {
                        RuleError::Syntax(format!("probability={value:?} is not a number"))
                    })?);
                }
                "seed" => m.seed = Some(num("seed")?),
                "count" => m.count = Some(num("count")?),
                "for_seconds" | "for" => m.for_seconds = Some(num("for_seconds")?),
                "delay_ms" | "delay" => a.delay_ms = Some(num("delay_ms")?),
                "status" => {
                    let n = num("status")?;
                    a.status = Some(u16::try_from(n).map_err(|_| RuleError::Status(u16::MAX))?);
                }
                "body" => a.body = text(),
                "retry_after" => a.retry_after = Some(num("retry_after")?),
                "reset" => a.reset = Some(true),
                "duplicate" => a.duplicate = Some(true),
                "corrupt" => {
                    a.corrupt = Some(match value {
                        "body" => Corrupt::Body,
                        "signature" => Corrupt::Signature,
                        _ => {
                            return Err(RuleError::Syntax(format!(
                                "corrupt={value:?}: say body or signature"
                            )));
                        }
                    });
                }
                other => {
                    return Err(RuleError::Syntax(format!(
                        "unknown rule field {other:?} (host, from, method, path_prefix, activity, \
                         probability, seed, count, for_seconds, delay_ms, status, body, \
                         retry_after, reset, corrupt, duplicate)"
                    )));
                }
            }
        }
        spec.check()?;
        Ok(spec)
    }
}

/// Whether `host` is the host a rule names as `want` (its `host` or
/// `from`): the same name, or its first label (`mastodon2` is
/// `mastodon2.fediverse.local`, `mastodon22.fediverse.local` is not);
/// case and a trailing dot do not count.
pub fn host_is(host: &str, want: &str) -> bool {
    let want = want.trim().trim_end_matches('.');
    host.eq_ignore_ascii_case(want)
        || (host.len() > want.len()
            && host.as_bytes().get(want.len()) == Some(&b'.')
            && host
                .get(..want.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(want)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_form_reads_like_the_json() {
        let compact: RuleSpec =
            "host=mastodon2, activity=Accept(Follow), status=503, retry-after=30"
                .parse()
                .expect("compact");
        let json: RuleSpec = r#"{"match":{"host":"mastodon2","activity":"Accept(Follow)"},"action":{"status":503,"retry_after":30}}"#
            .parse()
            .expect("json");
        assert_eq!(compact, json);
        assert!("reset".parse::<RuleSpec>().is_ok());
        assert_eq!(
            "status=503,reset".parse::<RuleSpec>(),
            Err(RuleError::Actions(2))
        );
        assert_eq!("host=x".parse::<RuleSpec>(), Err(RuleError::Actions(0)));
        assert!("corrupt=headers".parse::<RuleSpec>().is_err());
        assert!("probability=1.5,reset".parse::<RuleSpec>().is_err());
        assert!("colour=red,reset".parse::<RuleSpec>().is_err());
        assert_eq!("status=99".parse::<RuleSpec>(), Err(RuleError::Status(99)));
    }

    #[test]
    fn check_names_what_is_wrong() {
        let rule = |json: &str| serde_json::from_str::<RuleSpec>(json).expect("shape");
        let cases = [
            (r#"{"action":{}}"#, RuleError::Actions(0)),
            (
                r#"{"action":{"delay_ms":5,"reset":true}}"#,
                RuleError::Actions(2),
            ),
            (
                r#"{"action":{"delay_ms":5,"body":"x"}}"#,
                RuleError::StatusExtras,
            ),
            (r#"{"action":{"status":600}}"#, RuleError::Status(600)),
            (r#"{"action":{"reset":false}}"#, RuleError::False("reset")),
            (
                r#"{"action":{"duplicate":false}}"#,
                RuleError::False("duplicate"),
            ),
            (
                r#"{"match":{"probability":-0.5},"action":{"reset":true}}"#,
                RuleError::Probability(-0.5),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(rule(json).check(), Err(want), "{json}");
        }
        for good in [
            r#"{"action":{"status":503,"body":"busy","retry_after":30}}"#,
            r#"{"match":{"probability":1},"action":{"corrupt":"signature"}}"#,
            r#"{"action":{"duplicate":true}}"#,
        ] {
            assert_eq!(rule(good).check(), Ok(()), "{good}");
        }
    }

    #[test]
    fn the_schema_names_the_json_fields() {
        let schema = serde_json::to_value(schemars::schema_for!(RuleSpec)).expect("schema");
        let text = schema.to_string();
        for field in [
            "match",
            "action",
            "path_prefix",
            "delay_ms",
            "retry_after",
            "for_seconds",
        ] {
            assert!(text.contains(&format!("\"{field}\"")), "{field} in {text}");
        }
        assert_eq!(schema["required"], serde_json::json!(["action"]));
    }
    #[test]
    fn names_match_whole_or_by_their_first_label() {
        assert!(host_is("mastodon2.fediverse.local", "mastodon2"));
        assert!(host_is(
            "mastodon2.fediverse.local",
            "Mastodon2.fediverse.local."
        ));
        assert!(!host_is("mastodon22.fediverse.local", "mastodon2"));
        assert!(!host_is("mastodon2.fediverse.local", "fediverse"));
    }
}
