//! The lab CA certificate and one leaf per instance, from the CA of the
//! lab's domain under the data dir: what a lab's objects embed.
//!
//! Issuing, reuse and file modes are `fedilab_ca::CaStore`'s job; this only
//! picks the names (one leaf per instance host).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fedilab_ca::{CaStore, HostName, HostNameError, Init, InitError, LeafAction, LeafError};
use fedilab_manifest::{LeafPem, TlsMaterial};
use fedilab_profile::{InstanceName, LabSpec};

/// Why the lab's certificates could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA could not be loaded or created.
    #[error(transparent)]
    Ca(#[from] InitError),
    /// An instance host is outside the lab domain (a bug: the spec is valid).
    #[error("instance {instance}")]
    Host {
        /// The instance.
        instance: InstanceName,
        /// Why.
        #[source]
        source: HostNameError,
    },
    /// A leaf could not be issued or stored.
    #[error(transparent)]
    Leaf(#[from] LeafError),
}

/// The lab CA certificate and one leaf per instance of `spec`, from the CA
/// of `spec.domain` under `data_dir` (created on first use: the second
/// value is then the new CA's directory). A stored leaf is reused byte for
/// byte while valid for more than 30 days with unchanged names, so
/// re-rendering does not churn Secrets.
///
/// # Errors
/// [`TlsError`]: an unusable CA directory (unreadable, a key others may
/// read, a CA for another domain) or a failed write, with the path.
pub fn lab_tls(
    spec: &LabSpec,
    data_dir: &Path,
) -> Result<(TlsMaterial, Option<PathBuf>), TlsError> {
    let now = SystemTime::now();
    let store = CaStore::new(data_dir, &spec.domain);
    let (ca, init) = store.load_or_init(&fedilab_ca::local_host_name(), now)?;
    let created = (init == Init::Created).then(|| store.dir().to_owned());
    let mut leaves = BTreeMap::new();
    for instance in &spec.instances {
        let host =
            HostName::from_fqdn(&instance.host, &spec.domain).map_err(|source| TlsError::Host {
                instance: instance.name.clone(),
                source,
            })?;
        let stored = store.ensure_leaf(&ca, &[host], now)?;
        if let LeafAction::Issued(why) = &stored.action {
            tracing::info!(
                instance = %instance.name,
                path = %stored.paths.cert.display(),
                "issued a certificate: {why}"
            );
        }
        leaves.insert(
            instance.name.clone(),
            LeafPem {
                cert_pem: stored.leaf.cert_pem,
                key_pem: stored.leaf.key_pem.expose().to_owned(),
            },
        );
    }
    let tls = TlsMaterial {
        ca_cert_pem: ca.cert_pem().to_owned(),
        leaves,
    };
    Ok((tls, created))
}

#[cfg(test)]
mod tests {
    use fedilab_profile::{DEFAULT_PROFILE_YAML, InstanceCounts, Overrides};

    use super::*;

    #[test]
    fn one_leaf_per_instance_reused_on_the_next_render() {
        let data = tempfile::tempdir().expect("tempdir");
        let spec = LabSpec::from_yaml(
            DEFAULT_PROFILE_YAML,
            "test",
            &Overrides {
                instances: Some(InstanceCounts::Total(3)),
                ..Overrides::default()
            },
        )
        .expect("spec");
        let (first, created) = lab_tls(&spec, data.path()).expect("tls");
        assert_eq!(created, Some(data.path().join("ca/fediverse.local")));
        assert_eq!(first.leaves.len(), 3);
        for instance in &spec.instances {
            let leaf = &first.leaves[&instance.name];
            let info = fedilab_ca::CertInfo::from_pem(&leaf.cert_pem).expect("cert");
            assert_eq!(info.dns_names, [instance.host.as_str()]);
            assert!(leaf.key_pem.contains("PRIVATE KEY"));
        }
        assert_eq!(lab_tls(&spec, data.path()).expect("again"), (first, None));
    }

    #[test]
    fn external_instances_get_a_leaf_for_their_host_too() {
        let data = tempfile::tempdir().expect("tempdir");
        let spec = LabSpec::from_yaml(
            "instances:\n  - name: mastodon1\n  - {name: mine, kind: external, url: \"http://127.0.0.1:3000\"}\n",
            "test",
            &Overrides::default(),
        )
        .expect("spec");
        let (tls, _) = lab_tls(&spec, data.path()).expect("tls");
        let mine: InstanceName = "mine".parse().expect("name");
        let info = fedilab_ca::CertInfo::from_pem(&tls.leaves[&mine].cert_pem).expect("cert");
        assert_eq!(info.dns_names, ["mine.fediverse.local"]);
    }
}
