//! Builds every Kubernetes object of a lab from its [`LabSpec`], as typed
//! k8s-openapi structs (DynamicObject only for k3s's own CRDs). Never YAML
//! text templates. Pure: no network, no cluster, no files. Generated secrets
//! and certificates come in as arguments.
//!
//! ```text
//! build(&LabSpec, &LabSecrets, &TlsMaterial) -> LabManifests (apply order)
//! ```
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

mod lab;
mod mastodon;
mod objects;
mod secrets;
mod tls;

use fedilab_profile::{InstanceName, InstanceSpecKind, LabSpec};

pub use lab::corefile_server_block;
pub use mastodon::{
    POSTGRES_IMAGE, REDIS_IMAGE, SYSTEM_BUNDLE_PATH, TRUST_BUNDLE_PATH, WEB_PORT, check_pod,
};
pub use objects::{LabManifests, Manifest, OutputError};
pub use secrets::{LabSecrets, MastodonSecrets, seed_from_text};
pub use tls::{LeafPem, TlsMaterial};

/// What the inputs of [`build`] lack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No generated secrets for an instance.
    #[error("no generated secrets for instance {0}")]
    MissingSecrets(InstanceName),
    /// No certificate for an instance.
    #[error("no TLS certificate for instance {0}")]
    MissingCertificate(InstanceName),
}

/// Builds every object of the lab, in apply order: the namespace and its
/// egress policy first (so no pod ever runs unfenced), then kube-system
/// objects (CoreDNS, Traefik), config and secrets, stateful services,
/// workloads and routes, and the setup Jobs last.
///
/// # Errors
/// [`BuildError`] when `secrets` or `tls` lack an instance of `spec`.
pub fn build(
    spec: &LabSpec,
    secrets: &LabSecrets,
    tls: &TlsMaterial,
) -> Result<LabManifests, BuildError> {
    let mut objects = vec![
        Manifest::Namespace(lab::namespace(spec)),
        Manifest::NetworkPolicy(lab::egress_policy(spec)),
        Manifest::ConfigMap(lab::coredns_custom(spec)),
        Manifest::Dynamic(lab::traefik_config()),
        Manifest::ConfigMap(lab::ca_configmap(spec, &tls.ca_cert_pem)),
        Manifest::ConfigMap(lab::setup_scripts(spec)),
    ];
    let mut stateful = Vec::new();
    let mut workloads = Vec::new();
    let mut jobs = Vec::new();
    for instance in &spec.instances {
        let instance_secrets = secrets
            .instances
            .get(&instance.name)
            .ok_or_else(|| BuildError::MissingSecrets(instance.name.clone()))?;
        let leaf = tls
            .leaves
            .get(&instance.name)
            .ok_or_else(|| BuildError::MissingCertificate(instance.name.clone()))?;
        let built = match &instance.kind {
            InstanceSpecKind::Mastodon(m) => {
                mastodon::build(spec, instance, m, instance_secrets, leaf)
            }
        };
        objects.extend(built.config);
        stateful.extend(built.stateful);
        workloads.extend(built.workloads);
        jobs.extend(built.jobs);
    }
    objects.extend(stateful);
    objects.extend(workloads);
    objects.extend(jobs);
    Ok(LabManifests { objects })
}
