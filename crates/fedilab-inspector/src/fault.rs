//! Fault rules as the proxy applies them: the live rule set the proxy
//! consults, each rule's counters, window and random draws, and how a
//! rule's head and body match a request. The rule's shape (what it
//! matches, its one action: delay, a local status, a connection reset, a
//! corrupted body or signature, a duplicate delivery), its validation and
//! its compact form are `fedilab_fault`'s, re-exported here, so the lab
//! profile shares them.
//!
//! The proxy asks [`Faults::any`] (one relaxed atomic load) before anything
//! else, so with no rules loaded the hot path does nothing more. Matching
//! on the activity or the sender needs the request body; the proxy buffers
//! it only when a rule whose head matches needs it. This
//! module does no I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

pub use fedilab_fault::{Action, Corrupt, Match, RuleError, RuleSpec, host_is};

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

/// The effect of a valid rule.
///
/// # Errors
/// [`RuleError`] naming what is wrong ([`RuleSpec::check`]).
pub(crate) fn effect(spec: &RuleSpec) -> Result<Effect, RuleError> {
    spec.check()?;
    let a = &spec.action;
    if let Some(ms) = a.delay_ms {
        return Ok(Effect::Delay(Duration::from_millis(ms)));
    }
    if let Some(code) = a.status {
        let status = http::StatusCode::from_u16(code).map_err(|_| RuleError::Status(code))?;
        return Ok(Effect::Status {
            status,
            body: a.body.clone(),
            retry_after: a.retry_after,
        });
    }
    if a.reset.is_some() {
        return Ok(Effect::Reset);
    }
    if let Some(c) = a.corrupt {
        return Ok(Effect::Corrupt(c));
    }
    Ok(Effect::Duplicate)
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
        let effect = effect(&spec)?;
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
    fn activities_match_by_their_outer_type() {
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
