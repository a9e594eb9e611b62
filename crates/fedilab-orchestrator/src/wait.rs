//! Waits until every instance of a lab works, phase by phase (database,
//! setup Job, services), with a time budget per phase. Polls the lab's
//! StatefulSets, Deployments, Jobs and Pods (four list requests per round,
//! whatever the number of instances) and judges them with the pure
//! predicates of [`crate::readiness`]; a pod whose image cannot be pulled
//! ends the wait at once. Reports progress through [`Progress`]; never
//! prints.

use std::collections::BTreeMap;
use std::time::Duration;

use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceKind, InstanceName, LabSpec};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::time::Instant;

use crate::Cluster;
use crate::diagnose::{Diagnosis, diagnose};
use crate::readiness::{
    ImagePullFailure, InstanceObjects, InstanceProgress, Phase, instance_progress,
    instance_pull_failure,
};

/// Time budgets and the polling pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// For PostgreSQL and Redis (includes pulling their images).
    pub database: Duration,
    /// For the setup Job (includes pulling the Mastodon image, ~1 GB).
    pub setup: Duration,
    /// For web, streaming and Sidekiq after setup.
    pub services: Duration,
    /// Pause between two rounds of polling.
    pub poll_interval: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            database: Duration::from_secs(10 * 60),
            setup: Duration::from_secs(15 * 60),
            services: Duration::from_secs(10 * 60),
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl WaitOptions {
    /// The budget of `phase`.
    pub fn budget(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Database => self.database,
            Phase::Setup => self.setup,
            Phase::Services => self.services,
        }
    }
}

/// Receives progress; the CLI draws bars or prints lines.
pub trait Progress: Send + Sync {
    /// `instance` moved to `progress` (called once per change).
    fn update(&self, instance: &InstanceName, progress: &InstanceProgress);
}

impl Progress for () {
    fn update(&self, _: &InstanceName, _: &InstanceProgress) {}
}

/// How long each instance took per phase.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WaitReport {
    /// Per instance, per phase, the time spent in it.
    pub phases: BTreeMap<String, Vec<(Phase, Duration)>>,
    /// Polling rounds.
    pub rounds: u64,
}

/// Why the lab did not come up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The setup Job gave up.
    #[error(
        "{instance}: the setup Job failed ({reason}).\n{diagnosis}\
         Fix the cause (often: the database was not reachable, or the image could not be \
         pulled), then run `fedilab up` again: it replaces a failed setup Job. \
         `kubectl -n {namespace} logs job/{instance}-setup` shows the whole log"
    )]
    SetupFailed {
        /// The instance.
        instance: InstanceName,
        /// The lab's namespace.
        namespace: String,
        /// The Job's reason and message.
        reason: String,
        /// Pods, events, logs.
        diagnosis: Diagnosis,
    },
    /// A phase ran out of time.
    #[error(
        "{instance}: still {waiting} after {}s ({} budget).\n{diagnosis}\
         Image pulls on a slow link take long: run `fedilab up` again to keep waiting \
         (it changes nothing that is already there), or give more time with \
         --timeout-{phase_name}. `kubectl -n {namespace} get pods` shows every pod",
        waited.as_secs(), phase_name
    )]
    Timeout {
        /// The instance.
        instance: InstanceName,
        /// The lab's namespace.
        namespace: String,
        /// The phase.
        phase: Phase,
        /// `--timeout-<phase>`.
        phase_name: &'static str,
        /// What it was waiting for.
        waiting: &'static str,
        /// How long it waited.
        waited: Duration,
        /// Pods, events, logs.
        diagnosis: Diagnosis,
    },
    /// A pod's image cannot be pulled: waiting longer does not help.
    #[error(
        "{instance}: the node cannot pull {image} for {pod} ({reason}{detail}).\n\
         If the tag is wrong, choose a Mastodon release that exists with `version:` in the \
         profile (`mastodon.version` for every instance, `instances[].version` for one; \
         releases: https://github.com/mastodon/mastodon/releases), then run `fedilab up` \
         again. If the node cannot reach the registry, fix that and run `fedilab up` again. \
         `kubectl -n {namespace} describe pod {pod}` shows the kubelet's attempts",
        image = failure.image,
        pod = failure.pod,
        reason = failure.reason,
        detail = if failure.message.is_empty() { String::new() } else { format!(": {}", failure.message) }
    )]
    ImagePull {
        /// The instance.
        instance: InstanceName,
        /// The lab's namespace.
        namespace: String,
        /// The pod, container, image and the kubelet's message.
        failure: ImagePullFailure,
    },
    /// Polling failed.
    #[error("cannot read the lab's workloads: {0}; run `fedilab up` again to keep waiting")]
    Api(#[source] kube::Error),
}

struct Snapshot {
    statefulsets: BTreeMap<String, StatefulSet>,
    deployments: BTreeMap<String, Deployment>,
    jobs: BTreeMap<String, Job>,
    pods: Vec<Pod>,
}

fn by_name<K: kube::Resource>(items: Vec<K>) -> BTreeMap<String, K> {
    items
        .into_iter()
        .filter_map(|o| o.meta().name.clone().map(|n| (n, o)))
        .collect()
}

impl Snapshot {
    async fn read(cluster: &Cluster, spec: &LabSpec) -> Result<Snapshot, kube::Error> {
        let ns = names::namespace(&spec.name);
        let lp = ListParams::default().labels(&names::lab_selector(&spec.name));
        let client = &cluster.client;
        let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await?;
        let deployments = Api::<Deployment>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await?;
        let jobs = Api::<Job>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await?;
        let pods = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await?;
        Ok(Snapshot {
            statefulsets: by_name(statefulsets.items),
            deployments: by_name(deployments.items),
            jobs: by_name(jobs.items),
            pods: pods.items,
        })
    }

    /// The first pod of `instance` whose image cannot be pulled.
    fn image_pull_failure(&self, instance: &InstanceName) -> Option<ImagePullFailure> {
        instance_pull_failure(&self.pods, instance)
    }

    fn instance(&self, instance: &InstanceName, kind: InstanceKind) -> InstanceObjects<'_> {
        let name = |c| names::component_object(instance, c);
        InstanceObjects {
            runs: Some(names::components_of(kind)),
            postgres: self.statefulsets.get(&name(Component::Postgres)),
            redis: self.deployments.get(&name(Component::Redis)),
            setup: self.jobs.get(&name(Component::Setup)),
            web: self.deployments.get(&name(Component::Web)),
            streaming: self.deployments.get(&name(Component::Streaming)),
            sidekiq: self.deployments.get(&name(Component::Sidekiq)),
        }
    }
}

/// Per instance: its current progress and when it entered it.
struct Tracker {
    progress: InstanceProgress,
    since: Instant,
    phases: Vec<(Phase, Duration)>,
}

/// Waits until every instance of `spec` is ready.
///
/// # Errors
/// [`WaitError::ImagePull`] as soon as a pod of the lab waits for an image
/// the node cannot pull (`ErrImagePull`, `ImagePullBackOff`),
/// [`WaitError::SetupFailed`] as soon as a setup Job gives up,
/// [`WaitError::Timeout`] when an instance stays in a phase longer than its
/// budget, both with the failing pods' events and log tails.
///
/// # Caveats
/// Bounded by the phase budgets of `options` (plus one poll interval and the
/// diagnosis requests).
pub async fn wait_ready(
    cluster: &Cluster,
    spec: &LabSpec,
    options: &WaitOptions,
    progress: &dyn Progress,
) -> Result<WaitReport, WaitError> {
    let namespace = names::namespace(&spec.name);
    let mut trackers: BTreeMap<InstanceName, Tracker> = BTreeMap::new();
    let mut report = WaitReport::default();
    loop {
        report.rounds += 1;
        let snapshot = Snapshot::read(cluster, spec)
            .await
            .map_err(WaitError::Api)?;
        let now = Instant::now();
        let mut all_ready = true;
        // External instances run nothing in the cluster: nothing to wait for.
        let in_cluster = spec.instances.iter().filter(|i| i.kind.runs_in_cluster());
        for instance in in_cluster {
            let objects = snapshot.instance(&instance.name, instance.kind.kind());
            let current = instance_progress(&objects);
            let tracker = trackers.entry(instance.name.clone()).or_insert_with(|| {
                progress.update(&instance.name, &current);
                Tracker {
                    progress: current.clone(),
                    since: now,
                    phases: Vec::new(),
                }
            });
            if tracker.progress != current {
                if let InstanceProgress::Waiting { phase } = tracker.progress {
                    tracker.phases.push((phase, now - tracker.since));
                }
                tracker.progress = current.clone();
                tracker.since = now;
                progress.update(&instance.name, &current);
            }
            if let Some(failure) = snapshot.image_pull_failure(&instance.name) {
                return Err(WaitError::ImagePull {
                    instance: instance.name.clone(),
                    namespace,
                    failure,
                });
            }
            match &current {
                InstanceProgress::Ready => {}
                InstanceProgress::Failed { reason, .. } => {
                    let diagnosis =
                        diagnose(cluster, &spec.name, &instance.name, Component::Setup).await;
                    return Err(WaitError::SetupFailed {
                        instance: instance.name.clone(),
                        namespace,
                        reason: reason.clone(),
                        diagnosis,
                    });
                }
                InstanceProgress::Waiting { phase } => {
                    all_ready = false;
                    let waited = now - tracker.since;
                    if waited > options.budget(*phase) {
                        let component = objects
                            .pending_in(*phase)
                            .first()
                            .copied()
                            .unwrap_or(Component::Web);
                        let diagnosis =
                            diagnose(cluster, &spec.name, &instance.name, component).await;
                        return Err(WaitError::Timeout {
                            instance: instance.name.clone(),
                            namespace,
                            phase: *phase,
                            phase_name: phase.as_str(),
                            waiting: phase.waiting_for(),
                            waited,
                            diagnosis,
                        });
                    }
                }
            }
        }
        if all_ready {
            report.phases = trackers
                .into_iter()
                .map(|(name, t)| (name.to_string(), t.phases))
                .collect();
            return Ok(report);
        }
        tokio::time::sleep(options.poll_interval).await;
    }
}
