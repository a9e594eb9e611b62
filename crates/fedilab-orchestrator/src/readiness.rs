//! When is a lab ready? Pure predicates over the objects as the API server
//! returns them (`None`: not there yet), and the phase of one instance
//! derived from its objects. No I/O: tests feed YAML fixtures.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};

fn generation_observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(g), Some(o)) => o >= g,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// A Deployment whose current generation has rolled out: every replica
/// updated and available, no old replicas left (as `kubectl rollout status`
/// judges it).
pub fn is_deployment_available(deployment: Option<&Deployment>) -> bool {
    let Some(d) = deployment else { return false };
    let Some(status) = &d.status else {
        return false;
    };
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    generation_observed(d.metadata.generation, status.observed_generation)
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.replicas.unwrap_or(0) <= status.updated_replicas.unwrap_or(0)
        && status.available_replicas.unwrap_or(0) >= wanted
}

/// A StatefulSet whose current revision has every replica ready.
pub fn is_statefulset_ready(statefulset: Option<&StatefulSet>) -> bool {
    let Some(s) = statefulset else { return false };
    let Some(status) = &s.status else {
        return false;
    };
    let wanted = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let same_revision = match (&status.current_revision, &status.update_revision) {
        (Some(current), Some(update)) => current == update,
        _ => true,
    };
    generation_observed(s.metadata.generation, status.observed_generation)
        && status.ready_replicas.unwrap_or(0) >= wanted
        && same_revision
}

/// Where a Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not created yet.
    Missing,
    /// Created, not finished.
    Running,
    /// Succeeded.
    Complete,
    /// Gave up: no more retries.
    Failed {
        /// The condition's reason, such as `BackoffLimitExceeded`.
        reason: String,
        /// The condition's message.
        message: String,
    },
}

/// The state of a Job from its conditions (and, for servers that set no
/// condition yet, from its failure count against its backoff limit).
pub fn job_state(job: Option<&Job>) -> JobState {
    let Some(job) = job else {
        return JobState::Missing;
    };
    let Some(status) = &job.status else {
        return JobState::Running;
    };
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return JobState::Complete,
            "Failed" => {
                return JobState::Failed {
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                };
            }
            _ => {}
        }
    }
    let limit = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
    let failed = status.failed.unwrap_or(0);
    if failed > limit {
        return JobState::Failed {
            reason: "BackoffLimitExceeded".to_owned(),
            message: format!("{failed} pods failed (backoff limit {limit})"),
        };
    }
    JobState::Running
}

/// A Job that succeeded.
pub fn is_job_complete(job: Option<&Job>) -> bool {
    job_state(job) == JobState::Complete
}

/// A Job that gave up.
pub fn is_job_failed(job: Option<&Job>) -> bool {
    matches!(job_state(job), JobState::Failed { .. })
}

/// A pod whose containers are all ready.
pub fn is_pod_ready(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The waiting reasons of a container whose image cannot be pulled.
pub const IMAGE_PULL_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// A container of a pod that waits for an image the node cannot pull.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImagePullFailure {
    /// The pod's name.
    pub pod: String,
    /// The container (init containers included).
    pub container: String,
    /// The image reference, as in the pod spec (`repository:tag`).
    pub image: String,
    /// `ErrImagePull`, `ImagePullBackOff`, ...
    pub reason: String,
    /// The kubelet's message (the registry's answer), may be empty.
    pub message: String,
}

/// The first container of `pod` (init containers first) that waits
/// because its image cannot be pulled. The image comes from the pod spec
/// (the status may only hold a resolved digest), else from the status.
pub fn image_pull_failure(pod: Option<&Pod>) -> Option<ImagePullFailure> {
    let pod = pod?;
    let status = pod.status.as_ref()?;
    let spec = pod.spec.as_ref();
    let spec_image = |name: &str| {
        spec.into_iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .find(|c| c.name == name)
            .and_then(|c| c.image.clone())
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            IMAGE_PULL_REASONS
                .contains(&reason)
                .then(|| ImagePullFailure {
                    pod: pod.metadata.name.clone().unwrap_or_default(),
                    container: c.name.clone(),
                    image: spec_image(&c.name).unwrap_or_else(|| c.image.clone()),
                    reason: reason.to_owned(),
                    message: waiting.message.clone().unwrap_or_default(),
                })
        })
}

/// The first pod of `instance` (by its `fedilab.dev/instance` label) in
/// `pods` whose image cannot be pulled. Pure.
pub fn instance_pull_failure(
    pods: &[Pod],
    instance: &fedilab_profile::InstanceName,
) -> Option<ImagePullFailure> {
    pods.iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(fedilab_profile::names::INSTANCE_KEY))
                .is_some_and(|v| v == instance.as_str())
        })
        .find_map(|p| image_pull_failure(Some(p)))
}

/// A node that reports Ready.
pub fn is_node_ready(node: Option<&Node>) -> bool {
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The phases an instance goes through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// PostgreSQL ready and Redis available.
    Database,
    /// The setup Job (schema, seeds, admin account, API token) complete.
    Setup,
    /// Web, streaming and Sidekiq available.
    Services,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 3] = [Phase::Database, Phase::Setup, Phase::Services];

    /// What the phase waits for, for progress lines.
    pub fn waiting_for(self) -> &'static str {
        match self {
            Phase::Database => "waiting for PostgreSQL and Redis",
            Phase::Setup => "waiting for the setup Job (database, admin account)",
            Phase::Services => "waiting for web, streaming and Sidekiq",
        }
    }

    /// The phase's name, as in `--timeout-<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Database => "database",
            Phase::Setup => "setup",
            Phase::Services => "services",
        }
    }
}

/// Where an instance is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum InstanceProgress {
    /// Waiting for a phase to finish.
    Waiting {
        /// The phase.
        phase: Phase,
    },
    /// Every phase done.
    Ready,
    /// The setup Job gave up.
    Failed {
        /// The phase that failed.
        phase: Phase,
        /// Why.
        reason: String,
    },
}

/// One instance's workloads, as found on the cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstanceObjects<'a> {
    /// `<instance>-postgres`.
    pub postgres: Option<&'a StatefulSet>,
    /// `<instance>-redis`.
    pub redis: Option<&'a Deployment>,
    /// `<instance>-setup`.
    pub setup: Option<&'a Job>,
    /// `<instance>-web`.
    pub web: Option<&'a Deployment>,
    /// `<instance>-streaming`.
    pub streaming: Option<&'a Deployment>,
    /// `<instance>-sidekiq`.
    pub sidekiq: Option<&'a Deployment>,
    /// The components the instance's kind runs
    /// ([`fedilab_profile::names::components_of`]); `None` waits for all
    /// (Mastodon's). The others are never waited for.
    pub runs: Option<&'static [fedilab_profile::names::Component]>,
}

impl InstanceObjects<'_> {
    /// The workload names of a phase that are not ready yet, as
    /// component names.
    pub fn pending_in(&self, phase: Phase) -> Vec<fedilab_profile::names::Component> {
        use fedilab_profile::names::Component;
        let mut out = Vec::new();
        let mut push = |c: Component| {
            if self.runs.is_none_or(|runs| runs.contains(&c)) {
                out.push(c);
            }
        };
        match phase {
            Phase::Database => {
                if !is_statefulset_ready(self.postgres) {
                    push(Component::Postgres);
                }
                if !is_deployment_available(self.redis) {
                    push(Component::Redis);
                }
            }
            Phase::Setup => {
                if !is_job_complete(self.setup) {
                    push(Component::Setup);
                }
            }
            Phase::Services => {
                for (c, d) in [
                    (Component::Web, self.web),
                    (Component::Streaming, self.streaming),
                    (Component::Sidekiq, self.sidekiq),
                ] {
                    if !is_deployment_available(d) {
                        push(c);
                    }
                }
            }
        }
        out
    }
}

/// The first phase whose objects are not ready, `Ready` when none is left,
/// `Failed` when the setup Job gave up.
pub fn instance_progress(objects: &InstanceObjects<'_>) -> InstanceProgress {
    if let JobState::Failed { reason, message } = job_state(objects.setup) {
        return InstanceProgress::Failed {
            phase: Phase::Setup,
            reason: if message.is_empty() {
                reason
            } else {
                format!("{reason}: {message}")
            },
        };
    }
    for phase in Phase::ALL {
        if !objects.pending_in(phase).is_empty() {
            return InstanceProgress::Waiting { phase };
        }
    }
    InstanceProgress::Ready
}
