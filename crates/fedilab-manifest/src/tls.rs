//! The certificate material a lab's manifests embed, as PEM text.
//!
//! Issuing it is `fedilab-ca`'s job; this crate only places it: the CA
//! certificate in the ConfigMap behind every pod's trust bundle, each leaf in
//! its instance's TLS Secret.

use std::collections::BTreeMap;

use fedilab_profile::InstanceName;

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
