//! k3s's CoreDNS, shared by every lab and by the user's own configuration:
//! which names the keys of `coredns-custom` serve and which of them clash
//! with a lab domain, the cluster domain in CoreDNS's Corefile and the
//! cluster's IPv6 networks (pure parsers); the rollout restart that makes
//! CoreDNS read a changed key, the bounded wait until the rollout is
//! available again, the tail of the CoreDNS pod's log, and the removal of
//! one lab's key. Never writes a key that is not the lab's own.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use fedilab_profile::{Cidr, Domain, LabName, names};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, Preconditions};

use crate::Cluster;

/// The zones a Corefile server block serves: `fediverse.local` for a block
/// opening with `fediverse.local:53 {`. Only lines that open a block at the
/// top level count, so a plugin's own block (`kubernetes cluster.local {`,
/// `template IN A x {`) inside a server block is not taken for a zone.
pub fn coredns_zones(block: &str) -> Vec<String> {
    let mut depth: i64 = 0;
    let mut zones = Vec::new();
    for line in block.lines() {
        let line = line.split_once('#').map_or(line, |(code, _)| code).trim();
        if depth == 0 && line.ends_with('{') {
            zones.extend(
                line.trim_end_matches('{')
                    .split_whitespace()
                    .map(normalize_name)
                    .filter(|z| !z.is_empty()),
            );
        }
        depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
        depth = depth.max(0);
    }
    zones
}

/// `Fediverse.Local.:53` -> `fediverse.local`; a scheme such as `dns://`
/// goes too.
fn normalize_name(token: &str) -> String {
    let token = token.split_once("://").map_or(token, |(_, rest)| rest);
    let token = token.split_once(':').map_or(token, |(name, _)| name);
    token.trim_end_matches('.').to_ascii_lowercase()
}

/// The domain names an `*.override` key mentions. Such a key is pasted into
/// CoreDNS's main server block (`hosts`, `rewrite`, `template`, `file`
/// entries), so it declares no zone, but any name it mentions is one it
/// answers or redirects: every word that looks like a DNS name with a dot.
fn override_names(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(code, _)| code))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || "\"'{}()".contains(c)))
        .filter(|w| w.contains('.') && w.parse::<IpAddr>().is_err() && !w.contains('/'))
        .map(normalize_name)
        .filter(|w| {
            w.contains('.')
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'*')
        })
        .map(|w| w.trim_start_matches("*.").to_owned())
        .collect()
}

/// A key of `coredns-custom` that already serves (part of) a lab domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConflict {
    /// The key, such as `fedilab-other.server` or `mycompany.override`.
    pub key: String,
    /// The lab that owns the key, when it is a lab's.
    pub lab: Option<LabName>,
    /// The overlapping zone or name it serves.
    pub zone: String,
}

/// Every key of `coredns-custom` (`*.server` and `*.override`, a lab's or
/// the user's own) that serves a zone overlapping `domain`: the same zone,
/// or one inside the other. A second server block for a zone makes CoreDNS
/// exit ("already defined"), which takes cluster DNS down for the whole
/// node. `own_key` (the lab's own key, applied again) is skipped; other keys
/// are files the blocks read and serve nothing themselves.
pub fn domain_conflicts(
    data: &BTreeMap<String, String>,
    own_key: &str,
    domain: &Domain,
) -> Vec<ZoneConflict> {
    let ours = domain.as_str().trim_end_matches('.').to_ascii_lowercase();
    let overlaps = |zone: &str| {
        zone == ours || zone.ends_with(&format!(".{ours}")) || ours.ends_with(&format!(".{zone}"))
    };
    let mut out = Vec::new();
    for (key, block) in data {
        if key == own_key {
            continue;
        }
        let served = if key.ends_with(".server") {
            coredns_zones(block)
        } else if key.ends_with(".override") {
            // Mentioning a parent zone does not capture the lab's names.
            override_names(block)
                .into_iter()
                .filter(|n| *n == ours || n.ends_with(&format!(".{ours}")))
                .collect()
        } else {
            continue;
        };
        if let Some(zone) = served.into_iter().find(|z| overlaps(z)) {
            out.push(ZoneConflict {
                key: key.clone(),
                lab: names::lab_of_coredns_key(key),
                zone,
            });
        }
    }
    out
}

/// The cluster domain in CoreDNS's Corefile: the first zone of its
/// `kubernetes` plugin line that is not a reverse zone
/// (`kubernetes cluster.local in-addr.arpa ip6.arpa {` gives
/// `cluster.local`). `None` when the Corefile has no such line.
pub fn cluster_domain_from_corefile(corefile: &str) -> Option<String> {
    corefile
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(code, _)| code).trim())
        .filter_map(|l| l.strip_prefix("kubernetes"))
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .find_map(|rest| {
            rest.split_whitespace()
                .take_while(|w| *w != "{")
                .map(normalize_name)
                .find(|z| !z.is_empty() && !z.ends_with("in-addr.arpa") && !z.ends_with("ip6.arpa"))
        })
}

/// The cluster's IPv6 networks: the IPv6 entries of the nodes'
/// `spec.podCIDRs` and of the service networks (ServiceCIDR objects), then
/// each IPv6 ClusterIP of Traefik's Service (as a /128) that those do not
/// cover, so lab pods reach Traefik's IPv6 address even when the service
/// network could not be read. Entries that do not parse are skipped.
pub fn ipv6_networks(
    pod_cidrs: &[String],
    service_cidrs: &[String],
    traefik_ips: &[String],
) -> Vec<Cidr> {
    let mut out: Vec<Cidr> = Vec::new();
    let mut add = |cidr: Cidr| {
        if cidr.addr().is_ipv6() && !out.iter().any(|have| cidr.is_within(have)) {
            out.push(cidr);
        }
    };
    for text in pod_cidrs.iter().chain(service_cidrs) {
        if let Ok(cidr) = text.trim().parse::<Cidr>() {
            add(cidr);
        }
    }
    for ip in traefik_ips {
        if let Ok(IpAddr::V6(v6)) = ip.trim().parse::<IpAddr>()
            && let Ok(cidr) = format!("{v6}/128").parse::<Cidr>()
        {
            add(cidr);
        }
    }
    out
}

/// How long to wait for CoreDNS after restarting it, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreDnsWait {
    /// The whole wait (pulling nothing: CoreDNS's image is on the node).
    pub timeout: Duration,
    /// Pause between two reads of the Deployment.
    pub poll_interval: Duration,
}

impl Default for CoreDnsWait {
    fn default() -> Self {
        CoreDnsWait {
            timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// Where a Deployment's rollout stands, like `kubectl rollout status`:
/// `Ok(())` when the controller has seen the newest template, every
/// replica runs it and is available, and no old replica is left; otherwise
/// what it still waits for.
pub fn rollout_state(deployment: &Deployment) -> Result<(), String> {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Err("the controller has not seen the restart yet".to_owned());
    }
    if updated < wanted {
        return Err(format!("{updated} of {wanted} replicas updated"));
    }
    if total > updated {
        return Err(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Err(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Ok(())
}

/// Why CoreDNS did not come back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RolloutError {
    /// Still not available when the time was up.
    #[error("CoreDNS did not become available within {waited:?} ({state})")]
    NotAvailable {
        /// The budget.
        waited: Duration,
        /// What it still waited for.
        state: String,
    },
    /// Reading the Deployment failed.
    #[error("cannot read kube-system/coredns")]
    Api(#[source] kube::Error),
}

/// Waits until CoreDNS's rollout is available (see [`rollout_state`]),
/// logging each change of state. A cluster without the Deployment passes.
///
/// # Caveats
/// Bounded by `wait.timeout` plus one request.
pub(crate) async fn wait_available(
    cluster: &Cluster,
    wait: &CoreDnsWait,
) -> Result<(), RolloutError> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let mut last = String::new();
    let started = tokio::time::Instant::now();
    let poll = async {
        loop {
            let Some(deployment) = api
                .get_opt(names::COREDNS_DEPLOYMENT)
                .await
                .map_err(RolloutError::Api)?
            else {
                return Ok(());
            };
            match rollout_state(&deployment) {
                Ok(()) => {
                    tracing::info!("CoreDNS is available again ({:.0?})", started.elapsed());
                    return Ok(());
                }
                Err(state) => {
                    if state != last {
                        tracing::info!("waiting for CoreDNS: {state}");
                        last = state;
                    }
                }
            }
            tokio::time::sleep(wait.poll_interval).await;
        }
    };
    match tokio::time::timeout(wait.timeout, poll).await {
        Ok(result) => result,
        Err(_) => {
            let state = match api.get_opt(names::COREDNS_DEPLOYMENT).await {
                Ok(Some(d)) => rollout_state(&d).err().unwrap_or_default(),
                Ok(None) => String::new(),
                Err(e) => format!("cannot read it: {e}"),
            };
            Err(RolloutError::NotAvailable {
                waited: wait.timeout,
                state,
            })
        }
    }
}

/// The last log lines of the newest CoreDNS pod (found by the Deployment's
/// selector), for an error message. Best effort: a failed read becomes the
/// text.
pub(crate) async fn log_tail(cluster: &Cluster) -> String {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let selector = match deployments.get_opt(names::COREDNS_DEPLOYMENT).await {
        Ok(Some(d)) => d
            .spec
            .and_then(|s| s.selector.match_labels)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        Ok(None) => return "(no CoreDNS Deployment)".to_owned(),
        Err(e) => return format!("(cannot read the CoreDNS Deployment: {e})"),
    };
    if selector.is_empty() {
        return "(the CoreDNS Deployment has no label selector)".to_owned();
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let mut list = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l.items,
        Err(e) => return format!("(cannot list CoreDNS pods: {e})"),
    };
    list.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    let Some(newest) = list.last() else {
        return "(no CoreDNS pod exists)".to_owned();
    };
    let name = newest.metadata.name.clone().unwrap_or_default();
    let params = LogParams {
        tail_lines: Some(20),
        ..LogParams::default()
    };
    match pods.logs(&name, &params).await {
        Ok(text) => format!("last log lines of kube-system/{name}:\n{text}"),
        Err(e) => format!("(cannot read the log of kube-system/{name}: {e})"),
    }
}

/// Restarts CoreDNS the way `kubectl rollout restart` does. A cluster
/// without k3s's CoreDNS Deployment is not an error: `Ok(false)`.
pub(crate) async fn restart(cluster: &Cluster) -> Result<bool, kube::Error> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    match crate::rollout::restart(&api, names::COREDNS_DEPLOYMENT).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes lab `lab`'s key `key`: apply, with the lab's field manager, an
/// object without it; the server drops the fields only that manager owned.
/// If something else had taken the key over, a merge patch removes it. An
/// empty ConfigMap left behind is deleted if only fedilab's managers ever
/// wrote it (a user's own ConfigMap stays, even empty) and nobody changed
/// it since. Other keys, the user's or other labs', are never touched.
pub(crate) async fn remove_key(
    cluster: &Cluster,
    lab: &LabName,
    key: &str,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), names::KUBE_SYSTEM);
    let empty = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": names::COREDNS_CUSTOM_CONFIGMAP, "namespace": names::KUBE_SYSTEM },
    });
    let params = PatchParams::apply(&names::lab_field_manager(lab)).force();
    let mut after = api
        .patch(
            names::COREDNS_CUSTOM_CONFIGMAP,
            &params,
            &Patch::Apply(&empty),
        )
        .await?;
    if after.data.as_ref().is_some_and(|d| d.contains_key(key)) {
        let patch = serde_json::json!({ "data": { key: null } });
        after = api
            .patch(
                names::COREDNS_CUSTOM_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    let is_empty = after.data.as_ref().is_none_or(|d| d.is_empty())
        && after.binary_data.as_ref().is_none_or(|d| d.is_empty());
    let only_fedilab = after.metadata.managed_fields.iter().flatten().all(|m| {
        m.manager
            .as_deref()
            .is_some_and(|m| m.starts_with(names::FIELD_MANAGER))
    });
    if is_empty && only_fedilab {
        let dp = DeleteParams::default().preconditions(Preconditions {
            resource_version: after.metadata.resource_version.clone(),
            uid: None,
        });
        match api.delete(names::COREDNS_CUSTOM_CONFIGMAP, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "# fedilab lab \"main\"\nfediverse.local:53 {\n    errors\n    template IN A fediverse.local {\n    }\n}\n";

    fn conflicts(data: &[(&str, &str)], domain: &str) -> Vec<(String, String)> {
        let domain: Domain = domain.parse().expect("valid");
        let data = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        domain_conflicts(&data, "fedilab-main.server", &domain)
            .into_iter()
            .map(|c| (c.key, c.zone))
            .collect()
    }

    #[test]
    fn zones_of_a_server_block() {
        assert_eq!(coredns_zones(BLOCK), vec!["fediverse.local".to_owned()]);
        assert_eq!(
            coredns_zones("a.test:53 b.test. {\n}\n"),
            vec!["a.test".to_owned(), "b.test".to_owned()]
        );
        assert_eq!(
            coredns_zones(
                "example.test:53 {\n  kubernetes fediverse.local {\n  }\n  forward . 10.0.0.53\n}\n\
                 # old.test:53 {\nDNS://Two.Test.:5353 {\n}\n"
            ),
            vec!["example.test".to_owned(), "two.test".to_owned()]
        );
    }

    #[test]
    fn conflicts_are_same_or_nested_zones_of_any_server_key() {
        assert_eq!(
            conflicts(
                &[
                    ("fedilab-main.server", BLOCK),
                    ("fedilab-other.server", BLOCK),
                    ("fedilab-sub.server", "x.fediverse.local:53 {\n}\n"),
                    ("fedilab-far.server", "fediverse.test:53 {\n}\n"),
                    ("user.server", BLOCK),
                    ("parent.server", "local:53 {\n}\n"),
                    ("zonefile.db", "fediverse.local. 60 IN SOA x y 1 2 3 4 5\n"),
                ],
                "fediverse.local"
            ),
            vec![
                (
                    "fedilab-other.server".to_owned(),
                    "fediverse.local".to_owned()
                ),
                (
                    "fedilab-sub.server".to_owned(),
                    "x.fediverse.local".to_owned()
                ),
                ("parent.server".to_owned(), "local".to_owned()),
                ("user.server".to_owned(), "fediverse.local".to_owned()),
            ]
        );
        let domain: Domain = "fediverse.local".parse().expect("valid");
        let data = BTreeMap::from([
            ("fedilab-other.server".to_owned(), BLOCK.to_owned()),
            ("user.server".to_owned(), BLOCK.to_owned()),
        ]);
        let labs: Vec<Option<String>> = domain_conflicts(&data, "x", &domain)
            .into_iter()
            .map(|c| c.lab.map(|l| l.to_string()))
            .collect();
        assert_eq!(labs, vec![Some("other".to_owned()), None]);
    }

    #[test]
    fn override_keys_conflict_when_they_name_the_lab_domain() {
        let hosts = "hosts {\n  10.0.0.5 mastodon1.fediverse.local\n  fallthrough\n}\n";
        let rewrite = "rewrite name exact Fediverse.Local. web.default.svc.cluster.local\n";
        let unrelated =
            "# fediverse.local is fedilab's\nhosts {\n  10.0.0.5 git.example.com\n}\nlog\n";
        let parent = "template IN A local {\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n}\n";
        assert_eq!(
            conflicts(
                &[
                    ("hosts.override", hosts),
                    ("rewrite.override", rewrite),
                    ("unrelated.override", unrelated),
                    ("parent.override", parent),
                ],
                "fediverse.local"
            ),
            vec![
                (
                    "hosts.override".to_owned(),
                    "mastodon1.fediverse.local".to_owned()
                ),
                ("rewrite.override".to_owned(), "fediverse.local".to_owned()),
            ]
        );
    }

    #[test]
    fn the_cluster_domain_comes_from_the_kubernetes_line() {
        let k3s = ".:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n    hosts /etc/coredns/NodeHosts {\n    }\n    import /etc/coredns/custom/*.override\n}\nimport /etc/coredns/custom/*.server\n";
        assert_eq!(
            cluster_domain_from_corefile(k3s).as_deref(),
            Some("cluster.local")
        );
        let custom = k3s.replace(
            "kubernetes cluster.local in-addr",
            "kubernetes in-addr.arpa Lab.Internal. in-addr",
        );
        assert_eq!(
            cluster_domain_from_corefile(&custom).as_deref(),
            Some("lab.internal")
        );
        assert_eq!(
            cluster_domain_from_corefile(".:53 {\n  forward . /etc/resolv.conf\n}\n"),
            None
        );
        assert_eq!(
            cluster_domain_from_corefile("# kubernetes x.y\nkubernetesx a.b {\n"),
            None
        );
    }

    #[test]
    fn ipv6_networks_of_a_dual_stack_cluster() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let nets = ipv6_networks(
            &s(&["10.42.0.0/24", "2001:cafe:42::/64"]),
            &s(&["10.43.0.0/16", "2001:cafe:43::/112"]),
            &s(&["10.43.0.20", "2001:cafe:43::20", "fd00::1"]),
        );
        let text: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec!["2001:cafe:42::/64", "2001:cafe:43::/112", "fd00::1/128"]
        );
        assert!(ipv6_networks(&s(&["10.42.0.0/24"]), &[], &s(&["10.43.0.20"])).is_empty());
    }

    fn deployment(yaml: &str) -> Deployment {
        serde_saphyr::from_str(yaml).expect("fixture")
    }

    #[test]
    fn a_rollout_is_done_when_every_replica_is_new_and_available() {
        let done = deployment(
            "metadata: {name: coredns, generation: 3}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 3, replicas: 1, updatedReplicas: 1, availableReplicas: 1}\n",
        );
        assert_eq!(rollout_state(&done), Ok(()));
        let unseen = deployment(
            "metadata: {name: coredns, generation: 4}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 3, replicas: 1, updatedReplicas: 1, availableReplicas: 1}\n",
        );
        assert!(rollout_state(&unseen).is_err());
        let crashing = deployment(
            "metadata: {name: coredns, generation: 4}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 4, replicas: 1, updatedReplicas: 1, availableReplicas: 0, unavailableReplicas: 1}\n",
        );
        assert_eq!(
            rollout_state(&crashing),
            Err("0 of 1 updated replicas available".to_owned())
        );
        let old_left = deployment(
            "metadata: {name: coredns, generation: 4}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 4, replicas: 2, updatedReplicas: 1, availableReplicas: 1}\n",
        );
        assert!(rollout_state(&old_left).is_err());
    }
}
