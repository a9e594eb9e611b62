//! The built objects of a lab, in apply order, and their YAML and JSON forms.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::DynamicObject;
use serde::Serialize;

/// One Kubernetes object. Typed where k8s-openapi has the type; k3s's own
/// CRDs (helm.cattle.io) are [`DynamicObject`]s.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(missing_docs)] // The variants are the Kubernetes kinds they name.
pub enum Manifest {
    Namespace(Namespace),
    NetworkPolicy(NetworkPolicy),
    ConfigMap(ConfigMap),
    Secret(Secret),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Service(Service),
    EndpointSlice(EndpointSlice),
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    Ingress(Ingress),
    Job(Job),
    Dynamic(DynamicObject),
}

impl Manifest {
    /// `apiVersion`, such as `apps/v1`.
    pub fn api_version(&self) -> &str {
        match self {
            Manifest::Namespace(_) => Namespace::API_VERSION,
            Manifest::NetworkPolicy(_) => NetworkPolicy::API_VERSION,
            Manifest::ConfigMap(_) => ConfigMap::API_VERSION,
            Manifest::Secret(_) => Secret::API_VERSION,
            Manifest::PersistentVolumeClaim(_) => PersistentVolumeClaim::API_VERSION,
            Manifest::Service(_) => Service::API_VERSION,
            Manifest::EndpointSlice(_) => EndpointSlice::API_VERSION,
            Manifest::StatefulSet(_) => StatefulSet::API_VERSION,
            Manifest::Deployment(_) => Deployment::API_VERSION,
            Manifest::Ingress(_) => Ingress::API_VERSION,
            Manifest::Job(_) => Job::API_VERSION,
            Manifest::Dynamic(d) => d.types.as_ref().map_or("", |t| t.api_version.as_str()),
        }
    }

    /// `kind`, such as `Deployment`.
    pub fn kind(&self) -> &str {
        match self {
            Manifest::Namespace(_) => Namespace::KIND,
            Manifest::NetworkPolicy(_) => NetworkPolicy::KIND,
            Manifest::ConfigMap(_) => ConfigMap::KIND,
            Manifest::Secret(_) => Secret::KIND,
            Manifest::PersistentVolumeClaim(_) => PersistentVolumeClaim::KIND,
            Manifest::Service(_) => Service::KIND,
            Manifest::EndpointSlice(_) => EndpointSlice::KIND,
            Manifest::StatefulSet(_) => StatefulSet::KIND,
            Manifest::Deployment(_) => Deployment::KIND,
            Manifest::Ingress(_) => Ingress::KIND,
            Manifest::Job(_) => Job::KIND,
            Manifest::Dynamic(d) => d.types.as_ref().map_or("", |t| t.kind.as_str()),
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::Namespace(o) => &o.metadata,
            Manifest::NetworkPolicy(o) => &o.metadata,
            Manifest::ConfigMap(o) => &o.metadata,
            Manifest::Secret(o) => &o.metadata,
            Manifest::PersistentVolumeClaim(o) => &o.metadata,
            Manifest::Service(o) => &o.metadata,
            Manifest::EndpointSlice(o) => &o.metadata,
            Manifest::StatefulSet(o) => &o.metadata,
            Manifest::Deployment(o) => &o.metadata,
            Manifest::Ingress(o) => &o.metadata,
            Manifest::Job(o) => &o.metadata,
            Manifest::Dynamic(o) => &o.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object's namespace; `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// `Kind/namespace/name`, for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{ns}/{}", self.kind(), self.name()),
            None => format!("{}/{}", self.kind(), self.name()),
        }
    }
}

/// Every object of one instance, grouped by apply phase.
pub(crate) struct InstanceObjects {
    pub config: Vec<Manifest>,
    pub stateful: Vec<Manifest>,
    pub workloads: Vec<Manifest>,
    pub jobs: Vec<Manifest>,
}

/// Every object of a lab, in the order to apply them: namespace and egress
/// policy, kube-system objects, config and secrets, stateful services,
/// workloads and routes, jobs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabManifests {
    /// The objects, in apply order.
    pub objects: Vec<Manifest>,
}

/// The objects could not be written out (a serializer bug, never bad input).
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize {object} as {format}: {message}")]
pub struct OutputError {
    /// The object, as `Kind/namespace/name`.
    pub object: String,
    /// YAML or JSON.
    pub format: &'static str,
    /// The serializer's message.
    pub message: String,
}

impl LabManifests {
    /// Multi-document YAML, one document per object, in apply order.
    ///
    /// # Errors
    /// [`OutputError`] if an object cannot be serialized.
    pub fn to_yaml(&self) -> Result<String, OutputError> {
        let mut out = String::new();
        for object in &self.objects {
            let doc = serde_saphyr::to_string(object).map_err(|e| OutputError {
                object: object.describe(),
                format: "YAML",
                message: e.to_string(),
            })?;
            out.push_str("---\n");
            out.push_str(&doc);
            if !doc.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }

    /// A `v1` `List` of every object, as pretty JSON (`kubectl apply -f`
    /// reads it).
    ///
    /// # Errors
    /// [`OutputError`] if an object cannot be serialized.
    pub fn to_json(&self) -> Result<String, OutputError> {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": self.objects,
        });
        serde_json::to_string_pretty(&list)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| OutputError {
                object: "List".to_owned(),
                format: "JSON",
                message: e.to_string(),
            })
    }
}
