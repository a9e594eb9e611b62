//! Builds every Kubernetes object of a lab from its [`LabSpec`], as typed
//! k8s-openapi structs (DynamicObject only for k3s's own CRDs). Never YAML
//! text templates. Pure: no network, no cluster, no files. Generated secrets
//! and certificates come in as arguments.
//!
//! ```text
//! build(&LabSpec, &LabSecrets, &TlsMaterial, &Routing) -> LabManifests (apply order)
//! build_on(.., &ClusterFacts)   the same for a cluster with another domain or IPv6
//! ```
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

mod external;
mod facts;
mod federation;
mod gotosocial;
mod instance;
mod lab;
mod mastodon;
mod misskey;
mod objects;
mod pod;
mod routing;
mod secrets;
mod setup;
mod tls;

use std::net::SocketAddr;

use fedilab_profile::{InstanceName, InstanceSpec, InstanceSpecKind, LabSpec};

pub use facts::ClusterFacts;
pub use federation::{ALLOW_DOMAINS_ENV, ALLOW_DOMAINS_RB, allow_domains_command, allowed_domains};
pub use instance::{POSTGRES_IMAGE, REDIS_IMAGE, SYSTEM_BUNDLE_PATH, TRUST_BUNDLE_PATH};
pub use lab::{corefile_server_block, corefile_server_block_on};
pub use mastodon::{DB_NAME, DB_USER, MEDIA_DIR, WEB_PORT, check_pod, client_check_pod};
pub use objects::{LabManifests, Manifest, OutputError};
pub use routing::Routing;
pub use secrets::{LabSecrets, MastodonSecrets, seed_from_text};
pub use tls::{LeafPem, TlsMaterial};

/// What the inputs of [`build`] lack, or why they do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No generated secrets for an instance fedilab runs.
    #[error("no generated secrets for instance {0}")]
    MissingSecrets(InstanceName),
    /// No certificate for an instance.
    #[error("no TLS certificate for instance {0}")]
    MissingCertificate(InstanceName),
    /// An external instance with [`Routing::Direct`].
    #[error(
        "instance {0} is an external server, and external servers need the inspector: \
         the cluster reaches them only through it"
    )]
    ExternalNeedsInspector(InstanceName),
    /// A [`Routing::Inspector`] proxy address that cannot be an endpoint.
    #[error("cannot route to the inspector at {addr}: {problem}")]
    ProxyAddress {
        /// The address given.
        addr: SocketAddr,
        /// What is wrong with it, and what to give instead.
        problem: String,
    },
}

/// Builds every object of the lab for a single-stack cluster with k3s's
/// default domain: [`build_on`] with [`ClusterFacts::default`].
///
/// # Errors
/// As [`build_on`].
pub fn build(
    spec: &LabSpec,
    secrets: &LabSecrets,
    tls: &TlsMaterial,
    routing: &Routing,
) -> Result<LabManifests, BuildError> {
    build_on(spec, secrets, tls, routing, &ClusterFacts::default())
}

/// Builds every object of the lab, in apply order: the namespace and its
/// egress policy first (so no pod ever runs unfenced), then the lab's
/// CoreDNS key in kube-system, config and secrets, stateful services,
/// workloads and routes, and the setup Jobs last. `routing` says whether
/// Traefik sends each instance's traffic through the inspector; external
/// instances need it, and have no secrets in `secrets`. `facts` are what
/// preflight read of the cluster: its domain (the CoreDNS key's CNAME
/// target) and its IPv6 networks (added to the egress networks, so the
/// policy and `ALLOWED_PRIVATE_ADDRESSES` cover them).
///
/// # Errors
/// [`BuildError`] when `secrets` lacks a Mastodon instance of `spec` or
/// `tls` any instance, when an external instance is routed directly, or
/// when the inspector's address cannot be an endpoint.
pub fn build_on(
    spec: &LabSpec,
    secrets: &LabSecrets,
    tls: &TlsMaterial,
    routing: &Routing,
    facts: &ClusterFacts,
) -> Result<LabManifests, BuildError> {
    let proxy = routing.proxy()?;
    let widened = facts.apply_to(spec);
    let spec = &widened;
    let mut objects = vec![
        Manifest::Namespace(lab::namespace(spec)),
        Manifest::NetworkPolicy(lab::egress_policy(spec)),
        Manifest::ConfigMap(lab::coredns_custom(spec, facts)),
        Manifest::ConfigMap(lab::ca_configmap(spec, &tls.ca_cert_pem)),
        Manifest::ConfigMap(lab::setup_scripts(spec)),
    ];
    let mut stateful = Vec::new();
    let mut workloads = Vec::new();
    let mut jobs = Vec::new();
    for instance in &spec.instances {
        let leaf = || {
            tls.leaves
                .get(&instance.name)
                .ok_or_else(|| BuildError::MissingCertificate(instance.name.clone()))
        };
        let own_secrets = || {
            secrets
                .instances
                .get(&instance.name)
                .ok_or_else(|| BuildError::MissingSecrets(instance.name.clone()))
        };
        let built = match &instance.kind {
            InstanceSpecKind::Mastodon(m) => {
                mastodon::build(spec, instance, m, own_secrets()?, leaf()?, proxy)
            }
            InstanceSpecKind::Misskey(m) => {
                misskey::build(spec, instance, m, own_secrets()?, leaf()?, proxy)
            }
            InstanceSpecKind::GoToSocial(g) => {
                gotosocial::build(spec, instance, g, own_secrets()?, leaf()?, proxy)
            }
            InstanceSpecKind::External(e) => {
                let proxy = proxy
                    .ok_or_else(|| BuildError::ExternalNeedsInspector(instance.name.clone()))?;
                external::build(spec, instance, e, leaf()?, proxy)
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

/// The objects of one external server joining a running lab
/// (`fedilab attach`): its TLS Secret, the inspector route (Service and
/// EndpointSlice) and its Ingress, exactly as [`build`] makes them for a
/// `kind: external` instance of the profile.
///
/// # Errors
/// [`BuildError::ExternalNeedsInspector`] when `instance` is not external,
/// [`BuildError::ProxyAddress`] when `proxy` cannot be an endpoint.
pub fn build_external(
    spec: &LabSpec,
    instance: &InstanceSpec,
    leaf: &LeafPem,
    proxy: SocketAddr,
) -> Result<LabManifests, BuildError> {
    let InstanceSpecKind::External(external) = &instance.kind else {
        return Err(BuildError::ExternalNeedsInspector(instance.name.clone()));
    };
    let proxy = Routing::Inspector { proxy }
        .proxy()?
        .ok_or_else(|| BuildError::ExternalNeedsInspector(instance.name.clone()))?;
    let built = external::build(spec, instance, external, leaf, proxy);
    let mut objects = built.config;
    objects.extend(built.stateful);
    objects.extend(built.workloads);
    objects.extend(built.jobs);
    Ok(LabManifests { objects })
}
