//! Judging a check from what its steps reported: each step's
//! [`Evidence`] (parsed from a pod's log, or built by the runner for host
//! steps). A check fails when anything it expects is missing, and names
//! the likely cause from its plan.

use serde::{Deserialize, Serialize};

use crate::evidence::{
    Bundle, Evidence, HostLookup, HttpsProbe, InClusterLookup, InspectorRecords, Reach,
    RoundTripStep,
};
use crate::plan::{Check, CheckId, HostDnsStep, InspectorStep, PodStep, Step, StepRun};

/// What one step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutput {
    /// The step's id ([`Step::id`]).
    pub step: String,
    /// How it ended.
    pub status: StepStatus,
    /// What a pod printed (JSON lines of evidence, and whatever else Ruby
    /// said); empty for host steps.
    pub log: String,
    /// What the step found: the log's evidence for a pod step, built
    /// directly by a host step.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

impl StepOutput {
    /// A pod step's output: its evidence is parsed from `log`.
    pub fn from_log(step: impl Into<String>, status: StepStatus, log: impl Into<String>) -> Self {
        let log = log.into();
        StepOutput {
            step: step.into(),
            status,
            evidence: Evidence::from_log(&log),
            log,
        }
    }

    /// A host step that ran: what it found.
    pub fn found(step: impl Into<String>, evidence: Vec<Evidence>) -> Self {
        StepOutput {
            step: step.into(),
            status: StepStatus::Completed { exit_code: 0 },
            log: String::new(),
            evidence,
        }
    }

    /// A step that could not run, and why.
    pub fn not_run(step: impl Into<String>, reason: impl Into<String>) -> Self {
        StepOutput {
            step: step.into(),
            status: StepStatus::NotRun {
                reason: reason.into(),
            },
            log: String::new(),
            evidence: Vec::new(),
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// It ran to the end (a pod's container exit code; 0 for host steps).
    Completed {
        /// The exit code.
        exit_code: i32,
    },
    /// It did not finish in time.
    TimedOut {
        /// The time it had.
        seconds: u64,
    },
    /// It could not run.
    NotRun {
        /// Why.
        reason: String,
    },
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything expected was seen.
    Pass,
    /// Something expected was not.
    Fail,
    /// The check does not apply to this lab.
    Skipped,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The check.
    pub id: CheckId,
    /// Its title.
    pub title: String,
    /// The verdict.
    pub outcome: Outcome,
    /// What was seen, one line per probe.
    pub evidence: Vec<String>,
    /// For a failure, the likely causes; for a skipped check, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

/// Every check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The lab.
    pub lab: String,
    /// One result per check, in plan order.
    pub checks: Vec<CheckResult>,
}

impl VerifyReport {
    /// Whether no check failed (skipped checks do not fail).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }
}

/// Evidence and the causes found so far.
struct Judgment<'a> {
    check: &'a Check,
    evidence: Vec<String>,
    causes: Vec<String>,
}

impl Judgment<'_> {
    fn fail(&mut self, code: &str, detail: Option<String>) {
        let text = self.check.cause(code);
        let text = match detail {
            Some(d) if text.is_empty() => d,
            Some(d) => format!("{d}: {text}"),
            None => text,
        };
        if !self.causes.contains(&text) {
            self.causes.push(text);
        }
    }

    fn see(&mut self, line: String) {
        self.evidence.push(line);
    }
}

/// The evidence of one kind: `pick` returns it for the variants wanted.
fn all<'a, T: 'a>(
    evidence: &'a [Evidence],
    pick: impl Fn(&'a Evidence) -> Option<&'a T>,
) -> impl Iterator<Item = &'a T> {
    evidence.iter().filter_map(pick)
}

fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Judges `check` from its steps' outputs.
pub fn evaluate(check: &Check, outputs: &[StepOutput]) -> CheckResult {
    let mut j = Judgment {
        check,
        evidence: Vec::new(),
        causes: Vec::new(),
    };
    if let Some(reason) = &check.skipped {
        return CheckResult {
            id: check.id,
            title: check.title.clone(),
            outcome: Outcome::Skipped,
            evidence: Vec::new(),
            explanation: Some(reason.clone()),
        };
    }
    // Each pod step's success, by id: an inspector step is consulted only
    // when the round trip it checks completed.
    let mut pods_ok: Vec<(&str, bool)> = Vec::new();
    for step in &check.steps {
        let Some(output) = outputs.iter().find(|o| o.step == step.id) else {
            j.see(format!("{}: no output", step.id));
            j.fail(
                "script_failed",
                Some(format!("step {} did not report", step.id)),
            );
            continue;
        };
        match &step.run {
            StepRun::Pod(pod) => {
                let ok = judge_pod(&mut j, step, pod, output);
                pods_ok.push((&step.id, ok));
            }
            StepRun::HostDns(dns) => judge_host_dns(&mut j, dns, output),
            StepRun::Inspector(inspector) => {
                let completed = match &inspector.round_trip {
                    Some(id) => pods_ok.iter().any(|(s, ok)| s == id && *ok),
                    None => pods_ok.iter().all(|(_, ok)| *ok),
                };
                if completed {
                    judge_inspector(&mut j, inspector, output);
                } else {
                    let which = inspector
                        .round_trip
                        .as_deref()
                        .map(|id| format!(" ({})", pair_of(id)))
                        .unwrap_or_default();
                    j.see(format!(
                        "inspector{which}: not consulted, the round trip did not complete"
                    ));
                }
            }
        }
    }
    for note in &check.notes {
        j.see(format!("note: {note}"));
    }
    let failed = !j.causes.is_empty();
    CheckResult {
        id: check.id,
        title: check.title.clone(),
        outcome: if failed { Outcome::Fail } else { Outcome::Pass },
        evidence: j.evidence,
        explanation: failed.then(|| j.causes.join("\n")),
    }
}

/// Returns whether the pod ran and its script reported everything.
fn judge_pod(j: &mut Judgment<'_>, step: &Step, pod: &PodStep, output: &StepOutput) -> bool {
    let where_ = format!("{}/{}", pod.namespace, pod.pod);
    match &output.status {
        StepStatus::NotRun { reason } => {
            j.see(format!("{}: not run: {reason}", step.id));
            j.fail("pod_not_run", Some(format!("{where_}: {reason}")));
            return false;
        }
        StepStatus::TimedOut { seconds } => {
            j.see(format!("{}: no result after {seconds}s", step.id));
            for e in &output.evidence {
                let line = serde_json::to_string(e).unwrap_or_default();
                j.see(format!("{}: partial: {line}", step.id));
            }
            j.fail("pod_timed_out", Some(where_));
            return false;
        }
        StepStatus::Completed { .. } => {}
    }
    let evidence = &output.evidence;
    let before = j.causes.len();
    match pod.script {
        crate::Script::Egress => judge_egress(j, pod, evidence),
        crate::Script::Names => judge_names(j, pod, evidence),
        crate::Script::Trust => judge_trust(j, pod, evidence),
        crate::Script::Federation => judge_federation(j, &pair_of(&step.id), evidence),
    }
    let exit_code = match output.status {
        StepStatus::Completed { exit_code } => exit_code,
        _ => 0,
    };
    if exit_code != 0 {
        j.see(format!(
            "{}: exit code {exit_code}: {}",
            step.id,
            last_lines(&output.log, 5)
        ));
        if j.causes.len() == before {
            j.fail("script_failed", Some(where_));
        }
    }
    j.causes.len() == before && exit_code == 0
}

fn judge_egress(j: &mut Judgment<'_>, pod: &PodStep, evidence: &[Evidence]) {
    let targets = |var: &str| -> Vec<String> {
        pod.env_value(var)
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    };
    // The probe that reports on each variable's targets.
    fn reach<'a>(var: &str, e: &'a Evidence) -> Option<&'a Reach> {
        match (var, e) {
            ("FEDILAB_BLOCKED_TCP", Evidence::BlockedTcp(r))
            | ("FEDILAB_BLOCKED_DNS", Evidence::BlockedDns(r))
            | ("FEDILAB_ALLOWED_TCP", Evidence::AllowedTcp(r)) => Some(r),
            _ => None,
        }
    }
    for (var, must_connect, kind) in [
        ("FEDILAB_BLOCKED_TCP", false, "TCP to"),
        ("FEDILAB_BLOCKED_DNS", false, "DNS query to"),
        ("FEDILAB_ALLOWED_TCP", true, "TCP to"),
    ] {
        for target in targets(var) {
            let what = format!("{kind} {target}");
            let Some(reach) = evidence
                .iter()
                .filter_map(|e| reach(var, e))
                .find(|r| r.target == target)
            else {
                j.see(format!("{what}: no result"));
                j.fail("script_failed", Some(format!("no result for {what}")));
                continue;
            };
            let ok = reach.connected == must_connect;
            j.see(format!(
                "{} {what}: {}",
                if ok { "ok" } else { "FAILED" },
                reach.detail
            ));
            if !ok && must_connect {
                j.fail("lab_unreachable", Some(format!("{what} failed")));
            } else if !ok {
                j.fail(
                    "network_policy_not_enforced",
                    Some(format!("{what} succeeded from a lab pod")),
                );
            }
        }
    }
}

fn judge_names(j: &mut Judgment<'_>, pod: &PodStep, evidence: &[Evidence]) {
    let hosts = pod.env_value("FEDILAB_HOSTS").unwrap_or("");
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        let found = all(evidence, |e| match e {
            Evidence::Resolve(l) => Some(l),
            _ => None,
        })
        .find(|l: &&InClusterLookup| l.host == host);
        let Some(lookup) = found else {
            j.see(format!("{host} (in the cluster): no result"));
            j.fail(
                "script_failed",
                Some(format!("no lookup result for {host}")),
            );
            continue;
        };
        let expected = lookup.expected.as_str();
        let addresses = &lookup.addresses;
        let ok = !expected.is_empty() && addresses.iter().any(|a| a == expected);
        j.see(format!(
            "{} {host} in the cluster: {} (Traefik: {})",
            if ok { "ok" } else { "FAILED" },
            lookup.detail,
            if expected.is_empty() { "?" } else { expected }
        ));
        if expected.is_empty() {
            j.fail("traefik_missing", None);
        } else if addresses.is_empty() {
            j.fail(
                "coredns_not_serving",
                Some(format!("{host} does not resolve")),
            );
        } else if !ok {
            j.fail(
                "coredns_wrong_answer",
                Some(format!(
                    "{host} resolves to {}, not Traefik's {expected}",
                    addresses.join(", ")
                )),
            );
        }
    }
}

fn judge_trust(j: &mut Judgment<'_>, pod: &PodStep, evidence: &[Evidence]) {
    let hosts = pod.env_value("FEDILAB_HOSTS").unwrap_or("");
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        for bundle in [Bundle::Lab, Bundle::System] {
            let name = bundle.as_str();
            let found = all(evidence, |e| match e {
                Evidence::Https(p) => Some(p),
                _ => None,
            })
            .find(|p: &&HttpsProbe| p.host == host && p.bundle == bundle);
            let Some(probe) = found else {
                j.see(format!("{host} ({name} bundle): no result"));
                j.fail("script_failed", Some(format!("no HTTPS result for {host}")));
                continue;
            };
            let answered = probe.status.is_some();
            let verify_error = probe.verify_error;
            let ok = match bundle {
                Bundle::Lab => answered,
                Bundle::System => verify_error,
            };
            j.see(format!(
                "{} {} -> {host} with the {name} bundle: {}",
                if ok { "ok" } else { "FAILED" },
                pod.instance,
                probe.detail
            ));
            match (bundle, ok, verify_error) {
                (_, true, _) => {}
                (Bundle::Lab, false, true) => j.fail(
                    "ca_not_in_bundle",
                    Some(format!(
                        "{host}'s certificate does not verify with the lab bundle"
                    )),
                ),
                (Bundle::System, false, false) if answered => j.fail(
                    "trusted_without_lab_ca",
                    Some(format!(
                        "{host}'s certificate verifies with the system bundle"
                    )),
                ),
                _ => j.fail(
                    "instance_unreachable",
                    Some(format!("{host}: {}", probe.detail)),
                ),
            }
        }
    }
}

/// The pair a federation step id names (`mastodon1 -> misskey1`); the id
/// itself when it names none.
fn pair_of(step_id: &str) -> String {
    crate::plan::pair_of(step_id).unwrap_or_else(|| step_id.to_owned())
}

/// Judges one pair's round trip; every line and cause names the pair.
fn judge_federation(j: &mut Judgment<'_>, pair: &str, evidence: &[Evidence]) {
    let steps = || {
        all(evidence, |e| match e {
            Evidence::RoundTrip(s) => Some(s),
            _ => None,
        })
    };
    // Only a Mastodon A reports its ALLOWED_PRIVATE_ADDRESSES.
    let allowed = steps()
        .find(|s: &&RoundTripStep| s.step == "env")
        .and_then(|s| s.allowed_private_addresses.clone());
    if let Some(allowed) = &allowed {
        j.see(format!(
            "{pair}: ALLOWED_PRIVATE_ADDRESSES={}",
            if allowed.is_empty() {
                "(unset)"
            } else {
                allowed
            }
        ));
    }
    // `approve` appears only when B held the follow as a request.
    for step in [
        "resolve",
        "follow",
        "approve",
        "accepted",
        "post",
        "delivered",
    ] {
        let Some(line) = steps().find(|s: &&RoundTripStep| s.step == step) else {
            if step == "approve" {
                continue;
            }
            j.see(format!("{pair}: {step}: not reached"));
            j.fail(
                "script_failed",
                Some(format!("{pair}: the round trip stopped before {step}")),
            );
            return;
        };
        let ok = line.ok;
        let mut seen = format!(
            "{pair}: {} {step}: {}",
            if ok { "ok" } else { "FAILED" },
            line.detail
        );
        if let Some(s) = line.seconds {
            seen.push_str(&format!(" ({s}s)"));
        }
        j.see(seen);
        if ok {
            continue;
        }
        let status = line.status.unwrap_or(0);
        let detail = line.detail.as_str();
        if status == 401 || status == 403 {
            j.fail(
                "token_rejected",
                Some(format!("{pair}: {step}: HTTP {status}")),
            );
        } else if allowed.as_deref().is_some_and(str::is_empty)
            || detail.contains("PrivateNetworkAddress")
        {
            j.fail(
                "private_addresses_refused",
                Some(format!(
                    "{pair}: {step} failed with ALLOWED_PRIVATE_ADDRESSES unset"
                )),
            );
        } else if step == "resolve" {
            j.fail(
                "private_addresses_refused",
                Some(format!(
                    "{pair}: A could not fetch {} ({detail}); if names and trust pass, A \
                     refused the address",
                    line.account.as_deref().unwrap_or("")
                )),
            );
        } else if step == "accepted" || step == "delivered" {
            j.fail("not_delivered", Some(format!("{pair}: {step}: {detail}")));
        } else {
            j.fail("script_failed", Some(format!("{pair}: {step}: {detail}")));
        }
        return;
    }
}

fn judge_inspector(j: &mut Judgment<'_>, step: &InspectorStep, output: &StepOutput) {
    if let StepStatus::NotRun { reason } = &output.status {
        j.see(format!("inspector: not queried: {reason}"));
        j.fail("serve_not_running", Some(reason.clone()));
        return;
    }
    for query in &step.queries {
        let found = all(&output.evidence, |e| match e {
            Evidence::Inspector(r) => Some(r),
            _ => None,
        })
        .find(|r: &&InspectorRecords| r.activity == query.activity);
        let Some(records) = found else {
            j.see(format!("inspector {}: no result", query.activity));
            j.fail(
                "script_failed",
                Some(format!("no inspector result for {}", query.activity)),
            );
            continue;
        };
        if let Some(error) = &records.error {
            j.see(format!("FAILED inspector {}: {error}", query.activity));
            j.fail("serve_not_running", Some(error.clone()));
            continue;
        }
        let matching: Vec<_> = records
            .exchanges
            .iter()
            .filter(|x| {
                x.kind == "inbox_post"
                    && x.host == query.to
                    && x.activity
                        .as_deref()
                        .unwrap_or("")
                        .starts_with(&query.activity)
            })
            .collect();
        let valid = matching.iter().filter(|x| x.verdict == "valid").count();
        let what = format!("{} {} -> {}", query.activity, query.from, query.to);
        if valid > 0 {
            j.see(format!(
                "ok inspector: {what}: {valid} recorded with a valid signature"
            ));
        } else if matching.is_empty() {
            j.see(format!("FAILED inspector: {what}: not recorded"));
            j.fail("inspector_bypassed", Some(format!("no {what} recorded")));
        } else {
            let verdicts: Vec<String> = matching
                .iter()
                .map(|x| {
                    let problems: Vec<&str> = x.problems.iter().map(|p| p.code.as_str()).collect();
                    format!("#{} {} {}", x.id, x.verdict, problems.join(","))
                })
                .collect();
            j.see(format!("FAILED inspector: {what}: {}", verdicts.join("; ")));
            j.fail(
                "bad_signature",
                Some(format!("{what}: {}", verdicts.join("; "))),
            );
        }
    }
}

fn judge_host_dns(j: &mut Judgment<'_>, step: &HostDnsStep, output: &StepOutput) {
    if let StepStatus::NotRun { reason } = &output.status {
        j.see(format!("host DNS: not queried: {reason}"));
        j.fail("serve_not_running", Some(reason.clone()));
        return;
    }
    let expected = step.expected.map(|a| a.to_string());
    for host in &step.hosts {
        let found = all(&output.evidence, |e| match e {
            Evidence::HostDns(l) => Some(l),
            _ => None,
        })
        .find(|l: &&HostLookup| &l.host == host);
        let Some(lookup) = found else {
            j.see(format!("{host} on the host: no result"));
            j.fail(
                "script_failed",
                Some(format!("no host DNS result for {host}")),
            );
            continue;
        };
        let addresses = &lookup.addresses;
        let ok = match &expected {
            Some(e) => addresses.contains(e),
            None => !addresses.is_empty(),
        };
        j.see(format!(
            "{} {host} on the host: {} (node: {})",
            if ok { "ok" } else { "FAILED" },
            lookup.detail,
            expected.as_deref().unwrap_or("unknown")
        ));
        if addresses.is_empty() {
            j.fail(
                "serve_not_running",
                Some(format!("{host}: {}", lookup.detail)),
            );
        } else if !ok {
            j.fail(
                "host_dns_wrong_answer",
                Some(format!("{host} answers {}", addresses.join(", "))),
            );
        }
    }
}
