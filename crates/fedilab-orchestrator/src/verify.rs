//! Runs a `fedilab verify` plan ([`fedilab_verify::VerifyPlan`]): creates
//! the check pods in the lab namespace (built by
//! [`fedilab_manifest::check_pod`], so they run like the instance's own
//! pods, or by [`fedilab_manifest::client_check_pod`] for a federation pair
//! whose A is not Mastodon: a client of its API in a Mastodon image, with
//! the lab trust bundle), runs the checks in parallel, waits for each pod with a time
//! budget, reads its log, runs the host steps (a DNS query to the embedded
//! DNS, queries to the inspector's API with [`fedilab_inspector::client`])
//! and judges every check with [`fedilab_verify::evaluate`]. Whatever happens (a failing check, a
//! timeout, an API error, cancellation), it deletes every check pod before
//! it returns. Never prints.

use std::future::Future;
use std::time::Duration;

use fedilab_inspector::api_types::ExchangeSummary;
use fedilab_inspector::client;
use fedilab_profile::{InstanceSpecKind, LabSpec, names};
use fedilab_verify::{
    Check, EnvSource, Evidence, HostDnsStep, HostLookup, InspectorRecords, InspectorStep, PodStep,
    RecordedExchange, RecordedProblem, StepOutput, StepRun, StepStatus, VerifyPlan, VerifyReport,
    evaluate,
};
use futures_util::future::join_all;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, Pod, SecretKeySelector, Service,
};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};

use crate::Cluster;

/// The check container's name in every check pod.
pub const CHECK_CONTAINER: &str = "check";

/// Time budgets and the polling pace of [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// How long one check pod may take from creation to exit.
    pub pod_timeout: Duration,
    /// Pause between two reads of a pod's phase.
    pub poll_interval: Duration,
    /// How long one host-side query (DNS, inspector) may take.
    pub host_timeout: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            pod_timeout: Duration::from_secs(5 * 60),
            poll_interval: Duration::from_secs(1),
            host_timeout: Duration::from_secs(5),
        }
    }
}

/// What [`verify`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyRun {
    /// Every check's result.
    pub report: VerifyReport,
    /// What each step produced, for `-v` and bug reports.
    pub outputs: Vec<StepOutput>,
    /// Check pods that could not be deleted (`kubectl delete pod` them).
    pub not_deleted: Vec<String>,
}

/// Why the checks did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Cancelled (Ctrl-C); the check pods were deleted.
    #[error("interrupted; the check pods were deleted{}", leftover_note(.not_deleted))]
    Interrupted {
        /// Pods that could not be deleted.
        not_deleted: Vec<String>,
    },
    /// The leftovers of an earlier run could not be listed or removed.
    #[error("cannot remove the check pods of an earlier run in namespace {namespace}")]
    Leftovers {
        /// The lab namespace.
        namespace: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
}

fn leftover_note(pods: &[String]) -> String {
    if pods.is_empty() {
        String::new()
    } else {
        format!(", except {} (`kubectl delete pod` them)", pods.join(", "))
    }
}

/// Runs every check of `plan` against the lab `spec` describes.
///
/// `cancel` ends the run early when it completes (pass
/// `std::future::pending()` for none); the check pods are deleted then too.
///
/// # Errors
/// [`VerifyError::Leftovers`] when the pods of an earlier run cannot be
/// removed, [`VerifyError::Interrupted`] when `cancel` fired. A check that
/// fails, a pod that cannot be created or does not finish, an unreachable
/// host side are not errors: they are failed checks in the report.
///
/// # Caveats
/// Bounded by [`VerifyOptions::pod_timeout`] per pod (pods run in
/// parallel) plus the host queries, each bounded by
/// [`VerifyOptions::host_timeout`].
pub async fn verify(
    cluster: &Cluster,
    spec: &LabSpec,
    plan: &VerifyPlan,
    options: &VerifyOptions,
    cancel: impl Future<Output = ()>,
) -> Result<VerifyRun, VerifyError> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &plan.namespace);
    remove_leftovers(&pods, spec, &plan.namespace, options.poll_interval).await?;
    let traefik_ip = traefik_cluster_ip(cluster).await;
    let runner = Runner {
        spec,
        pods: &pods,
        options,
        traefik_ip,
    };
    let all = async {
        let baseline = runner.inspector_baseline(plan).await;
        join_all(plan.checks.iter().map(|c| runner.run_check(c, baseline))).await
    };
    let finished = tokio::select! {
        outputs = all => Some(outputs),
        () = cancel => None,
    };
    let mut not_deleted = Vec::new();
    for (_, _, pod) in plan.pods() {
        match pods.delete(&pod.pod, &discard()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!("cannot delete check pod {}: {e}", pod.pod);
                not_deleted.push(format!("{}/{}", plan.namespace, pod.pod));
            }
        }
    }
    let Some(per_check) = finished else {
        return Err(VerifyError::Interrupted { not_deleted });
    };
    let checks = plan
        .checks
        .iter()
        .zip(&per_check)
        .map(|(check, outputs)| evaluate(check, outputs))
        .collect();
    Ok(VerifyRun {
        report: VerifyReport {
            lab: plan.lab.clone(),
            checks,
        },
        outputs: per_check.into_iter().flatten().collect(),
        not_deleted,
    })
}

/// Check pods are throwaway: deleted at once, no grace period.
fn discard() -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    }
}

/// How long [`remove_leftovers`] waits for an earlier run's pods to go.
const LEFTOVERS_GONE: Duration = Duration::from_secs(60);

/// Deletes check pods an interrupted run left behind and waits until they
/// are gone: the new pods have the same names.
async fn remove_leftovers(
    pods: &Api<Pod>,
    spec: &LabSpec,
    namespace: &str,
    poll: Duration,
) -> Result<(), VerifyError> {
    let err = |source| VerifyError::Leftovers {
        namespace: namespace.to_owned(),
        source,
    };
    let lp = ListParams::default().labels(&names::verify_selector(&spec.name));
    let list = pods.list(&lp).await.map_err(err)?;
    if list.items.is_empty() {
        return Ok(());
    }
    for pod in list.items {
        let Some(name) = pod.metadata.name else {
            continue;
        };
        match pods.delete(&name, &discard()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(err(e)),
        }
    }
    let gone = async {
        loop {
            match pods.list(&lp).await {
                Ok(l) if l.items.is_empty() => return,
                Ok(_) => {}
                Err(e) => tracing::debug!("listing leftover check pods: {e}"),
            }
            tokio::time::sleep(poll).await;
        }
    };
    // Still there after a minute: creating the new pods then says why.
    let _ = tokio::time::timeout(LEFTOVERS_GONE, gone).await;
    Ok(())
}

/// The ClusterIP of k3s's Traefik, or empty (the names check then says so).
async fn traefik_cluster_ip(cluster: &Cluster) -> String {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    match services.get_opt(names::TRAEFIK_SERVICE).await {
        Ok(Some(s)) => s
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| ip != "None")
            .unwrap_or_default(),
        Ok(None) => String::new(),
        Err(e) => {
            tracing::warn!("cannot read kube-system/traefik: {e}");
            String::new()
        }
    }
}

struct Runner<'a> {
    spec: &'a LabSpec,
    pods: &'a Api<Pod>,
    options: &'a VerifyOptions,
    traefik_ip: String,
}

impl Runner<'_> {
    /// Pod steps in parallel, then host steps in order.
    async fn run_check(&self, check: &Check, baseline: u64) -> Vec<StepOutput> {
        let pod_steps = check.steps.iter().filter_map(|s| match &s.run {
            StepRun::Pod(p) => Some((s, p)),
            _ => None,
        });
        let mut outputs: Vec<StepOutput> = join_all(pod_steps.map(|(step, pod)| async move {
            let (status, log) = self.run_pod(check, pod).await;
            StepOutput::from_log(step.id.clone(), status, log)
        }))
        .await;
        for step in &check.steps {
            let found = match &step.run {
                StepRun::Pod(_) => continue,
                StepRun::HostDns(dns) => self.host_dns(dns).await,
                StepRun::Inspector(inspector) => self.inspector(inspector, baseline).await,
            };
            outputs.push(match found {
                Ok(evidence) => StepOutput::found(step.id.clone(), evidence),
                Err(reason) => StepOutput::not_run(step.id.clone(), reason),
            });
        }
        outputs
    }

    fn pod_object(&self, check: &Check, step: &PodStep) -> Result<Pod, String> {
        let instance = self
            .spec
            .instance(&step.instance)
            .ok_or_else(|| format!("instance {} is not in the lab", step.instance))?;
        let env = step
            .env
            .iter()
            .map(|e| match &e.from {
                EnvSource::Value { value } => EnvVar {
                    name: e.name.clone(),
                    value: Some(value.clone()),
                    value_from: None,
                },
                EnvSource::SecretKeyRef { secret, key } => EnvVar {
                    name: e.name.clone(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.clone(),
                            key: key.clone(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                },
                EnvSource::TraefikClusterIp => EnvVar {
                    name: e.name.clone(),
                    value: Some(self.traefik_ip.clone()),
                    value_from: None,
                },
            })
            .collect();
        let container = Container {
            name: CHECK_CONTAINER.to_owned(),
            command: Some(step.command()),
            env: Some(env),
            ..Container::default()
        };
        match (&instance.kind, step.client_only) {
            (InstanceSpecKind::Mastodon(m), false) => Ok(fedilab_manifest::check_pod(
                self.spec,
                instance,
                m,
                &step.pod,
                check.id.as_str(),
                container,
            )),
            (InstanceSpecKind::External(_), _) => Err(format!(
                "instance {} is an external server: no check pod runs for it",
                step.instance
            )),
            (_, true) => Ok(fedilab_manifest::client_check_pod(
                self.spec,
                instance,
                &step.image,
                &step.pod,
                check.id.as_str(),
                container,
            )),
            (_, false) => Err(format!(
                "instance {} does not run Mastodon: its check pod must be a client",
                step.instance
            )),
        }
    }

    /// Creates the pod, waits until it ends or the budget is spent, reads
    /// its log. Deleting is the caller's job.
    async fn run_pod(&self, check: &Check, step: &PodStep) -> (StepStatus, String) {
        let pod = match self.pod_object(check, step) {
            Ok(p) => p,
            Err(reason) => return (StepStatus::NotRun { reason }, String::new()),
        };
        if let Err(e) = self.pods.create(&PostParams::default(), &pod).await {
            return (
                StepStatus::NotRun {
                    reason: format!("cannot create pod {}: {e}", step.pod),
                },
                String::new(),
            );
        }
        let waited = tokio::time::timeout(self.options.pod_timeout, async {
            loop {
                match self.pods.get_opt(&step.pod).await {
                    Ok(Some(p)) => {
                        if let Some(exit_code) = finished(&p) {
                            return Ok(exit_code);
                        }
                    }
                    Ok(None) => return Err(format!("pod {} disappeared", step.pod)),
                    Err(e) => tracing::debug!("reading pod {}: {e}", step.pod),
                }
                tokio::time::sleep(self.options.poll_interval).await;
            }
        })
        .await;
        let log = self
            .pods
            .logs(
                &step.pod,
                &LogParams {
                    container: Some(CHECK_CONTAINER.to_owned()),
                    ..LogParams::default()
                },
            )
            .await
            .unwrap_or_else(|e| format!("(log unavailable: {e})"));
        let status = match waited {
            Ok(Ok(exit_code)) => StepStatus::Completed { exit_code },
            Ok(Err(reason)) => StepStatus::NotRun { reason },
            Err(_) => StepStatus::TimedOut {
                seconds: self.options.pod_timeout.as_secs(),
            },
        };
        (status, log)
    }

    async fn host_dns(&self, step: &HostDnsStep) -> Result<Vec<Evidence>, String> {
        let server = step.server.ok_or_else(|| {
            format!(
                "no host side recorded for lab {}: `fedilab serve` has not run",
                self.spec.name
            )
        })?;
        let mut evidence = Vec::new();
        for host in &step.hosts {
            let name = format!("{host}.");
            let (addresses, detail) =
                match fedilab_dns::query::query_a(server, &name, self.options.host_timeout).await {
                    Ok(addresses) => {
                        let addresses: Vec<String> =
                            addresses.iter().map(ToString::to_string).collect();
                        let detail = if addresses.is_empty() {
                            "no address".to_owned()
                        } else {
                            addresses.join(", ")
                        };
                        (addresses, detail)
                    }
                    Err(e) => (Vec::new(), e.to_string()),
                };
            evidence.push(Evidence::HostDns(HostLookup {
                host: host.clone(),
                server: server.to_string(),
                addresses,
                detail,
            }));
        }
        Ok(evidence)
    }

    /// The inspector's newest exchange id before the checks run, so only
    /// this run's deliveries count. 0 when unknown.
    async fn inspector_baseline(&self, plan: &VerifyPlan) -> u64 {
        let api = plan
            .checks
            .iter()
            .flat_map(|c| &c.steps)
            .find_map(|s| match &s.run {
                StepRun::Inspector(i) => i.api,
                _ => None,
            });
        let Some(api) = api else { return 0 };
        match client::exchanges(api, "limit=1&all=1", self.options.host_timeout).await {
            Ok(list) => list.last_id.unwrap_or(0),
            Err(_) => 0,
        }
    }

    async fn inspector(
        &self,
        step: &InspectorStep,
        baseline: u64,
    ) -> Result<Vec<Evidence>, String> {
        let api = step.api.ok_or_else(|| {
            format!(
                "no host side recorded for lab {}: `fedilab serve` has not run",
                self.spec.name
            )
        })?;
        let mut evidence = Vec::new();
        for query in &step.queries {
            let records =
                match client::exchanges(api, &query.query(baseline), self.options.host_timeout)
                    .await
                {
                    Ok(list) => InspectorRecords {
                        activity: query.activity.clone(),
                        exchanges: list.exchanges.iter().map(recorded).collect(),
                        error: None,
                    },
                    Err(e) => InspectorRecords {
                        activity: query.activity.clone(),
                        exchanges: Vec::new(),
                        error: Some(format!(
                            "cannot query the inspector at {api}: {}",
                            error_chain(&e)
                        )),
                    },
                };
            evidence.push(Evidence::Inspector(records));
        }
        Ok(evidence)
    }
}

/// What verify's judgment reads of an inspector summary.
fn recorded(x: &ExchangeSummary) -> RecordedExchange {
    RecordedExchange {
        id: x.id,
        host: x.host.clone(),
        from: x.from.clone(),
        kind: x.kind.as_str().to_owned(),
        activity: x.activity.clone(),
        status: x.status,
        verdict: x.verdict.as_str().to_owned(),
        problems: x
            .problems
            .iter()
            .map(|p| RecordedProblem {
                code: p.code.as_str().to_owned(),
            })
            .collect(),
    }
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The check container's exit code once the pod has ended.
fn finished(pod: &Pod) -> Option<i32> {
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref()?;
    if phase != "Succeeded" && phase != "Failed" {
        return None;
    }
    let code = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CHECK_CONTAINER)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    Some(code.unwrap_or(if phase == "Succeeded" { 0 } else { 1 }))
}
