//! The lab-wide objects: namespace, egress policy, the lab's key in
//! kube-system's `coredns-custom`, the CA ConfigMap and the setup scripts.
//! Nothing else in kube-system: fedilab writes no Traefik HelmChartConfig
//! (that object is the user's; see README "What fedilab changes on a shared
//! node").

use std::collections::BTreeMap;

use fedilab_profile::{InstanceKind, LabSpec, names};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::ClusterFacts;
use crate::setup;

/// The setup Job's shell script (runs in the Mastodon image).
pub(crate) const SETUP_SH: &str = include_str!("../scripts/setup.sh");
/// The Ruby the setup Job runs with `rails runner`.
pub(crate) const CREDENTIALS_RB: &str = include_str!("../scripts/credentials.rb");
/// File name of [`crate::ALLOW_DOMAINS_RB`] in the setup ConfigMap.
pub(crate) const ALLOW_DOMAINS_FILE: &str = "allow_domains.rb";

/// Metadata of an object in the lab's namespace.
pub(crate) fn lab_meta(spec: &LabSpec, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(names::namespace(&spec.name)),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// The lab's namespace.
pub(crate) fn namespace(spec: &LabSpec) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(names::namespace(&spec.name)),
            labels: Some(names::lab_labels(&spec.name)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Egress from every pod of the lab only to the egress CIDRs (by default
/// k3s's pod and service networks: the other instances, CoreDNS, Traefik).
/// Ingress is left open so Traefik can reach the instances.
pub(crate) fn egress_policy(spec: &LabSpec) -> NetworkPolicy {
    let peers = spec
        .egress_cidrs
        .iter()
        .map(|cidr| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.to_string(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        })
        .collect();
    NetworkPolicy {
        metadata: lab_meta(spec, names::EGRESS_POLICY, names::lab_labels(&spec.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Egress".to_owned()]),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(peers),
                ports: None,
            }]),
            ingress: None,
        }),
    }
}

/// The Corefile server block for the lab domain: every name in it (apex and
/// `*.DOMAIN`) is a CNAME to Traefik's Service, which CoreDNS resolves
/// itself; other types get an empty answer with the SOA, so Mastodon's
/// e-mail MX check and HTTPS-record lookups get a clean NODATA. The target
/// is in the cluster's own domain (`facts`).
pub fn corefile_server_block_on(spec: &LabSpec, facts: &ClusterFacts) -> String {
    let domain = spec.domain.as_str();
    let target = facts.traefik_target();
    let mut block = format!(
        "# fedilab lab {lab:?}: {domain} and *.{domain} -> Traefik.\n\
         # Written by fedilab (field manager {manager}); `fedilab down` removes it.\n\
         {domain}:53 {{\n    errors\n",
        lab = spec.name.as_str(),
        manager = names::lab_field_manager(&spec.name),
    );
    for rtype in ["A", "AAAA"] {
        block.push_str(&format!(
            "    template IN {rtype} {domain} {{\n        answer \"{{{{ .Name }}}} 60 IN CNAME {target}\"\n    }}\n"
        ));
    }
    block.push_str(&format!(
        "    template ANY ANY {domain} {{\n        rcode NOERROR\n        authority \"{domain}. 60 IN SOA ns.{domain}. hostmaster.{domain}. 1 7200 1800 86400 60\"\n    }}\n}}\n"
    ));
    block
}

/// [`corefile_server_block_on`] a cluster with k3s's default domain.
pub fn corefile_server_block(spec: &LabSpec) -> String {
    corefile_server_block_on(spec, &ClusterFacts::default())
}

/// The lab's key in kube-system's `coredns-custom` ConfigMap. Several labs
/// share the ConfigMap, each applying only its own key with its own field
/// manager, so the object carries only the `managed-by` label.
pub(crate) fn coredns_custom(spec: &LabSpec, facts: &ClusterFacts) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(names::COREDNS_CUSTOM_CONFIGMAP.to_owned()),
            namespace: Some(names::KUBE_SYSTEM.to_owned()),
            labels: Some(BTreeMap::from([(
                names::MANAGED_BY_KEY.to_owned(),
                names::MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            names::coredns_key(&spec.name),
            corefile_server_block_on(spec, facts),
        )])),
        ..ConfigMap::default()
    }
}

/// The lab CA certificate, for every pod's trust bundle.
pub(crate) fn ca_configmap(spec: &LabSpec, ca_cert_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: lab_meta(spec, names::LAB_CA_CONFIGMAP, names::lab_labels(&spec.name)),
        data: Some(BTreeMap::from([(
            names::LAB_CA_KEY.to_owned(),
            ca_cert_pem.to_owned(),
        )])),
        ..ConfigMap::default()
    }
}

/// The setup Job's scripts: fixed files, parameterised only by environment
/// variables.
///
/// The scripts of Misskey and GoToSocial are included only in labs that
/// have such an instance.
pub(crate) fn setup_scripts(spec: &LabSpec) -> ConfigMap {
    let has = |kind: InstanceKind| spec.instances.iter().any(|i| i.kind.kind() == kind);
    let mut data = BTreeMap::from([
        ("setup.sh".to_owned(), SETUP_SH.to_owned()),
        ("credentials.rb".to_owned(), CREDENTIALS_RB.to_owned()),
        (
            ALLOW_DOMAINS_FILE.to_owned(),
            crate::ALLOW_DOMAINS_RB.to_owned(),
        ),
    ]);
    let mut add = |(key, text): (&str, &str)| data.insert(key.to_owned(), text.to_owned());
    if has(InstanceKind::Misskey) {
        add(setup::MISSKEY_SCRIPT);
    }
    if has(InstanceKind::Gotosocial) {
        add(setup::GOTOSOCIAL_ADMIN_SCRIPT);
        add(setup::GOTOSOCIAL_TOKEN_SCRIPT);
    }
    ConfigMap {
        metadata: lab_meta(
            spec,
            names::SETUP_SCRIPTS_CONFIGMAP,
            names::lab_labels(&spec.name),
        ),
        data: Some(data),
        ..ConfigMap::default()
    }
}
