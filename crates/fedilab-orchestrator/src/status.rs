//! What a lab looks like on the cluster now: per instance its phase, ready
//! pods, URL and age, and the lab-level objects. Reads only, by the lab's
//! labels and the names in `fedilab_profile::names`.

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
use crate::readiness::{InstanceObjects, InstanceProgress, instance_progress, is_pod_ready};

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceStatus {
    /// Its name.
    pub name: String,
    /// Where it is: `ready`, `database`, `setup`, `services`, `failed`, or
    /// `external` for a server outside the cluster (routed, nothing runs).
    pub phase: String,
    /// Ready pods (Job pods that finished not counted).
    pub ready_pods: usize,
    /// Running or pending pods.
    pub pods: usize,
    /// `https://<host>/`, from its Ingress.
    pub url: Option<String>,
    /// Seconds since its first object was created.
    pub age_seconds: Option<i64>,
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
    /// Namespace, egress policy, CA ConfigMap, setup scripts, CoreDNS key.
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

fn age(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    let created = meta.creation_timestamp.as_ref()?.0;
    Some(jiff::Timestamp::now().duration_since(created).as_secs())
}

fn by_name<K: Resource>(items: Vec<K>) -> BTreeMap<String, K> {
    items
        .into_iter()
        .filter_map(|o| o.meta().name.clone().map(|n| (n, o)))
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

/// Reads the state of `lab`.
///
/// # Errors
/// [`StatusError`] for the first read that fails.
pub async fn status(cluster: &Cluster, lab: &LabName) -> Result<LabStatus, StatusError> {
    let ns_name = names::namespace(lab);
    let client = &cluster.client;
    let err = |what| {
        move |source| StatusError {
            lab: lab.to_string(),
            what,
            source,
        }
    };
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(&ns_name)
        .await
        .map_err(err("namespace"))?;
    let coredns = Api::<ConfigMap>::namespaced(client.clone(), names::KUBE_SYSTEM)
        .get_opt(names::COREDNS_CUSTOM_CONFIGMAP)
        .await
        .map_err(err("coredns-custom"))?;
    let key = names::coredns_key(lab);
    let coredns_present = coredns
        .and_then(|c| c.data)
        .is_some_and(|d| d.contains_key(&key));
    let mut status = LabStatus {
        lab: lab.to_string(),
        namespace: ns_name.clone(),
        exists: ns.is_some(),
        terminating: ns
            .as_ref()
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some()),
        age_seconds: ns.as_ref().and_then(|n| age(&n.metadata)),
        instances: Vec::new(),
        lab_objects: Vec::new(),
    };
    let mut lab_objects = vec![(format!("Namespace/{ns_name}"), ns.is_some())];
    if ns.is_some() {
        let lp = ListParams::default().labels(&names::lab_selector(lab));
        let statefulsets = by_name(
            Api::<StatefulSet>::namespaced(client.clone(), &ns_name)
                .list(&lp)
                .await
                .map_err(err("StatefulSets"))?
                .items,
        );
        let deployments = by_name(
            Api::<Deployment>::namespaced(client.clone(), &ns_name)
                .list(&lp)
                .await
                .map_err(err("Deployments"))?
                .items,
        );
        let jobs = by_name(
            Api::<Job>::namespaced(client.clone(), &ns_name)
                .list(&lp)
                .await
                .map_err(err("Jobs"))?
                .items,
        );
        let pods = Api::<Pod>::namespaced(client.clone(), &ns_name)
            .list(&lp)
            .await
            .map_err(err("Pods"))?
            .items;
        let ingresses = Api::<Ingress>::namespaced(client.clone(), &ns_name)
            .list(&lp)
            .await
            .map_err(err("Ingresses"))?
            .items;
        let policies = by_name(
            Api::<NetworkPolicy>::namespaced(client.clone(), &ns_name)
                .list(&lp)
                .await
                .map_err(err("NetworkPolicies"))?
                .items,
        );
        let configmaps = by_name(
            Api::<ConfigMap>::namespaced(client.clone(), &ns_name)
                .list(&lp)
                .await
                .map_err(err("ConfigMaps"))?
                .items,
        );
        let instance_of = |labels: &Option<BTreeMap<String, String>>| {
            labels
                .as_ref()
                .and_then(|l| l.get(names::INSTANCE_KEY))
                .cloned()
        };
        let mut instances: BTreeSet<String> = BTreeSet::new();
        instances.extend(
            statefulsets
                .values()
                .filter_map(|o| instance_of(&o.metadata.labels)),
        );
        instances.extend(
            deployments
                .values()
                .filter_map(|o| instance_of(&o.metadata.labels)),
        );
        // External servers run nothing here; their Ingress shows them.
        let external_app = fedilab_profile::InstanceKind::External.as_str();
        let external: BTreeSet<String> = ingresses
            .iter()
            .filter(|i| {
                i.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(names::APP_NAME_KEY))
                    .map(String::as_str)
                    == Some(external_app)
            })
            .filter_map(|i| instance_of(&i.metadata.labels))
            .collect();
        instances.extend(external.iter().cloned());
        for name in instances {
            let Ok(instance) = name.parse::<InstanceName>() else {
                continue;
            };
            let object = |c| names::component_object(&instance, c);
            let objects = InstanceObjects {
                postgres: statefulsets.get(&object(Component::Postgres)),
                redis: deployments.get(&object(Component::Redis)),
                setup: jobs.get(&object(Component::Setup)),
                web: deployments.get(&object(Component::Web)),
                streaming: deployments.get(&object(Component::Streaming)),
                sidekiq: deployments.get(&object(Component::Sidekiq)),
            };
            let phase = match instance_progress(&objects) {
                _ if external.contains(&name) => external_app.to_owned(),
                InstanceProgress::Ready => "ready".to_owned(),
                InstanceProgress::Waiting { phase } => phase.as_str().to_owned(),
                InstanceProgress::Failed { .. } => "failed".to_owned(),
            };
            let own: Vec<&Pod> = pods
                .iter()
                .filter(|p| instance_of(&p.metadata.labels).as_deref() == Some(name.as_str()))
                .filter(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
                .collect();
            let url = ingresses
                .iter()
                .filter(|i| instance_of(&i.metadata.labels).as_deref() == Some(name.as_str()))
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
                objects.postgres.map(|o| &o.metadata),
                objects.web.map(|o| &o.metadata),
            ]
            .into_iter()
            .flatten()
            .filter_map(age)
            .max();
            status.instances.push(InstanceStatus {
                name,
                phase,
                ready_pods: own.iter().filter(|p| is_pod_ready(Some(p))).count(),
                pods: own.len(),
                url,
                age_seconds,
            });
        }
        lab_objects.push((
            format!("NetworkPolicy/{ns_name}/{}", names::EGRESS_POLICY),
            policies.contains_key(names::EGRESS_POLICY),
        ));
        for cm in [names::LAB_CA_CONFIGMAP, names::SETUP_SCRIPTS_CONFIGMAP] {
            lab_objects.push((
                format!("ConfigMap/{ns_name}/{cm}"),
                configmaps.contains_key(cm),
            ));
        }
    }
    lab_objects.push((
        format!(
            "ConfigMap/{}/{}[{key}]",
            names::KUBE_SYSTEM,
            names::COREDNS_CUSTOM_CONFIGMAP
        ),
        coredns_present,
    ));
    status.lab_objects = lab_objects
        .into_iter()
        .map(|(object, present)| LabObjectStatus { object, present })
        .collect();
    Ok(status)
}
