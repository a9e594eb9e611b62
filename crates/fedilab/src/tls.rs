//! Glue between the lab CA (`fedilab-ca`) and the manifests: the PEMs a lab's
//! objects embed, from the CA stored under the data dir.
//!
//! Issuing, reuse and file modes are `fedilab_ca::CaStore`'s job; this only
//! picks the names (one leaf per instance host) and says on stderr when it
//! had to create a CA.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use fedilab_ca::{CaStore, HostName, Init, LeafAction};
use fedilab_manifest::{LeafPem, TlsMaterial};
use fedilab_profile::LabSpec;

/// The lab CA certificate and one leaf per instance, from the CA of
/// `spec.domain` under `data_dir` (created on first use, noted on stderr).
/// A stored leaf is reused byte for byte while valid for more than 30 days
/// with unchanged names, so re-rendering does not churn Secrets.
///
/// # Errors
/// An unusable CA directory (unreadable, a key others may read, a CA for
/// another domain) or a failed write, with the path concerned.
pub fn lab_tls(spec: &LabSpec, data_dir: &Path) -> anyhow::Result<TlsMaterial> {
    let now = SystemTime::now();
    let store = CaStore::new(data_dir, &spec.domain);
    let (ca, init) = store.load_or_init(&fedilab_ca::local_host_name(), now)?;
    if init == Init::Created {
        eprintln!(
            "note: created a lab CA for {} in {}; run `fedilab ca trust --domain {}` \
             to trust it on this host",
            spec.domain,
            store.dir().display(),
            spec.domain
        );
    }
    let mut leaves = BTreeMap::new();
    for instance in &spec.instances {
        let host = HostName::from_fqdn(&instance.host, &spec.domain)
            .with_context(|| format!("instance {}", instance.name))?;
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
    Ok(TlsMaterial {
        ca_cert_pem: ca.cert_pem().to_owned(),
        leaves,
    })
}

#[cfg(test)]
mod tests {
    use fedilab_profile::{DEFAULT_PROFILE_YAML, Overrides};

    use super::*;

    #[test]
    fn one_leaf_per_instance_reused_on_the_next_render() {
        let data = tempfile::tempdir().unwrap();
        let spec = LabSpec::from_yaml(
            DEFAULT_PROFILE_YAML,
            "test",
            &Overrides {
                instances: Some(3),
                ..Overrides::default()
            },
        )
        .unwrap();
        let first = lab_tls(&spec, data.path()).unwrap();
        assert_eq!(first.leaves.len(), 3);
        for instance in &spec.instances {
            let leaf = &first.leaves[&instance.name];
            let info = fedilab_ca::CertInfo::from_pem(&leaf.cert_pem).unwrap();
            assert_eq!(info.dns_names, [instance.host.as_str()]);
            assert!(leaf.key_pem.contains("PRIVATE KEY"));
        }
        assert_eq!(lab_tls(&spec, data.path()).unwrap(), first);
    }

    #[test]
    fn external_instances_get_a_leaf_for_their_host_too() {
        let data = tempfile::tempdir().unwrap();
        let spec = LabSpec::from_yaml(
            "instances:\n  - name: mastodon1\n  - {name: mine, kind: external, url: \"http://127.0.0.1:3000\"}\n",
            "test",
            &Overrides::default(),
        )
        .unwrap();
        let tls = lab_tls(&spec, data.path()).unwrap();
        let info =
            fedilab_ca::CertInfo::from_pem(&tls.leaves[&"mine".parse().unwrap()].cert_pem).unwrap();
        assert_eq!(info.dns_names, ["mine.fediverse.local"]);
    }
}
