//! Server-side apply of a lab's objects in waves: the namespace, then the
//! NetworkPolicies (so no lab pod ever runs unrestricted), then everything
//! else, then the setup Jobs; within a wave the objects do not depend on
//! each other and go concurrently, at most [`MAX_IN_FLIGHT`] at a time.
//! Field manager `fedilab` (forced: fedilab owns these objects),
//! except the shared `coredns-custom` ConfigMap, which each lab applies with
//! its own manager so labs never take each other's keys. Applying identical
//! content is a no-op on the server, so unchanged objects keep their
//! resourceVersion. Jobs are immutable: a changed or failed setup Job is
//! deleted and created again; a complete, unchanged one is left alone.
//! After a changed CoreDNS key, CoreDNS is restarted and waited for; if it
//! does not come back, the lab's key is taken out again (CoreDNS is shared
//! by the whole node: a lab must never leave it down).

use std::time::Duration;

use fedilab_manifest::{LabManifests, Manifest};
use fedilab_profile::{LabSpec, names};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client};

use crate::metrics::{Stopwatch, WaveTiming};
use crate::preflight::Preflight;
use crate::resources::{Resolved, ResourceMap};
use crate::{Cluster, coredns};

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Applied: created, changed or already as wanted.
    Applied,
    /// A Job deleted and created again (changed template, or failed).
    Recreated,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedObject {
    /// `Kind/namespace/name`.
    pub object: String,
    /// Its resourceVersion after the apply.
    pub resource_version: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}

/// The result of [`apply`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    /// Every object, wave by wave, in the manifests' order within a wave
    /// (for `fedilab_manifest::build`'s output: the manifests' order).
    pub objects: Vec<AppliedObject>,
    /// Whether the lab's CoreDNS key changed, so CoreDNS was restarted.
    pub coredns_restarted: bool,
    /// What each wave cost, in order (waves without objects left out).
    pub waves: Vec<WaveTiming>,
}

/// At most this many applies of one wave are in flight together. An API
/// server takes hundreds (kube-apiserver's default for mutating requests
/// is 200); a 10-instance lab's largest wave has about 170 objects.
pub const MAX_IN_FLIGHT: usize = 32;

/// A group of objects applied together; each wave starts when the one
/// before it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wave {
    /// The lab's namespace: everything else lives in it.
    Namespace,
    /// Egress policies, before any pod exists.
    NetworkPolicies,
    /// Everything else: ConfigMaps, Secrets, Services, workloads,
    /// Ingresses, the shared kube-system objects.
    Objects,
    /// The setup Jobs, last: they use all the rest.
    Jobs,
}

impl Wave {
    /// Every wave, in order.
    pub const ALL: [Wave; 4] = [
        Wave::Namespace,
        Wave::NetworkPolicies,
        Wave::Objects,
        Wave::Jobs,
    ];

    /// The wave `object` goes in.
    pub fn of(object: &Manifest) -> Wave {
        match object.kind() {
            "Namespace" => Wave::Namespace,
            "NetworkPolicy" => Wave::NetworkPolicies,
            "Job" => Wave::Jobs,
            _ => Wave::Objects,
        }
    }

    /// `namespace`, `network-policies`, `objects`, `jobs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wave::Namespace => "namespace",
            Wave::NetworkPolicies => "network-policies",
            Wave::Objects => "objects",
            Wave::Jobs => "jobs",
        }
    }
}

/// Why applying stopped. The waves before the failing one are applied,
/// and maybe part of the failing wave; running `fedilab up` again
/// continues.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The manifest list has a kind preflight did not resolve (a bug).
    #[error("no API resource known for {object}")]
    UnknownKind {
        /// The object.
        object: String,
    },
    /// The API server refused an object.
    #[error("cannot apply {object}: {message}{hint}")]
    Refused {
        /// The object.
        object: String,
        /// The server's message.
        message: String,
        /// What to do.
        hint: &'static str,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// A Job could not be replaced.
    #[error(
        "cannot replace the Job {object} ({step}); delete it with kubectl and run `fedilab up` again"
    )]
    ReplaceJob {
        /// The Job.
        object: String,
        /// `delete` or `wait for deletion`.
        step: &'static str,
        /// kube's error.
        #[source]
        source: Option<kube::Error>,
    },
    /// The CoreDNS restart failed.
    #[error(
        "applied the lab's CoreDNS key but cannot restart CoreDNS; run \
         `kubectl -n kube-system rollout restart deployment coredns`"
    )]
    RestartCoreDns(#[source] kube::Error),
    /// CoreDNS did not become available with the lab's key; the key was
    /// taken out again.
    #[error(
        "CoreDNS did not come back after the lab's key {key} was added to \
         kube-system/coredns-custom: {failure}.\n{rollback}\n{log_tail}"
    )]
    CoreDnsUnavailable {
        /// The lab's key.
        key: String,
        /// What the rollout waited for.
        failure: String,
        /// What the rollback did, and what to do next.
        rollback: String,
        /// The tail of the CoreDNS pod's log (while the key was in).
        log_tail: String,
    },
}

fn api_for(client: &Client, resolved: &Resolved, object: &Manifest) -> Api<DynamicObject> {
    match (resolved.namespaced, object.namespace()) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resolved.resource),
        (true, None) => Api::default_namespaced_with(client.clone(), &resolved.resource),
        (false, _) => Api::all_with(client.clone(), &resolved.resource),
    }
}

fn is_coredns_custom(object: &Manifest) -> bool {
    object.kind() == "ConfigMap"
        && object.namespace() == Some(names::KUBE_SYSTEM)
        && object.name() == names::COREDNS_CUSTOM_CONFIGMAP
}

fn refused(object: &Manifest, source: kube::Error) -> ApplyError {
    let (message, hint) = match &source {
        kube::Error::Api(s) => (
            s.message.clone(),
            match s.code {
                401 | 403 => {
                    "\nfedilab needs cluster-admin rights: use k3s's kubeconfig \
                     (/etc/rancher/k3s/k3s.yaml) or pass --kubeconfig"
                }
                409 => "\nsomething else changed it at the same time; run `fedilab up` again",
                _ => "",
            },
        ),
        other => (
            other.to_string(),
            "\nrun `fedilab up` again; it continues where it stopped",
        ),
    };
    ApplyError::Refused {
        object: object.describe(),
        message,
        hint,
        source,
    }
}

/// Applies every object of `manifests`, wave by wave ([`Wave`]), then
/// restarts CoreDNS if the lab's key in `coredns-custom` changed (or
/// [`Preflight::coredns_restart_pending`] says an interrupted apply may
/// have changed it).
///
/// # Errors
/// [`ApplyError`] for the first object (in manifest order) of a wave that
/// the server refuses; no later wave starts. A kind preflight did not
/// resolve stops it before anything is applied.
///
/// # Caveats
/// Replacing a Job waits up to a minute for the old one to go.
pub async fn apply(
    cluster: &Cluster,
    spec: &LabSpec,
    manifests: &LabManifests,
    preflight: &Preflight,
) -> Result<ApplyReport, ApplyError> {
    let lab_manager = &names::lab_field_manager(&spec.name);
    let mut resolved: Vec<&Resolved> = Vec::with_capacity(manifests.objects.len());
    for object in &manifests.objects {
        match preflight.resources.get(object) {
            Some(r) => resolved.push(r),
            None => return Err(unknown_kind(object)),
        }
    }
    let mut report = ApplyReport::default();
    for wave in Wave::ALL {
        let members: Vec<(&Manifest, &Resolved)> = manifests
            .objects
            .iter()
            .zip(&resolved)
            .filter(|(o, _)| Wave::of(o) == wave)
            .map(|(o, r)| (o, *r))
            .collect();
        if members.is_empty() {
            continue;
        }
        let watch = Stopwatch::start(&cluster.counter);
        let applied: Vec<(AppliedObject, bool)> =
            stream::iter(members.iter().map(|&(object, resolved)| async move {
                if is_coredns_custom(object) {
                    apply_coredns_custom(cluster, spec, preflight, resolved, object, lab_manager)
                        .await
                } else {
                    apply_object(cluster, resolved, object, names::FIELD_MANAGER)
                        .await
                        .map(|a| (a, false))
                }
            }))
            .buffered(MAX_IN_FLIGHT)
            .try_collect()
            .await?;
        let (wall, requests, api) = watch.read();
        report.waves.push(WaveTiming {
            wave: wave.as_str().to_owned(),
            objects: members.len(),
            wall,
            requests,
            api,
        });
        for (object, restarted) in applied {
            report.coredns_restarted |= restarted;
            report.objects.push(object);
        }
    }
    Ok(report)
}

/// Applies the shared `coredns-custom` with the lab's own manager and
/// restarts CoreDNS when the lab's key changed, then waits until it is
/// available again and takes the key back out if it is not; `true` when
/// it restarted.
async fn apply_coredns_custom(
    cluster: &Cluster,
    spec: &LabSpec,
    preflight: &Preflight,
    resolved: &Resolved,
    object: &Manifest,
    lab_manager: &str,
) -> Result<(AppliedObject, bool), ApplyError> {
    let key = names::coredns_key(&spec.name);
    let wanted = match object {
        Manifest::ConfigMap(c) => c.data.as_ref().and_then(|d| d.get(&key)),
        _ => None,
    };
    let changed =
        wanted != preflight.coredns_key_before.as_ref() || preflight.coredns_restart_pending;
    let applied = apply_object(cluster, resolved, object, lab_manager).await?;
    let restarted = if changed {
        coredns::restart(cluster)
            .await
            .map_err(ApplyError::RestartCoreDns)?
    } else {
        false
    };
    if restarted
        && let Err(failure) = coredns::wait_available(cluster, &preflight.coredns_wait).await
    {
        return Err(roll_back_coredns(cluster, spec, &key, failure, preflight).await);
    }
    Ok((applied, restarted))
}

/// CoreDNS did not come back with the lab's key: read its log, take the
/// key out, restart and wait once more; the error says how that went.
async fn roll_back_coredns(
    cluster: &Cluster,
    spec: &LabSpec,
    key: &str,
    failure: coredns::RolloutError,
    preflight: &Preflight,
) -> ApplyError {
    let log_tail = coredns::log_tail(cluster).await;
    tracing::warn!("{failure}; removing the lab's key {key} again");
    let rollback = match coredns::remove_key(cluster, &spec.name, key).await {
        Err(e) => format!(
            "Removing the key failed too ({e}): remove it yourself with \
             `kubectl -n kube-system patch configmap coredns-custom --type json \
             -p '[{{\"op\":\"remove\",\"path\":\"/data/{key}\"}}]'` and \
             `kubectl -n kube-system rollout restart deployment coredns`."
        ),
        Ok(()) => match coredns::restart(cluster).await {
            Err(e) => format!(
                "The key is removed, but restarting CoreDNS failed ({e}): run \
                 `kubectl -n kube-system rollout restart deployment coredns`."
            ),
            Ok(_) => match coredns::wait_available(cluster, &preflight.coredns_wait).await {
                Ok(()) => "The key is removed again and CoreDNS is available without it. \
                           Check the lab domain against the other keys of \
                           kube-system/coredns-custom and the log below."
                    .to_owned(),
                Err(e) => format!(
                    "The key is removed again, but CoreDNS is still not available ({e}): \
                     something else keeps it down; see \
                     `kubectl -n kube-system describe deployment coredns`."
                ),
            },
        },
    };
    ApplyError::CoreDnsUnavailable {
        key: key.to_owned(),
        failure: failure.to_string(),
        rollback,
        log_tail,
    }
}

/// Applies `objects` in order with fedilab's field manager: for objects
/// outside the shared kube-system ones, such as an attached server's.
///
/// # Errors
/// [`ApplyError`] for the first object the server refuses.
pub(crate) async fn apply_objects(
    cluster: &Cluster,
    resources: &ResourceMap,
    objects: &[Manifest],
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport::default();
    for object in objects {
        let resolved = resources.get(object).ok_or_else(|| unknown_kind(object))?;
        report
            .objects
            .push(apply_object(cluster, resolved, object, names::FIELD_MANAGER).await?);
    }
    Ok(report)
}

fn unknown_kind(object: &Manifest) -> ApplyError {
    ApplyError::UnknownKind {
        object: object.describe(),
    }
}

/// Server-side applies one object (forced, as `manager`); a Job that failed
/// or whose template changed is replaced.
async fn apply_object(
    cluster: &Cluster,
    resolved: &Resolved,
    object: &Manifest,
    manager: &str,
) -> Result<AppliedObject, ApplyError> {
    let api = api_for(&cluster.client, resolved, object);
    let params = PatchParams::apply(manager).force();
    let body = serde_json::to_value(object).map_err(|e| ApplyError::Refused {
        object: object.describe(),
        message: format!("cannot serialize: {e}"),
        hint: "",
        source: kube::Error::SerdeError(e),
    })?;
    let result = api
        .patch(object.name(), &params, &Patch::Apply(&body))
        .await;
    let is_job = object.kind() == "Job";
    let (applied, outcome) = match result {
        Ok(applied) if is_job && job_failed(&applied) => (
            replace_job(&api, object, &params, &body).await?,
            Outcome::Recreated,
        ),
        Ok(applied) => (applied, Outcome::Applied),
        Err(kube::Error::Api(s)) if is_job && s.code == 422 => {
            tracing::info!(
                "{}: template changed ({}); recreating",
                object.describe(),
                s.message
            );
            (
                replace_job(&api, object, &params, &body).await?,
                Outcome::Recreated,
            )
        }
        Err(e) => return Err(refused(object, e)),
    };
    Ok(AppliedObject {
        object: object.describe(),
        resource_version: applied.metadata.resource_version.clone(),
        outcome,
    })
}

fn job_failed(job: &DynamicObject) -> bool {
    let Ok(job) = serde_json::from_value::<k8s_openapi::api::batch::v1::Job>(
        serde_json::to_value(job).unwrap_or_default(),
    ) else {
        return false;
    };
    crate::readiness::is_job_failed(Some(&job))
}

/// Deletes a Job (its pods in the background), waits until it is gone and
/// applies it again.
async fn replace_job(
    api: &Api<DynamicObject>,
    object: &Manifest,
    params: &PatchParams,
    body: &serde_json::Value,
) -> Result<DynamicObject, ApplyError> {
    let name = object.name();
    let deleted = match api.delete(name, &DeleteParams::background()).await {
        // Left: still there (finalizers); Right: gone.
        Ok(d) => d.left(),
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => {
            return Err(ApplyError::ReplaceJob {
                object: object.describe(),
                step: "delete",
                source: Some(e),
            });
        }
    };
    if let Some(old) = deleted {
        let uid = old.metadata.uid;
        let gone = async {
            loop {
                match api.get_opt(name).await {
                    Ok(None) => return Ok(()),
                    Ok(Some(o)) if o.metadata.uid != uid => return Ok(()),
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(60), gone).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ApplyError::ReplaceJob {
                    object: object.describe(),
                    step: "wait for deletion",
                    source: Some(e),
                });
            }
            Err(_) => {
                return Err(ApplyError::ReplaceJob {
                    object: object.describe(),
                    step: "still there after 60 s",
                    source: None,
                });
            }
        }
    }
    api.patch(name, params, &Patch::Apply(body))
        .await
        .map_err(|e| refused(object, e))
}
