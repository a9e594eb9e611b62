//! What a lab looks like on the cluster now: per instance its phase, ready
//! pods, URL and age, and the lab-level objects. Reads only, by the lab's
//! labels and the names in `fedilab_profile::names`.
//!
//! Two steps: [`fetch_lab_objects`] reads ([`LabObjects`], nothing judged),
//! [`summarize`] judges (pure, tested on YAML fixtures); [`status`] is both.

use std::collections::{BTreeMap, BTreeSet};

use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceName, LabName};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::ListParams;
use kube::{Api, Resource};

use crate::Cluster;
use crate::readiness::{InstanceObjects, InstanceProgress, Phase, instance_progress, is_pod_ready};

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceStatus {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub phase: InstancePhase,
    /// Ready pods (Job pods that finished not counted).
    pub ready_pods: usize,
    /// Running or pending pods.
    pub pods: usize,
    /// `https://<host>/`, from its Ingress.
    pub url: Option<String>,
    /// Seconds since its first object was created.
    pub age_seconds: Option<i64>,
}

/// Where an instance is, as `fedilab status` shows it. Serializes to the
/// strings of [`InstancePhase::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstancePhase {
    /// Waiting for a phase: `database`, `setup` or `services`.
    Waiting(Phase),
    /// Every phase done: `ready`.
    Ready,
    /// The setup Job gave up: `failed`.
    Failed,
    /// A server outside the cluster, routed, nothing runs: `external`.
    External,
}

impl InstancePhase {
    /// `ready`, `database`, `setup`, `services`, `failed` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstancePhase::Waiting(phase) => phase.as_str(),
            InstancePhase::Ready => "ready",
            InstancePhase::Failed => "failed",
            InstancePhase::External => fedilab_profile::InstanceKind::External.as_str(),
        }
    }
}

impl From<&InstanceProgress> for InstancePhase {
    fn from(progress: &InstanceProgress) -> Self {
        match progress {
            InstanceProgress::Ready => InstancePhase::Ready,
            InstanceProgress::Waiting { phase } => InstancePhase::Waiting(*phase),
            InstanceProgress::Failed { .. } => InstancePhase::Failed,
        }
    }
}

impl std::fmt::Display for InstancePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for InstancePhase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// For tests and scripts that hold the JSON string.
impl PartialEq<&str> for InstancePhase {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One lab-level object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LabObjectStatus {
    /// `Kind/namespace/name` (and `[key]` for the CoreDNS key).
    pub object: String,
    /// Whether it exists.
    pub present: bool,
}

/// A lab on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LabStatus {
    /// The lab.
    pub lab: String,
    /// Its namespace.
    pub namespace: String,
    /// Whether its namespace exists.
    pub exists: bool,
    /// Whether its namespace is being deleted.
    pub terminating: bool,
    /// Seconds since its namespace was created.
    pub age_seconds: Option<i64>,
    /// Its instances, by name.
    pub instances: Vec<InstanceStatus>,
    /// Namespace, egress policy, CA ConfigMap, setup scripts, CoreDNS key,
    /// Traefik config.
    pub lab_objects: Vec<LabObjectStatus>,
}

/// A status read failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the state of lab {lab} ({what})")]
pub struct StatusError {
    /// The lab.
    pub lab: String,
    /// What was being read.
    pub what: &'static str,
    /// kube's error.
    #[source]
    pub source: kube::Error,
}

fn age(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    now: jiff::Timestamp,
) -> Option<i64> {
    let created = meta.creation_timestamp.as_ref()?.0;
    Some(now.duration_since(created).as_secs())
}

fn by_name<K: Resource>(items: &[K]) -> BTreeMap<&str, &K> {
    items
        .iter()
        .filter_map(|o| o.meta().name.as_deref().map(|n| (n, o)))
        .collect()
}

/// The labs on the cluster: namespaces labelled as fedilab's.
///
/// # Errors
/// [`StatusError`] when namespaces cannot be listed.
pub async fn list_labs(cluster: &Cluster) -> Result<Vec<LabName>, StatusError> {
    let lp =
        ListParams::default().labels(&format!("{}={}", names::MANAGED_BY_KEY, names::MANAGED_BY));
    let list = Api::<Namespace>::all(cluster.client.clone())
        .list(&lp)
        .await
        .map_err(|source| StatusError {
            lab: "*".to_owned(),
            what: "namespaces",
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter_map(|n| {
            n.metadata
                .labels
                .as_ref()?
                .get(names::LAB_KEY)?
                .parse()
                .ok()
        })
        .collect())
}

/// What [`fetch_lab_objects`] read from the API for one lab: everything
/// [`summarize`] judges, and nothing judged yet. Deserializes from YAML (the
/// objects as the API server returns them), so fixtures can stand for a
/// cluster.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabObjects {
    /// The lab's namespace, if it exists.
    pub namespace: Option<Namespace>,
    /// `kube-system/coredns-custom`, if it exists.
    pub coredns_custom: Option<ConfigMap>,
    /// The lab's StatefulSets (empty when the namespace does not exist).
    pub statefulsets: Vec<StatefulSet>,
    /// The lab's Deployments.
    pub deployments: Vec<Deployment>,
    /// The lab's Jobs.
    pub jobs: Vec<Job>,
    /// The lab's Pods.
    pub pods: Vec<Pod>,
    /// The lab's Ingresses.
    pub ingresses: Vec<Ingress>,
    /// The lab's NetworkPolicies.
    pub policies: Vec<NetworkPolicy>,
    /// The lab's own ConfigMaps.
    pub configmaps: Vec<ConfigMap>,
}

/// Reads the state of `lab`: [`fetch_lab_objects`], then [`summarize`] at
/// the current time.
///
/// # Errors
/// [`StatusError`] for the first read that fails.
pub async fn status(cluster: &Cluster, lab: &LabName) -> Result<LabStatus, StatusError> {
    let objects = fetch_lab_objects(cluster, lab).await?;
    Ok(summarize(&objects, lab, jiff::Timestamp::now()))
}

/// Reads what [`summarize`] needs about `lab`: the namespace, the shared
/// kube-system objects and, when the namespace exists, the lab's objects by
/// its label.
///
/// # Errors
/// [`StatusError`] for the first read that fails.
pub async fn fetch_lab_objects(
    cluster: &Cluster,
    lab: &LabName,
) -> Result<LabObjects, StatusError> {
    let ns_name = names::namespace(lab);
    let client = &cluster.client;
    let err = |what| {
        move |source| StatusError {
            lab: lab.to_string(),
            what,
            source,
        }
    };
    let namespace = Api::<Namespace>::all(client.clone())
        .get_opt(&ns_name)
        .await
        .map_err(err("namespace"))?;
    let coredns_custom = Api::<ConfigMap>::namespaced(client.clone(), names::KUBE_SYSTEM)
        .get_opt(names::COREDNS_CUSTOM_CONFIGMAP)
        .await
        .map_err(err("coredns-custom"))?;
    let mut objects = LabObjects {
        namespace,
        coredns_custom,
        ..LabObjects::default()
    };
    if objects.namespace.is_none() {
        return Ok(objects);
    }
    let lp = ListParams::default().labels(&names::lab_selector(lab));
    let ns = ns_name.as_str();
    objects.statefulsets = list(client, ns, &lp).await.map_err(err("StatefulSets"))?;
    objects.deployments = list(client, ns, &lp).await.map_err(err("Deployments"))?;
    objects.jobs = list(client, ns, &lp).await.map_err(err("Jobs"))?;
    objects.pods = list(client, ns, &lp).await.map_err(err("Pods"))?;
    objects.ingresses = list(client, ns, &lp).await.map_err(err("Ingresses"))?;
    objects.policies = list(client, ns, &lp)
        .await
        .map_err(err("NetworkPolicies"))?;
    objects.configmaps = list(client, ns, &lp).await.map_err(err("ConfigMaps"))?;
    Ok(objects)
}

/// Lists `K` in `namespace` by a label selector.
async fn list<K>(
    client: &kube::Client,
    namespace: &str,
    lp: &ListParams,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(Api::<K>::namespaced(client.clone(), namespace)
        .list(lp)
        .await?
        .items)
}

/// Judges what was read: per instance its phase, pods, URL and age; the
/// lab-level objects present or missing. Pure: `now` is when ages are
/// measured from.
pub fn summarize(objects: &LabObjects, lab: &LabName, now: jiff::Timestamp) -> LabStatus {
    let ns = objects.namespace.as_ref();
    LabStatus {
        lab: lab.to_string(),
        namespace: names::namespace(lab),
        exists: ns.is_some(),
        terminating: ns.is_some_and(|n| n.metadata.deletion_timestamp.is_some()),
        age_seconds: ns.and_then(|n| age(&n.metadata, now)),
        instances: if ns.is_some() {
            instances(objects, now)
        } else {
            Vec::new()
        },
        lab_objects: lab_objects(objects, lab),
    }
}

fn instance_of(labels: Option<&BTreeMap<String, String>>) -> Option<&str> {
    labels?.get(names::INSTANCE_KEY).map(String::as_str)
}

/// The instances: those with a StatefulSet or a Deployment, and external
/// servers, which run nothing here and show by their Ingress.
fn instances(objects: &LabObjects, now: jiff::Timestamp) -> Vec<InstanceStatus> {
    let statefulsets = by_name(&objects.statefulsets);
    let deployments = by_name(&objects.deployments);
    let jobs = by_name(&objects.jobs);
    let external = external_instances(&objects.ingresses);
    let mut names: BTreeSet<&str> = BTreeSet::new();
    names.extend(
        statefulsets
            .values()
            .filter_map(|o| instance_of(o.metadata.labels.as_ref())),
    );
    names.extend(
        deployments
            .values()
            .filter_map(|o| instance_of(o.metadata.labels.as_ref())),
    );
    names.extend(external.iter().copied());
    let mut out = Vec::new();
    for name in names {
        let Ok(instance) = name.parse::<InstanceName>() else {
            continue;
        };
        let object = |c| names::component_object(&instance, c);
        // The kind, from the database's `app.kubernetes.io/name`: what to
        // wait for (Misskey and GoToSocial run fewer components).
        let kind = statefulsets
            .get(object(Component::Postgres).as_str())
            .and_then(|o| o.metadata.labels.as_ref()?.get(names::APP_NAME_KEY))
            .and_then(|app| app.parse::<fedilab_profile::InstanceKind>().ok());
        let own = InstanceObjects {
            runs: kind.map(names::components_of),
            postgres: statefulsets
                .get(object(Component::Postgres).as_str())
                .copied(),
            redis: deployments.get(object(Component::Redis).as_str()).copied(),
            setup: jobs.get(object(Component::Setup).as_str()).copied(),
            web: deployments.get(object(Component::Web).as_str()).copied(),
            streaming: deployments
                .get(object(Component::Streaming).as_str())
                .copied(),
            sidekiq: deployments
                .get(object(Component::Sidekiq).as_str())
                .copied(),
        };
        let phase = if external.contains(name) {
            InstancePhase::External
        } else {
            InstancePhase::from(&instance_progress(&own))
        };
        out.push(instance_status(objects, name, phase, &own, now));
    }
    out
}

/// External servers: they run nothing here; their Ingress shows them.
fn external_instances(ingresses: &[Ingress]) -> BTreeSet<&str> {
    let external_app = fedilab_profile::InstanceKind::External.as_str();
    ingresses
        .iter()
        .filter(|i| {
            i.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(names::APP_NAME_KEY))
                .map(String::as_str)
                == Some(external_app)
        })
        .filter_map(|i| instance_of(i.metadata.labels.as_ref()))
        .collect()
}

/// One instance's pods, URL and age.
fn instance_status(
    objects: &LabObjects,
    name: &str,
    phase: InstancePhase,
    own: &InstanceObjects<'_>,
    now: jiff::Timestamp,
) -> InstanceStatus {
    let pods: Vec<&Pod> = objects
        .pods
        .iter()
        .filter(|p| instance_of(p.metadata.labels.as_ref()) == Some(name))
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let url = objects
        .ingresses
        .iter()
        .filter(|i| instance_of(i.metadata.labels.as_ref()) == Some(name))
        .find_map(|i| {
            i.spec
                .as_ref()?
                .rules
                .as_ref()?
                .iter()
                .find_map(|r| r.host.clone())
        })
        .map(|h| format!("https://{h}/"));
    let age_seconds = [
        own.postgres.map(|o| &o.metadata),
        own.web.map(|o| &o.metadata),
    ]
    .into_iter()
    .flatten()
    .filter_map(|m| age(m, now))
    .max();
    InstanceStatus {
        name: name.to_owned(),
        phase,
        ready_pods: pods.iter().filter(|p| is_pod_ready(Some(p))).count(),
        pods: pods.len(),
        url,
        age_seconds,
    }
}

/// The lab-level objects, in a fixed order; those inside the namespace only
/// when it exists.
fn lab_objects(objects: &LabObjects, lab: &LabName) -> Vec<LabObjectStatus> {
    let ns_name = names::namespace(lab);
    let mut out = vec![(format!("Namespace/{ns_name}"), objects.namespace.is_some())];
    if objects.namespace.is_some() {
        let policies = by_name(&objects.policies);
        let configmaps = by_name(&objects.configmaps);
        out.push((
            format!("NetworkPolicy/{ns_name}/{}", names::EGRESS_POLICY),
            policies.contains_key(names::EGRESS_POLICY),
        ));
        for cm in [names::LAB_CA_CONFIGMAP, names::SETUP_SCRIPTS_CONFIGMAP] {
            out.push((
                format!("ConfigMap/{ns_name}/{cm}"),
                configmaps.contains_key(cm),
            ));
        }
    }
    let key = names::coredns_key(lab);
    out.push((
        format!(
            "ConfigMap/{}/{}[{key}]",
            names::KUBE_SYSTEM,
            names::COREDNS_CUSTOM_CONFIGMAP
        ),
        objects
            .coredns_custom
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .is_some_and(|d| d.contains_key(&key)),
    ));
    out.into_iter()
        .map(|(object, present)| LabObjectStatus { object, present })
        .collect()
}
