//! The certificate material a lab's manifests embed, as PEM text.
//!
//! Issuing it is `fedilab-ca`'s job; this crate only places it: the CA
//! certificate in the ConfigMap behind every pod's trust bundle, each leaf in
//! its instance's TLS Secret.

use std::collections::BTreeMap;

use fedilab_profile::{InstanceName, InstanceSpec, LabSpec, names};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::lab::lab_meta;

/// The lab CA certificate and one leaf per instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The lab CA certificate (PEM). Never its key.
    pub ca_cert_pem: String,
    /// Each instance's serving certificate and key.
    pub leaves: BTreeMap<InstanceName, LeafPem>,
}

/// One serving certificate (PEM) and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafPem {
    /// The leaf certificate, followed by nothing else (the CA is trusted
    /// separately).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// The instance's TLS Secret: the leaf Traefik serves for its host.
pub(crate) fn tls_secret(
    spec: &LabSpec,
    instance: &InstanceSpec,
    labels: BTreeMap<String, String>,
    leaf: &LeafPem,
) -> Secret {
    let data = [("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect();
    Secret {
        metadata: lab_meta(spec, &names::tls_secret(&instance.name), labels),
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}
