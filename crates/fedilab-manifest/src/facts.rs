//! What the manifests need to know about the cluster they go on, read once
//! before building (by the orchestrator's preflight): its DNS domain and its
//! IPv6 networks on a dual-stack cluster. A plain value, so building stays
//! pure; the default is k3s's single-stack `cluster.local`.

use fedilab_profile::{Cidr, Domain, LabSpec, names};

/// Facts about the target cluster that change the lab's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFacts {
    /// The cluster's DNS domain (k3s `--cluster-domain`): the CoreDNS key's
    /// CNAME target is `traefik.kube-system.svc.<cluster domain>.`.
    pub cluster_domain: Domain,
    /// The cluster's IPv6 pod and service networks (dual-stack only; empty
    /// on a single-stack IPv4 cluster). Lab pods may reach them like the
    /// IPv4 ones: CoreDNS answers lab names with Traefik's IPv6 ClusterIP
    /// too, so the egress policy and `ALLOWED_PRIVATE_ADDRESSES` must cover
    /// them, or federation over IPv6 fails.
    pub ipv6_cidrs: Vec<Cidr>,
}

impl Default for ClusterFacts {
    fn default() -> Self {
        ClusterFacts {
            cluster_domain: names::DEFAULT_CLUSTER_DOMAIN
                .parse()
                .unwrap_or_else(|_| unreachable!("cluster.local is a valid domain")),
            ipv6_cidrs: Vec::new(),
        }
    }
}

impl ClusterFacts {
    /// Where lab names point inside the cluster, as a CNAME target.
    pub fn traefik_target(&self) -> String {
        names::traefik_service_fqdn(self.cluster_domain.as_str())
    }

    /// The networks lab pods may reach on this cluster: the spec's egress
    /// networks, then each cluster IPv6 network none of them covers.
    pub fn egress_cidrs(&self, spec: &LabSpec) -> Vec<Cidr> {
        let mut out = spec.egress_cidrs.clone();
        for cidr in &self.ipv6_cidrs {
            if !out.iter().any(|have| cidr.is_within(have)) {
                out.push(*cidr);
            }
        }
        out
    }

    /// `spec` as it applies to this cluster: its egress networks widened by
    /// [`ClusterFacts::egress_cidrs`]. Every builder that reads
    /// `egress_cidrs` (the policy, `ALLOWED_PRIVATE_ADDRESSES`) then sees the
    /// same list.
    pub fn apply_to(&self, spec: &LabSpec) -> LabSpec {
        LabSpec {
            egress_cidrs: self.egress_cidrs(spec),
            ..spec.clone()
        }
    }
}
