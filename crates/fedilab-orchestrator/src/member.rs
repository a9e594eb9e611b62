//! What a lab has beyond its profile's pods: the addresses the inspector
//! forwards to (the instances' Services, read after apply), and the host
//! servers `fedilab attach` adds and `fedilab detach` removes.
//!
//! An attached server is a handful of objects in the lab's namespace (its
//! TLS Secret, a selector-less Service, the EndpointSlice that points the
//! Service at the inspector on the host, an Ingress), all labelled with the
//! lab and the server's instance name, so `detach` finds them by label and
//! `down` takes them with the namespace.

use std::collections::BTreeMap;

use fedilab_manifest::LabManifests;
use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceName, LabName, LabSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, ListParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};

use crate::apply::{ApplyError, ApplyReport, apply_objects};
use crate::resources::ResourceMap;
use crate::{Cluster, RemovedObject};
use fedilab_state::StoredUpstream;

/// Why reading upstreams, attaching or detaching failed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The lab's namespace is not on the cluster.
    #[error(
        "lab {lab} is not on this cluster (no namespace {namespace}); run `fedilab up --lab {lab}` first"
    )]
    NoLab {
        /// The lab.
        lab: String,
        /// Its namespace.
        namespace: String,
    },
    /// A request failed.
    #[error("cannot {what}; check the cluster with `fedilab status` and try again")]
    Api {
        /// What was being done.
        what: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// Applying the attached server's objects failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> MemberError {
    let what = what.into();
    move |source| MemberError::Api { what, source }
}

/// Where the inspector sends each instance's requests, from the lab's
/// Services: web takes `/`, streaming [`names::MASTODON_STREAMING_PATH`].
/// Keyed by instance name; Services without a cluster address (headless)
/// or of other components are left out.
pub fn upstreams_from_services(
    services: &[Service],
) -> BTreeMap<InstanceName, Vec<StoredUpstream>> {
    let mut out: BTreeMap<InstanceName, Vec<StoredUpstream>> = BTreeMap::new();
    for service in services {
        let labels = service.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key)).cloned();
        let (Some(instance), Some(component)) = (
            label(names::INSTANCE_KEY).and_then(|i| i.parse::<InstanceName>().ok()),
            label(names::COMPONENT_KEY),
        ) else {
            continue;
        };
        let path_prefix = if component == Component::Web.as_str() {
            "/"
        } else if component == Component::Streaming.as_str() {
            names::MASTODON_STREAMING_PATH
        } else {
            continue;
        };
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| *ip != "None" && !ip.is_empty())
        else {
            continue;
        };
        let Some(port) = spec.ports.as_ref().and_then(|p| p.first()).map(|p| p.port) else {
            continue;
        };
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        };
        // A cluster IP and a port always make a valid URL; anything else
        // is not an upstream.
        let Ok(url) = format!("http://{host}:{port}").parse() else {
            continue;
        };
        out.entry(instance).or_default().push(StoredUpstream {
            path_prefix: path_prefix.to_owned(),
            url,
        });
    }
    for upstreams in out.values_mut() {
        upstreams.sort_by(|a, b| a.path_prefix.cmp(&b.path_prefix));
    }
    out
}

/// Reads the lab's Services (one request) and returns
/// [`upstreams_from_services`] of them.
///
/// # Errors
/// [`MemberError::Api`] when they cannot be listed.
pub async fn instance_upstreams(
    cluster: &Cluster,
    spec: &LabSpec,
) -> Result<BTreeMap<InstanceName, Vec<StoredUpstream>>, MemberError> {
    let namespace = names::namespace(&spec.name);
    let services = Api::<Service>::namespaced(cluster.client.clone(), &namespace)
        .list(&ListParams::default().labels(&names::lab_selector(&spec.name)))
        .await
        .map_err(api_error(format!("list the Services in {namespace}")))?;
    Ok(upstreams_from_services(&services.items))
}

async fn require_lab(client: &Client, lab: &LabName) -> Result<(), MemberError> {
    let namespace = names::namespace(lab);
    let found = Api::<Namespace>::all(client.clone())
        .get_opt(&namespace)
        .await
        .map_err(api_error(format!("read the namespace {namespace}")))?;
    match found {
        Some(ns) if ns.metadata.deletion_timestamp.is_none() => Ok(()),
        _ => Err(MemberError::NoLab {
            lab: lab.to_string(),
            namespace,
        }),
    }
}

/// Applies an attached server's objects (`manifests`: only that server's,
/// all of built-in kinds) to the running lab `spec.name`.
///
/// # Errors
/// [`MemberError::NoLab`] when the lab is not up; the API's refusal.
pub async fn attach(
    cluster: &Cluster,
    spec: &LabSpec,
    manifests: &LabManifests,
) -> Result<ApplyReport, MemberError> {
    require_lab(&cluster.client, &spec.name).await?;
    Ok(apply_objects(cluster, &ResourceMap::builtin(), &manifests.objects).await?)
}

/// The kinds an attached server is made of, in the order `detach` removes
/// them (routes first, so Traefik stops sending before the Secret goes).
fn member_kinds() -> [ApiResource; 4] {
    [
        ApiResource::erase::<Ingress>(&()),
        ApiResource::erase::<EndpointSlice>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<Secret>(&()),
    ]
}

/// Removes every object of instance `name` in lab `lab` (found by label in
/// the lab's namespace) and returns what it removed; nothing found is not
/// an error.
///
/// # Errors
/// [`MemberError::Api`] when a list or delete fails.
pub async fn detach(
    cluster: &Cluster,
    lab: &LabName,
    name: &InstanceName,
) -> Result<Vec<RemovedObject>, MemberError> {
    let namespace = names::namespace(lab);
    let selector = names::instance_selector(lab, name);
    let mut removed = Vec::new();
    for resource in member_kinds() {
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), &namespace, &resource);
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_error(format!(
                "list {} in {namespace}",
                resource.plural
            )))?;
        for object in list.items {
            let object_name = object.metadata.name.unwrap_or_default();
            match api.delete(&object_name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(api_error(format!(
                        "delete {} {namespace}/{object_name}",
                        resource.kind
                    ))(e));
                }
            }
            removed.push(RemovedObject {
                kind: resource.kind.clone(),
                namespace: Some(namespace.clone()),
                name: object_name,
            });
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(instance: &str, component: &str, ip: &str, port: i32) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{instance}-{component}"), "labels": {
                names::INSTANCE_KEY: instance, names::COMPONENT_KEY: component}},
            "spec": {"clusterIP": ip, "ports": [{"port": port}]}
        }))
        .expect("a Service")
    }

    #[test]
    fn web_takes_the_root_and_streaming_its_prefix() {
        let services = [
            service("mastodon1", "web", "10.43.0.21", 3000),
            service("mastodon1", "streaming", "10.43.0.22", 4000),
            service("mastodon1", "postgres", "None", 5432),
            service("mastodon1", "redis", "10.43.0.23", 6379),
            service("mastodon2", "web", "fd00::21", 3000),
        ];
        let upstreams = upstreams_from_services(&services);
        let pairs = |name: &str| -> Vec<(String, String)> {
            upstreams[&name.parse::<InstanceName>().expect("name")]
                .iter()
                .map(|u| (u.path_prefix.clone(), u.url.to_string()))
                .collect()
        };
        assert_eq!(
            pairs("mastodon1"),
            vec![
                ("/".to_owned(), "http://10.43.0.21:3000".to_owned()),
                (
                    "/api/v1/streaming".to_owned(),
                    "http://10.43.0.22:4000".to_owned()
                ),
            ]
        );
        assert_eq!(
            pairs("mastodon2"),
            vec![("/".to_owned(), "http://[fd00::21]:3000".to_owned())]
        );
    }
}
