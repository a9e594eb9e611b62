//! Which API resource (group, version, plural, scope) each kind fedilab
//! emits lives at: a fixed table for the built-in kinds, API discovery for
//! the rest (k3s's helm.cattle.io CRDs), asked once per group version.

use std::collections::BTreeMap;

use fedilab_manifest::{LabManifests, Manifest};
use fedilab_profile::names;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::Client;
use kube::core::ApiResource;

use crate::Cluster;

/// An API resource and whether its objects live in a namespace.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

fn builtin<K: k8s_openapi::Resource + kube::Resource<DynamicType = ()>>(
    namespaced: bool,
) -> Resolved {
    Resolved {
        resource: ApiResource::erase::<K>(&()),
        namespaced,
    }
}

/// The built-in kinds fedilab creates or looks for, in the order `down`
/// reports them.
pub(crate) fn builtin_kinds() -> Vec<Resolved> {
    vec![
        builtin::<Namespace>(false),
        builtin::<NetworkPolicy>(true),
        builtin::<ConfigMap>(true),
        builtin::<Secret>(true),
        builtin::<PersistentVolumeClaim>(true),
        builtin::<Service>(true),
        builtin::<EndpointSlice>(true),
        builtin::<StatefulSet>(true),
        builtin::<Deployment>(true),
        builtin::<ReplicaSet>(true),
        builtin::<Ingress>(true),
        builtin::<Job>(true),
        builtin::<Pod>(true),
    ]
}

/// The resource of k3s's HelmChartConfig, as k3s serves it (used when
/// discovery is not worth a request: `status` and `down` only read it).
pub(crate) fn helm_chart_config() -> Resolved {
    Resolved {
        resource: ApiResource {
            group: names::HELM_CATTLE_GROUP.to_owned(),
            version: "v1".to_owned(),
            api_version: "helm.cattle.io/v1".to_owned(),
            kind: names::HELM_CHART_CONFIG_KIND.to_owned(),
            plural: names::HELM_CHART_CONFIG_PLURAL.to_owned(),
        },
        namespaced: true,
    }
}

/// A kind the cluster does not serve.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// Discovery of the group version failed (404: the CRD is not installed).
    #[error("the cluster does not serve {api_version} (needed for {kind} {name}){hint}")]
    GroupMissing {
        /// The group version, such as `helm.cattle.io/v1`.
        api_version: String,
        /// The kind.
        kind: String,
        /// The object that needs it.
        name: String,
        /// What to do about it.
        hint: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// The group version exists but lacks the kind.
    #[error("the cluster serves {api_version} but not its kind {kind}{hint}")]
    KindMissing {
        /// The group version.
        api_version: String,
        /// The kind.
        kind: String,
        /// What to do about it.
        hint: String,
    },
}

fn hint_for(api_version: &str) -> String {
    if api_version.starts_with("helm.cattle.io/") {
        ".\nk3s's Helm controller provides it; it is missing when k3s runs with \
         --disable-helm-controller or the cluster is not k3s. fedilab needs it to \
         configure k3s's Traefik: use k3s with its defaults (on a fresh VM: \
         `fedilab bootstrap`)"
            .to_owned()
    } else {
        String::new()
    }
}

/// Where every kind of a lab's objects lives, resolved before anything is
/// applied.
#[derive(Debug, Clone, Default)]
pub struct ResourceMap {
    by_kind: BTreeMap<(String, String), Resolved>,
}

impl ResourceMap {
    /// Resolves every kind in `manifests`: built-in kinds from the table,
    /// others by discovery (one request per group version).
    ///
    /// # Errors
    /// [`ResourceError`] when the cluster does not serve a kind.
    pub async fn resolve(
        cluster: &Cluster,
        manifests: &LabManifests,
    ) -> Result<ResourceMap, ResourceError> {
        let mut map = ResourceMap::builtin();
        for object in &manifests.objects {
            let key = (object.api_version().to_owned(), object.kind().to_owned());
            if map.by_kind.contains_key(&key) {
                continue;
            }
            let resolved = discover(&cluster.client, object).await?;
            map.insert(resolved);
        }
        Ok(map)
    }

    /// Only the built-in kinds: enough for objects that need no discovery
    /// (an attached server's Secret, Service, EndpointSlice and Ingress).
    pub(crate) fn builtin() -> ResourceMap {
        let mut map = ResourceMap::default();
        for kind in builtin_kinds() {
            map.insert(kind);
        }
        map
    }

    fn insert(&mut self, resolved: Resolved) {
        self.by_kind.insert(
            (
                resolved.resource.api_version.clone(),
                resolved.resource.kind.clone(),
            ),
            resolved,
        );
    }

    pub(crate) fn get(&self, object: &Manifest) -> Option<&Resolved> {
        self.by_kind
            .get(&(object.api_version().to_owned(), object.kind().to_owned()))
    }
}

async fn discover(client: &Client, object: &Manifest) -> Result<Resolved, ResourceError> {
    let api_version = object.api_version();
    let list = client
        .list_api_group_resources(api_version)
        .await
        .map_err(|source| ResourceError::GroupMissing {
            api_version: api_version.to_owned(),
            kind: object.kind().to_owned(),
            name: object.describe(),
            hint: hint_for(api_version),
            source,
        })?;
    let found = list
        .resources
        .iter()
        .find(|r| r.kind == object.kind() && !r.name.contains('/'))
        .ok_or_else(|| ResourceError::KindMissing {
            api_version: api_version.to_owned(),
            kind: object.kind().to_owned(),
            hint: hint_for(api_version),
        })?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), api_version.to_owned()),
    };
    Ok(Resolved {
        resource: ApiResource {
            group,
            version,
            api_version: api_version.to_owned(),
            kind: found.kind.clone(),
            plural: found.name.clone(),
        },
        namespaced: found.namespaced,
    })
}

#[cfg(test)]
mod tests {
    use fedilab_manifest::Manifest;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    use super::*;

    #[test]
    fn endpoint_slices_are_applied_to_the_discovery_api() {
        let mut map = ResourceMap::default();
        for kind in builtin_kinds() {
            map.insert(kind);
        }
        let resolved = map
            .get(&Manifest::EndpointSlice(EndpointSlice::default()))
            .expect("a built-in kind");
        assert!(resolved.namespaced);
        assert_eq!(resolved.resource.group, "discovery.k8s.io");
        assert_eq!(resolved.resource.version, "v1");
        assert_eq!(resolved.resource.plural, "endpointslices");
    }
}
