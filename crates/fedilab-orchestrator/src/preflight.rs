//! Checks before anything is applied: the API server answers, the cluster
//! is k3s (or a warning says what will not work), k3s's helm.cattle.io CRDs
//! are served, the node has memory for the lab, no key of `coredns-custom`
//! (another lab's or the user's own) already serves the lab's domain, and
//! the lab's namespace is not being deleted. Before the manifests are built,
//! [`cluster_facts`] reads what they depend on: the cluster domain and the
//! IPv6 networks of a dual-stack cluster. Sums and parsing are pure
//! functions; the rest reads the cluster, never writes.

use std::collections::BTreeMap;

use fedilab_manifest::{ClusterFacts, LabManifests, Manifest};
use fedilab_profile::{LabSpec, names};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, PodSpec, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::Api;
use kube::api::ListParams;

use crate::Cluster;
use crate::coredns::{CoreDnsWait, cluster_domain_from_corefile, domain_conflicts, ipv6_networks};
use crate::readiness::is_node_ready;
use crate::resources::{ResourceError, ResourceMap};

/// Preflight choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreflightOptions {
    /// Apply even when the lab's memory requests exceed what the node has
    /// free (`--force`).
    pub force: bool,
}

/// Node memory against the lab's needs, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    /// Allocatable memory of the Ready, schedulable nodes.
    pub allocatable: u64,
    /// Memory requested by running pods outside the lab's namespace.
    pub requested_by_others: u64,
    /// The lab's summed memory requests.
    pub lab: u64,
}

impl Capacity {
    /// What is left for the lab.
    pub fn free(&self) -> u64 {
        self.allocatable.saturating_sub(self.requested_by_others)
    }

    /// Whether the lab's requests fit.
    pub fn fits(&self) -> bool {
        self.lab <= self.free()
    }
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the lab requests {} MiB of memory; the node has {} MiB allocatable, \
             {} MiB already requested by other pods, {} MiB free",
            mib(self.lab),
            mib(self.allocatable),
            mib(self.requested_by_others),
            mib(self.free())
        )
    }
}

/// One node, as preflight saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeSummary {
    /// Its name.
    pub name: String,
    /// `status.nodeInfo.kubeletVersion`, such as `v1.33.4+k3s1`.
    pub kubelet_version: String,
    /// Its first InternalIP.
    pub internal_ip: Option<String>,
    /// Ready and schedulable.
    pub usable: bool,
}

/// Something that will not stop `up` but that the user should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightWarning {
    /// No node runs k3s.
    NotK3s {
        /// The kubelet versions seen.
        kubelet_versions: Vec<String>,
    },
    /// The lab does not fit but `--force` was given.
    Overcommitted(Capacity),
}

impl std::fmt::Display for PreflightWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreflightWarning::NotK3s { kubelet_versions } => write!(
                f,
                "this cluster does not look like k3s (kubelet {}). fedilab relies on k3s's \
                 defaults: CoreDNS importing the coredns-custom ConfigMap (names of the lab \
                 will not resolve inside the cluster, so nothing federates), Traefik as the \
                 ingress on ports 80/443, the local-path storage class, and NetworkPolicy \
                 enforcement (without it lab pods can reach the internet)",
                kubelet_versions.join(", ")
            ),
            PreflightWarning::Overcommitted(c) => {
                write!(f, "--force: {c}; pods may stay Pending or be evicted")
            }
        }
    }
}

/// What preflight learned; `apply` needs it.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The API server's version, such as `v1.33.4+k3s1`.
    pub server_version: String,
    /// The nodes.
    pub nodes: Vec<NodeSummary>,
    /// Whether a node runs k3s.
    pub k3s: bool,
    /// Memory.
    pub capacity: Capacity,
    /// Where every kind of the lab lives.
    pub resources: ResourceMap,
    /// The lab's key in `coredns-custom` as it is now (`None`: absent), to
    /// restart CoreDNS only when it changes.
    pub coredns_key_before: Option<String>,
    /// Restart CoreDNS even if the key is unchanged: an earlier apply was
    /// interrupted and may have changed it without restarting CoreDNS. The
    /// caller sets it from `fedilab_state::LabDir::apply_pending`.
    pub coredns_restart_pending: bool,
    /// How long `apply` waits for CoreDNS after restarting it before it
    /// takes the lab's key out again.
    pub coredns_wait: CoreDnsWait,
    /// Warnings to show.
    pub warnings: Vec<PreflightWarning>,
}

impl Preflight {
    /// The first usable node's InternalIP: where Traefik listens.
    pub fn node_address(&self) -> Option<&str> {
        self.nodes
            .iter()
            .filter(|n| n.usable)
            .find_map(|n| n.internal_ip.as_deref())
    }
}

/// Why the lab cannot go on this cluster.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The API server did not answer.
    #[error(
        "cannot reach the Kubernetes API at {server} (kubeconfig {source_desc}).\n\
         Is k3s running? `sudo systemctl start k3s` starts it; on a fresh VM \
         `fedilab bootstrap` installs it; or pass --kubeconfig FILE / --context NAME \
         for another cluster"
    )]
    Unreachable {
        /// The API server URL.
        server: String,
        /// Where the kubeconfig came from.
        source_desc: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// A read the preflight needs failed.
    #[error("preflight: cannot {what}{hint}")]
    Api {
        /// What was being read.
        what: &'static str,
        /// What to do about it.
        hint: &'static str,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// A kind of the lab is not served (k3s's CRDs missing).
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// No node can run pods.
    #[error("no Ready, schedulable node in the cluster; check `kubectl get nodes`")]
    NoUsableNode,
    /// The lab does not fit in the node's memory.
    #[error(
        "the lab does not fit: {capacity}.\n\
         Try fewer instances (--instances N), smaller resources in the profile, \
         `fedilab down --lab OTHER` for labs you no longer need, a bigger VM, \
         or --force to apply anyway"
    )]
    DoesNotFit {
        /// The numbers.
        capacity: Capacity,
    },
    /// A key of `coredns-custom` that is not a lab's serves the domain.
    #[error(
        "the domain {domain} is already served by the key {key} of \
         kube-system/coredns-custom (it serves {zone}); fedilab will not add a \
         second definition: a duplicate zone makes CoreDNS exit and takes the node's \
         cluster DNS down, and an overlap sends lab names elsewhere.\n\
         Pick another domain with --domain (for example fediverse.test), or change that key"
    )]
    DomainServed {
        /// Our domain.
        domain: String,
        /// The key.
        key: String,
        /// Its overlapping zone or name.
        zone: String,
    },
    /// The cluster domain in CoreDNS's Corefile is not a name fedilab can
    /// point a CNAME into.
    #[error(
        "the cluster domain {value:?} in kube-system/coredns's Corefile is not a domain \
         fedilab supports ({problem})"
    )]
    ClusterDomain {
        /// What the Corefile says.
        value: String,
        /// Why it does not fit.
        problem: String,
    },
    /// Another lab serves the domain.
    #[error(
        "the domain {domain} is already used by lab {other} (its CoreDNS zone {zone}).\n\
         Pick another one with --domain (for example fediverse.test), or remove \
         that lab with `fedilab down --lab {other}`"
    )]
    DomainInUse {
        /// Our domain.
        domain: String,
        /// The other lab.
        other: String,
        /// Its overlapping zone.
        zone: String,
    },
    /// The lab's namespace is still being deleted by a `down`.
    #[error(
        "the namespace {namespace} is still being deleted (a recent `fedilab down`).\n\
         Wait until `kubectl get namespace {namespace}` finds nothing, then run `fedilab up` again"
    )]
    Terminating {
        /// The namespace.
        namespace: String,
    },
}

fn api(what: &'static str, hint: &'static str) -> impl FnOnce(kube::Error) -> PreflightError {
    move |source| PreflightError::Api { what, hint, source }
}

async fn list_nodes(cluster: &Cluster) -> Result<Vec<Node>, PreflightError> {
    Ok(Api::<Node>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api(
            "list nodes",
            " (fedilab needs a kubeconfig with cluster-admin rights, such as k3s's own)",
        ))?
        .items)
}

/// The first usable node's InternalIP, where Traefik listens and where
/// the inspector's EndpointSlices point; `None` when no usable node has one.
/// One request; `up` needs it before it can build the routing objects.
///
/// # Errors
/// [`PreflightError::Api`] when the nodes cannot be listed.
pub async fn node_address(cluster: &Cluster) -> Result<Option<String>, PreflightError> {
    Ok(list_nodes(cluster)
        .await?
        .iter()
        .map(summarize_node)
        .filter(|n| n.usable)
        .find_map(|n| n.internal_ip))
}

/// Asks the API server its version: the cheapest proof it answers.
///
/// # Errors
/// [`PreflightError::Unreachable`] with what to do.
pub async fn reachable(cluster: &Cluster) -> Result<String, PreflightError> {
    cluster
        .client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .map_err(|source| PreflightError::Unreachable {
            server: cluster.server.clone(),
            source_desc: cluster.source.clone(),
            source,
        })
}

/// Runs every check, in order: version, nodes, kinds, memory, domain,
/// namespace. Reads only.
///
/// # Errors
/// [`PreflightError`] for the first check that fails, with what to do.
///
/// # Caveats
/// Each request is bounded by the client's timeouts (10 s to connect).
pub async fn preflight(
    cluster: &Cluster,
    spec: &LabSpec,
    manifests: &LabManifests,
    options: PreflightOptions,
) -> Result<Preflight, PreflightError> {
    let server_version = reachable(cluster).await?;
    let node_list = list_nodes(cluster).await?;
    let nodes: Vec<NodeSummary> = node_list.iter().map(summarize_node).collect();
    let k3s = nodes.iter().any(|n| n.kubelet_version.contains("+k3s"));
    let mut warnings = Vec::new();
    if !k3s {
        warnings.push(PreflightWarning::NotK3s {
            kubelet_versions: nodes.iter().map(|n| n.kubelet_version.clone()).collect(),
        });
    }
    if !nodes.iter().any(|n| n.usable) {
        return Err(PreflightError::NoUsableNode);
    }

    let resources = ResourceMap::resolve(cluster, manifests).await?;

    let namespace = names::namespace(&spec.name);
    let pods = Api::<Pod>::all(cluster.client.clone())
        .list(&ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed"))
        .await
        .map_err(api("list pods to estimate free memory", ""))?;
    let requested_by_others = pods
        .items
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() != Some(namespace.as_str()))
        .filter_map(|p| p.spec.as_ref())
        .map(pod_memory_request)
        .sum::<f64>();
    let allocatable = node_list
        .iter()
        .zip(&nodes)
        .filter(|(_, s)| s.usable)
        .filter_map(|(n, _)| {
            n.status
                .as_ref()?
                .allocatable
                .as_ref()?
                .get("memory")
                .and_then(|q| parse_quantity(&q.0))
        })
        .sum::<f64>();
    let capacity = Capacity {
        allocatable: allocatable as u64,
        requested_by_others: requested_by_others as u64,
        lab: lab_memory_requests(manifests),
    };
    if !capacity.fits() {
        if options.force {
            warnings.push(PreflightWarning::Overcommitted(capacity));
        } else {
            return Err(PreflightError::DoesNotFit { capacity });
        }
    }

    let own_key = names::coredns_key(&spec.name);
    let coredns = Api::<ConfigMap>::namespaced(cluster.client.clone(), names::KUBE_SYSTEM)
        .get_opt(names::COREDNS_CUSTOM_CONFIGMAP)
        .await
        .map_err(api("read kube-system/coredns-custom", ""))?;
    let data: BTreeMap<String, String> = coredns.and_then(|c| c.data).unwrap_or_default();
    if let Some(conflict) = domain_conflicts(&data, &own_key, &spec.domain)
        .into_iter()
        .next()
    {
        let domain = spec.domain.to_string();
        return Err(match conflict.lab {
            Some(other) => PreflightError::DomainInUse {
                domain,
                other: other.to_string(),
                zone: conflict.zone,
            },
            None => PreflightError::DomainServed {
                domain,
                key: conflict.key,
                zone: conflict.zone,
            },
        });
    }

    let ns = Api::<Namespace>::all(cluster.client.clone())
        .get_opt(&namespace)
        .await
        .map_err(api("read the lab's namespace", ""))?;
    if ns.is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
        return Err(PreflightError::Terminating { namespace });
    }

    Ok(Preflight {
        server_version,
        nodes,
        k3s,
        capacity,
        resources,
        coredns_key_before: data.get(&own_key).cloned(),
        coredns_restart_pending: false,
        coredns_wait: CoreDnsWait::default(),
        warnings,
    })
}

/// What the lab's objects depend on in this cluster, read before they are
/// built: the cluster domain (the `kubernetes` line of CoreDNS's Corefile in
/// kube-system/coredns; k3s's default when there is none) and, on a
/// dual-stack cluster, its IPv6 networks (the nodes' `spec.podCIDRs`, the
/// ServiceCIDR objects, Traefik's IPv6 ClusterIPs). Reads only; a
/// ServiceCIDR list the server does not serve (before Kubernetes 1.33)
/// counts as empty.
///
/// # Errors
/// [`PreflightError::Api`] when the nodes, the Corefile or Traefik's
/// Service cannot be read; [`PreflightError::ClusterDomain`] when the
/// Corefile names a domain a CNAME cannot point into.
pub async fn cluster_facts(cluster: &Cluster) -> Result<ClusterFacts, PreflightError> {
    let mut facts = ClusterFacts::default();
    let corefile = Api::<ConfigMap>::namespaced(cluster.client.clone(), names::KUBE_SYSTEM)
        .get_opt(names::COREDNS_CONFIGMAP)
        .await
        .map_err(api("read kube-system/coredns (the Corefile)", ""))?
        .and_then(|c| c.data)
        .and_then(|d| d.get(names::COREFILE_KEY).cloned());
    if let Some(domain) = corefile.as_deref().and_then(cluster_domain_from_corefile) {
        facts.cluster_domain = domain.parse().map_err(|e: fedilab_profile::NameError| {
            PreflightError::ClusterDomain {
                value: domain.clone(),
                problem: e.to_string(),
            }
        })?;
    }
    let pod_cidrs: Vec<String> = list_nodes(cluster)
        .await?
        .into_iter()
        .filter_map(|n| n.spec)
        .flat_map(|s| {
            s.pod_cidrs
                .unwrap_or_default()
                .into_iter()
                .chain(s.pod_cidr)
        })
        .collect();
    let service_cidrs: Vec<String> = match Api::<ServiceCIDR>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|c| c.spec)
            .flat_map(|s| s.cidrs.unwrap_or_default())
            .collect(),
        Err(e) => {
            tracing::debug!("no ServiceCIDRs: {e}");
            Vec::new()
        }
    };
    let traefik_ips: Vec<String> =
        Api::<Service>::namespaced(cluster.client.clone(), names::KUBE_SYSTEM)
            .get_opt(names::TRAEFIK_SERVICE)
            .await
            .map_err(api("read kube-system/traefik (the Service)", ""))?
            .and_then(|s| s.spec)
            .map(|s| s.cluster_ips.unwrap_or_default())
            .unwrap_or_default();
    facts.ipv6_cidrs = ipv6_networks(&pod_cidrs, &service_cidrs, &traefik_ips);
    Ok(facts)
}

fn summarize_node(node: &Node) -> NodeSummary {
    let status = node.status.as_ref();
    let kubelet_version = status
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .unwrap_or_default();
    let internal_ip = status
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone());
    let schedulable = !node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    NodeSummary {
        name: node.metadata.name.clone().unwrap_or_default(),
        kubelet_version,
        internal_ip,
        usable: schedulable && is_node_ready(Some(node)),
    }
}

/// The one quantity parser, the profile's: node capacity and pod requests
/// are read with the same rules as the profile's resources.
pub use fedilab_profile::parse_quantity;

fn container_memory(c: &k8s_openapi::api::core::v1::Container) -> f64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("memory"))
        .and_then(|q| parse_quantity(&q.0))
        .unwrap_or(0.0)
}

/// A pod's effective memory request: its containers' sum, or its largest
/// init container if that is more (init containers run one at a time,
/// before the others).
fn pod_memory_request(spec: &PodSpec) -> f64 {
    let main: f64 = spec.containers.iter().map(container_memory).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(container_memory)
        .fold(0.0, f64::max);
    main.max(init)
}

/// The lab's summed memory requests in bytes: every pod its Deployments,
/// StatefulSets and Jobs start (init containers and the setup Job included,
/// since the Job runs while the servers start).
pub fn lab_memory_requests(manifests: &LabManifests) -> u64 {
    let total: f64 = manifests
        .objects
        .iter()
        .map(|o| match o {
            Manifest::Deployment(d) => d.spec.as_ref().map_or(0.0, |s| {
                let replicas = f64::from(s.replicas.unwrap_or(1));
                s.template.spec.as_ref().map_or(0.0, pod_memory_request) * replicas
            }),
            Manifest::StatefulSet(d) => d.spec.as_ref().map_or(0.0, |s| {
                let replicas = f64::from(s.replicas.unwrap_or(1));
                s.template.spec.as_ref().map_or(0.0, pod_memory_request) * replicas
            }),
            Manifest::Job(j) => j.spec.as_ref().map_or(0.0, |s| {
                let parallel = f64::from(s.parallelism.unwrap_or(1));
                s.template.spec.as_ref().map_or(0.0, pod_memory_request) * parallel
            }),
            _ => 0.0,
        })
        .sum();
    total as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("512Mi"), Some(512.0 * 1_048_576.0));
        assert_eq!(parse_quantity("3940812Ki"), Some(3_940_812.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("0"), Some(0.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("Mi"), None);
        assert_eq!(parse_quantity("-1"), None);
        assert_eq!(parse_quantity("lots"), None);
    }

    #[test]
    fn capacity_arithmetic() {
        let c = Capacity {
            allocatable: 4 << 30,
            requested_by_others: 1 << 30,
            lab: 3 << 30,
        };
        assert!(c.fits());
        let c = Capacity {
            lab: (3 << 30) + 1,
            ..c
        };
        assert!(!c.fits());
        assert!(c.to_string().contains("3072 MiB free"), "{c}");
    }
}
