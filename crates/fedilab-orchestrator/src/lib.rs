//! Puts a lab on a cluster, waits until it works, and takes it away again.
//!
//! ```text
//! connect(&ConnectOptions)                      kubeconfig like kubectl -> Cluster
//! cluster_facts(&Cluster)                       cluster domain, IPv6 networks -> ClusterFacts
//! preflight(&Cluster, &LabSpec, &LabManifests)  reachable, k3s, CRDs, memory, domain
//! apply(&Cluster, &LabSpec, &LabManifests, &Preflight)    server-side apply, in waves
//! wait_ready(&Cluster, &LabSpec, &WaitOptions, &dyn Progress)   per instance and phase
//! status / down / credentials                   by the lab's labels
//! instance_upstreams / attach / detach          the inspector's routes, host servers
//! verify(&Cluster, &LabSpec, &VerifyPlan, ..)  check pods + host queries -> VerifyReport
//! exec::exec / exec::exec_capture               a command in an instance's pod -> exit code
//! backup::*                                     pg_dump / pg_restore / tar streamed over exec
//! snapshot::reset_instance / save_instance ..    fedilab-data's snapshot plans through exec
//! ```
//!
//! Pure parts (kubeconfig choice, readiness predicates, capacity sums, the
//! bootstrap plan, CoreDNS key checks) are plain functions with their own
//! tests; everything that talks to the API server takes a [`Cluster`], whose
//! client a test can point at a fake API server. The crate never prints:
//! progress goes through [`Progress`], results come back as values.
//! It never re-validates the profile: a [`fedilab_profile::LabSpec`] is
//! valid by construction.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

mod apply;
pub mod backup;
pub mod bootstrap;
mod cluster;
mod coredns;
mod creds;
mod diagnose;
pub mod exec;
mod kubeconfig;
mod member;
mod metrics;
mod preflight;
pub mod readiness;
mod resources;
mod rollout;
pub mod snapshot;
mod status;
mod teardown;
mod verify;
mod wait;

pub use apply::{AppliedObject, ApplyError, ApplyReport, MAX_IN_FLIGHT, Outcome, Wave, apply};
pub use cluster::{Cluster, ConnectError, ConnectOptions, cluster_from_config, connect};
pub use coredns::{
    CoreDnsWait, ZoneConflict, cluster_domain_from_corefile, coredns_zones, domain_conflicts,
    ipv6_networks, rollout_state,
};
pub use creds::{
    CredsError, InstanceCredentials, credentials_from_cluster, credentials_from_state,
    select_instance,
};
pub use diagnose::{
    ComponentObjects, ContainerLog, Diagnosis, LogRequest, PodDiagnosis, PodObjects, logs_to_read,
    pods_to_diagnose, summarize_component,
};
pub use exec::{Captured, ExecError, ExecIo, ExecOptions, ExecPod, ExecTarget, exec_capture};
pub use kubeconfig::{K3S_KUBECONFIG, KubeconfigSource, choose_kubeconfig};
pub use member::{MemberError, attach, detach, instance_upstreams, upstreams_from_services};
pub use metrics::{CountLayer, CountService, PhaseTiming, RequestCounter, Timings, WaveTiming};
pub use preflight::{
    Capacity, NodeSummary, Preflight, PreflightError, PreflightOptions, PreflightWarning,
    cluster_facts, lab_memory_requests, node_address, parse_quantity, preflight, reachable,
};
pub use resources::{ResourceError, ResourceMap};
pub use snapshot::{
    InstanceOutcome, PhaseTime, SnapshotError, StateOptions, StateProgress, StateTarget,
};
pub use status::{
    InstancePhase, InstanceStatus, LabObjectStatus, LabObjects, LabStatus, StatusError,
    fetch_lab_objects, list_labs, status, summarize,
};
pub use teardown::{
    DownError, DownOptions, DownReport, LabRemnants, RemovedObject, down, plan_down,
};
pub use verify::{CHECK_CONTAINER, VerifyError, VerifyOptions, VerifyRun, verify};
pub use wait::{Progress, WaitError, WaitOptions, WaitReport, wait_ready};
