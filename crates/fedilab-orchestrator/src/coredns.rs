//! k3s's CoreDNS, shared by every lab: reading the zones other labs claim in
//! `coredns-custom` (pure), and the rollout restart that makes CoreDNS read
//! a changed key (ConfigMap volume updates take a minute or more).

use std::collections::BTreeMap;

use fedilab_profile::{Domain, names};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::Cluster;

/// The zones a Corefile server block serves: `fediverse.local` for a block
/// opening with `fediverse.local:53 {`.
pub fn coredns_zones(block: &str) -> Vec<String> {
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.ends_with('{') && !l.starts_with("template"))
        .flat_map(|l| {
            l.trim_end_matches('{')
                .split_whitespace()
                .map(|zone| {
                    let zone = zone.split_once(':').map_or(zone, |(z, _)| z);
                    zone.trim_end_matches('.').to_ascii_lowercase()
                })
                .filter(|z| !z.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The other labs (by their `coredns-custom` key) whose zones overlap
/// `domain`: the same zone, or one inside the other. `own_key` is skipped.
pub fn domain_conflicts(
    data: &BTreeMap<String, String>,
    own_key: &str,
    domain: &Domain,
) -> Vec<(String, String)> {
    let ours = domain.as_str().trim_end_matches('.').to_ascii_lowercase();
    let overlaps = |zone: &str| {
        zone == ours || zone.ends_with(&format!(".{ours}")) || ours.ends_with(&format!(".{zone}"))
    };
    let mut out = Vec::new();
    for (key, block) in data {
        if key == own_key || !key.starts_with("fedilab-") || !key.ends_with(".server") {
            continue;
        }
        let lab = key
            .trim_start_matches("fedilab-")
            .trim_end_matches(".server")
            .to_owned();
        if let Some(zone) = coredns_zones(block).into_iter().find(|z| overlaps(z)) {
            out.push((lab, zone));
        }
    }
    out
}

/// Restarts CoreDNS the way `kubectl rollout restart` does. A cluster
/// without k3s's CoreDNS Deployment is not an error: `Ok(false)`.
pub(crate) async fn restart(cluster: &Cluster) -> Result<bool, kube::Error> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": {
            names::RESTARTED_AT_ANNOTATION: now.to_string()
        }}}}
    });
    let params = PatchParams {
        field_manager: Some(names::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match api
        .patch(names::COREDNS_DEPLOYMENT, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "# fedilab lab \"main\"\nfediverse.local:53 {\n    errors\n    template IN A fediverse.local {\n    }\n}\n";

    #[test]
    fn zones_of_a_server_block() {
        assert_eq!(coredns_zones(BLOCK), vec!["fediverse.local".to_owned()]);
        assert_eq!(
            coredns_zones("a.test:53 b.test. {\n}\n"),
            vec!["a.test".to_owned(), "b.test".to_owned()]
        );
    }

    #[test]
    fn conflicts_are_same_or_nested_zones_of_other_labs() {
        let domain: Domain = "fediverse.local".parse().expect("valid");
        let data = BTreeMap::from([
            ("fedilab-main.server".to_owned(), BLOCK.to_owned()),
            ("fedilab-other.server".to_owned(), BLOCK.to_owned()),
            (
                "fedilab-sub.server".to_owned(),
                "x.fediverse.local:53 {\n}\n".to_owned(),
            ),
            (
                "fedilab-far.server".to_owned(),
                "fediverse.test:53 {\n}\n".to_owned(),
            ),
            ("user.server".to_owned(), BLOCK.to_owned()),
        ]);
        assert_eq!(
            domain_conflicts(&data, "fedilab-main.server", &domain),
            vec![
                ("other".to_owned(), "fediverse.local".to_owned()),
                ("sub".to_owned(), "x.fediverse.local".to_owned()),
            ]
        );
    }
}
