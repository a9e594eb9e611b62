//! Fault rules: what a rule matches (host, sender, method, path prefix,
//! activity type, a probability, a count, a time window), the one action
//! it applies (delay, a local status, a connection reset, a corrupted body
//! or signature, a duplicate delivery), and the live rule set the proxy
//! consults.
//!
//! The proxy asks [`Faults::any`] (one relaxed atomic load) before anything
//! else, so with no rules loaded the hot path does nothing more. Matching
//! on the activity or the sender needs the request body; the proxy buffers
//! it only when a rule whose head matches needs it. This
//! module does no I/O.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// What a rule matches. Every field that is set must match; none set
/// matches every request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

/// Which part [`Action::corrupt`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// The action as the proxy applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Delay(Duration),
    Status {
        status: http::StatusCode,
        body: Option<String>,
        retry_after: Option<u64>,
    },
    Reset,
    Corrupt(Corrupt),
    Duplicate,
}

/// A rule as posted: `{"match": {...}, "action": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

impl RuleSpec {
    /// The effect of a valid rule.
    ///
    /// # Errors
    /// [`RuleError`] naming what is wrong.
    pub(crate) fn effect(&self) -> Result<Effect, RuleError> {
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
        if let Some(ms) = a.delay_ms {
            return Ok(Effect::Delay(Duration::from_millis(ms)));
        }
        if let Some(code) = a.status {
            let status = http::StatusCode::from_u16(code)
                .ok()
                .filter(|s| (100..=599).contains(&s.as_u16()))
                .ok_or(RuleError::Status(code))?;
            return Ok(Effect::Status {
                status,
                body: a.body.clone(),
                retry_after: a.retry_after,
            });
        }
        if let Some(r) = a.reset {
            return if r {
                Ok(Effect::Reset)
            } else {
                Err(RuleError::False("reset"))
            };
        }
        if let Some(c) = a.corrupt {
            return Ok(Effect::Corrupt(c));
        }
        if a.duplicate == Some(true) {
            Ok(Effect::Duplicate)
        } else {
            Err(RuleError::False("duplicate"))
        }
    }

    /// Whether the action needs the request body (a corrupted body, a
    /// duplicate).
    pub(crate) fn acts_on_body(&self) -> bool {
        self.action.corrupt == Some(Corrupt::Body) || self.action.duplicate.is_some()
    }

    /// Whether matching needs the analysis of the request (the sender or
    /// the activity).
    pub(crate) fn matches_on_body(&self) -> bool {
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
            spec.effect()?;
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
        spec.effect()?;
        Ok(spec)
    }
}

/// A loaded rule, as `GET /api/faults` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// The rule's id.
    pub id: u64,
    /// What it matches.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// What it does.
    pub action: Action,
    /// When it was added (RFC 3339).
    pub created: String,
    /// How many requests it affected so far.
    pub applied: u64,
    /// False once its count is used up or its window has passed.
    pub active: bool,
}

/// The mark an affected exchange carries: which rule, and its action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultMark {
    /// The rule's id.
    pub rule: u64,
    /// Its action.
    pub action: Action,
}

/// One rule with its counters.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: u64,
    pub(crate) spec: RuleSpec,
    pub(crate) effect: Effect,
    created: Instant,
    created_text: String,
    applied: AtomicU64,
    rng: AtomicU64,
}

impl Rule {
    fn view(&self, now: Instant) -> RuleView {
        RuleView {
            id: self.id,
            matcher: self.spec.matcher.clone(),
            action: self.spec.action.clone(),
            created: self.created_text.clone(),
            applied: self.applied.load(Ordering::Relaxed),
            active: self.active(now),
        }
    }

    fn active(&self, now: Instant) -> bool {
        let m = &self.spec.matcher;
        let in_window = m
            .for_seconds
            .is_none_or(|s| now.saturating_duration_since(self.created) < Duration::from_secs(s));
        let left = m
            .count
            .is_none_or(|c| self.applied.load(Ordering::Relaxed) < c);
        in_window && left
    }

    /// Whether the request's head matches (host, method, path).
    pub(crate) fn head_matches(&self, host: &str, method: &str, path: &str) -> bool {
        let m = &self.spec.matcher;
        m.host.as_deref().is_none_or(|h| host_is(host, h))
            && m.method
                .as_deref()
                .is_none_or(|x| x.eq_ignore_ascii_case(method))
            && m.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }

    /// Whether the sender and the activity (when the rule names them)
    /// match what the analysis of the request found.
    pub(crate) fn body_matches(&self, from: Option<&str>, activity: Option<&str>) -> bool {
        let m = &self.spec.matcher;
        m.from
            .as_deref()
            .is_none_or(|f| from.is_some_and(|s| host_is(s, f)))
            && m.activity
                .as_deref()
                .is_none_or(|want| activity.is_some_and(|a| activity_is(a, want)))
    }

    /// Draws the probability and takes one of the count; true when the
    /// rule applies to this request.
    pub(crate) fn take(&self, now: Instant) -> bool {
        let m = &self.spec.matcher;
        if m.for_seconds
            .is_some_and(|s| now.saturating_duration_since(self.created) >= Duration::from_secs(s))
        {
            return false;
        }
        if let Some(p) = m.probability
            && self.draw() >= p
        {
            return false;
        }
        match m.count {
            None => {
                self.applied.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(c) => self
                .applied
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < c).then_some(n + 1)
                })
                .is_ok(),
        }
    }

    /// A uniform draw in [0, 1) from the rule's SplitMix64 sequence.
    fn draw(&self) -> f64 {
        let state = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn mark(&self) -> FaultMark {
        FaultMark {
            rule: self.id,
            action: self.spec.action.clone(),
        }
    }
}

/// `mastodon2.fediverse.local` is `mastodon2.fediverse.local` and
/// `mastodon2`.
fn host_is(host: &str, want: &str) -> bool {
    let want = want.trim().trim_end_matches('.');
    host.eq_ignore_ascii_case(want)
        || (host.len() > want.len()
            && host.as_bytes().get(want.len()) == Some(&b'.')
            && host
                .get(..want.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(want)))
}

/// `Create(Note)` is `Create` and `Create(Note)`.
fn activity_is(name: &str, want: &str) -> bool {
    let want = want.trim();
    name.eq_ignore_ascii_case(want)
        || name
            .split_once('(')
            .is_some_and(|(outer, _)| outer.eq_ignore_ascii_case(want))
}

/// The rules in force, in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    pub(crate) rules: Vec<Arc<Rule>>,
}

/// The live rule set: read by the proxy on every request (when any rule is
/// loaded), changed by the API.
#[derive(Debug)]
pub struct Faults {
    any: AtomicBool,
    set: ArcSwap<RuleSet>,
    next_id: AtomicU64,
    /// Added to the clock that windows are measured with (tests).
    skew_ms: AtomicU64,
    /// Serialises edits (read, change, store).
    edits: std::sync::Mutex<()>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            any: AtomicBool::new(false),
            set: ArcSwap::from_pointee(RuleSet::default()),
            next_id: AtomicU64::new(1),
            skew_ms: AtomicU64::new(0),
            edits: std::sync::Mutex::new(()),
        }
    }
}

impl Faults {
    /// Whether any rule is loaded: the proxy's only cost without rules.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// The rules in force.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<RuleSet>> {
        self.set.load()
    }

    /// The clock windows are measured with.
    pub(crate) fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.skew_ms.load(Ordering::Relaxed))
    }

    /// Moves the rules' clock forward by `by`, so a test can see a window
    /// close without waiting for it.
    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skew_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn replace(&self, rules: Vec<Arc<Rule>>) {
        let any = !rules.is_empty();
        self.set.store(Arc::new(RuleSet { rules }));
        self.any.store(any, Ordering::Relaxed);
    }

    fn edit<T>(&self, f: impl FnOnce(&mut Vec<Arc<Rule>>) -> T) -> T {
        let _serial = self.edits.lock().unwrap_or_else(|e| e.into_inner());
        let mut rules = self.set.load().rules.clone();
        let out = f(&mut rules);
        self.replace(rules);
        out
    }

    /// Adds a rule; answers it with its id.
    ///
    /// # Errors
    /// [`RuleError`] when the rule is not valid.
    pub fn add(&self, spec: RuleSpec) -> Result<RuleView, RuleError> {
        let effect = spec.effect()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        let seed = spec.matcher.seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ id.rotate_left(32)
        });
        let rule = Arc::new(Rule {
            id,
            spec,
            effect,
            created: now,
            created_text: format!("{:.3}", jiff::Timestamp::now()),
            applied: AtomicU64::new(0),
            rng: AtomicU64::new(seed),
        });
        let view = rule.view(now);
        self.edit(|rules| rules.push(rule));
        Ok(view)
    }

    /// Removes the rule `id`; false when there is none.
    pub fn remove(&self, id: u64) -> bool {
        self.edit(|rules| {
            let before = rules.len();
            rules.retain(|r| r.id != id);
            rules.len() != before
        })
    }

    /// Removes every rule; answers how many there were.
    pub fn clear(&self) -> usize {
        self.edit(|rules| std::mem::take(rules).len())
    }

    /// Every rule, oldest first.
    pub fn list(&self) -> Vec<RuleView> {
        let now = self.now();
        self.set.load().rules.iter().map(|r| r.view(now)).collect()
    }
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
    fn names_match_by_their_first_label_and_activities_by_their_outer_type() {
        assert!(host_is("mastodon2.fediverse.local", "mastodon2"));
        assert!(host_is(
            "mastodon2.fediverse.local",
            "Mastodon2.fediverse.local."
        ));
        assert!(!host_is("mastodon22.fediverse.local", "mastodon2"));
        assert!(activity_is("Create(Note)", "Create"));
        assert!(activity_is("Accept(Follow)", "accept(follow)"));
        assert!(!activity_is("Accept(Follow)", "Accept(Like)"));
        assert!(!activity_is("Undo(Follow)", "Follow"));
    }

    #[test]
    fn a_seeded_rule_draws_the_same_sequence() {
        let draws = |seed| {
            let f = Faults::default();
            f.add(RuleSpec {
                matcher: Match {
                    probability: Some(0.5),
                    seed: Some(seed),
                    ..Match::default()
                },
                action: Action {
                    reset: Some(true),
                    ..Action::default()
                },
            })
            .expect("rule");
            let rule = Arc::clone(&f.load().rules[0]);
            (0..64).map(|_| rule.take(f.now())).collect::<Vec<_>>()
        };
        let a = draws(7);
        assert_eq!(a, draws(7));
        assert_ne!(a, draws(8));
        let hits = a.iter().filter(|x| **x).count();
        assert!((16..=48).contains(&hits), "{hits} of 64 at p=0.5");
    }
}
