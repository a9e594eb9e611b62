//! The checks of `fedilab verify`, as data, and the judgment of their
//! results. Pure: no cluster, no network, no files.
//!
//! ```text
//! plan(&LabSpec, &PlanInputs) -> VerifyPlan    what runs where, what is expected
//! evaluate(&Check, &[StepOutput]) -> CheckResult   pass / fail / skipped, evidence, likely cause
//! ```
//!
//! Four checks: **egress** (public addresses unreachable from a lab pod,
//! another instance's Service reachable), **names** (every instance host
//! resolves to Traefik inside the cluster and to the node on the host),
//! **trust** (HTTPS to every instance verifies with the lab trust bundle and
//! not without it), **federation** (a follow, an accept and a post travel
//! between two instances, one round trip per ordered pair of server kinds,
//! each side driven through its own API, and the inspector saw them signed).
//!
//! Pod steps run a small Ruby script from `scripts/` in the instance's own
//! Mastodon image (stdlib only); a federation pair whose A is not Mastodon
//! runs its script as a client in a Mastodon image (GoToSocial's image has
//! no scripting runtime). Each prints one JSON line per probe,
//! parsed into [`Evidence`] ([`StepOutput::from_log`]), which [`evaluate`]
//! reads. Host steps (a DNS query to the embedded DNS, queries to the
//! inspector's API) are run by the caller, which reports their results as
//! [`Evidence`] directly ([`StepOutput::found`]). `fedilab-orchestrator` runs a
//! plan; the CLI prints it (`--plan`) and the results.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

mod evaluate;
mod evidence;
mod plan;

pub use evaluate::{CheckResult, Outcome, StepOutput, StepStatus, VerifyReport, evaluate};
pub use evidence::{
    Bundle, Evidence, HostLookup, HttpsProbe, InClusterLookup, InspectorRecords, Reach,
    RecordedExchange, RecordedProblem, RoundTripStep,
};
pub use plan::{
    Cause, Check, CheckId, EnvSource, EnvVar, FEDERATION_ACTIVITIES, HostDnsStep, HostSide,
    InspectorQuery, InspectorStep, PlanInputs, PodStep, Script, Step, StepRun, VerifyPlan, pair_of,
    plan,
};
