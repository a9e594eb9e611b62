//! Every label key, annotation, field manager and object name fedilab uses,
//! spelled once.
//!
//! Other crates build names and label sets only through this module, so
//! teardown-by-label and the objects that carry those labels can never drift
//! apart.

use std::collections::BTreeMap;

use crate::types::{InstanceName, LabName};

/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_KEY`] on everything fedilab creates.
pub const MANAGED_BY: &str = "fedilab";
/// The lab an object belongs to.
pub const LAB_KEY: &str = "fedilab.dev/lab";
/// The instance an object belongs to.
pub const INSTANCE_KEY: &str = "fedilab.dev/instance";
/// `app.kubernetes.io/component`: see [`Component`].
pub const COMPONENT_KEY: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/name`: the server software, such as `mastodon`.
pub const APP_NAME_KEY: &str = "app.kubernetes.io/name";

/// The server-side apply field manager for lab objects.
pub const FIELD_MANAGER: &str = "fedilab";

/// The field manager for a lab's share of objects that several labs write
/// (the `coredns-custom` ConfigMap), so labs never take each other's keys.
pub fn lab_field_manager(lab: &LabName) -> String {
    format!("fedilab-{lab}")
}

/// k3s's namespace for CoreDNS and Traefik.
pub const KUBE_SYSTEM: &str = "kube-system";
/// The ConfigMap whose `*.server` keys k3s's CoreDNS imports.
pub const COREDNS_CUSTOM_CONFIGMAP: &str = "coredns-custom";
/// CoreDNS's Deployment, restarted after its custom config changes.
pub const COREDNS_DEPLOYMENT: &str = "coredns";
/// The HelmChartConfig that customises k3s's packaged Traefik.
pub const TRAEFIK_HELM_CHART_CONFIG: &str = "traefik";
/// The API group of k3s's Helm controller CRDs.
pub const HELM_CATTLE_GROUP: &str = "helm.cattle.io";
/// The kind that customises a packaged chart such as Traefik.
pub const HELM_CHART_CONFIG_KIND: &str = "HelmChartConfig";
/// Its resource (plural) name.
pub const HELM_CHART_CONFIG_PLURAL: &str = "helmchartconfigs";
/// The pod-template annotation `kubectl rollout restart` sets; fedilab sets
/// it to restart CoreDNS.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The Ingress class of k3s's Traefik.
pub const TRAEFIK_INGRESS_CLASS: &str = "traefik";
/// Where lab names point inside the cluster on a cluster with the default
/// domain (a CNAME target, hence the dot); see [`traefik_service_fqdn`].
pub const TRAEFIK_SERVICE_FQDN: &str = "traefik.kube-system.svc.cluster.local.";
/// k3s's default cluster domain (`--cluster-domain`).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// CoreDNS's own ConfigMap in [`KUBE_SYSTEM`]; its Corefile's `kubernetes`
/// line names the cluster domain.
pub const COREDNS_CONFIGMAP: &str = "coredns";
/// The key of the Corefile in [`COREDNS_CONFIGMAP`].
pub const COREFILE_KEY: &str = "Corefile";

/// Where lab names point inside a cluster whose domain is
/// `cluster_domain`: Traefik's Service, as a CNAME target (with the dot).
pub fn traefik_service_fqdn(cluster_domain: &str) -> String {
    format!(
        "{TRAEFIK_SERVICE}.{KUBE_SYSTEM}.svc.{}.",
        cluster_domain.trim_end_matches('.')
    )
}
/// k3s's default storage class.
pub const STORAGE_CLASS: &str = "local-path";

/// The lab's namespace.
pub fn namespace(lab: &LabName) -> String {
    format!("fedilab-{lab}")
}

/// The lab's key in `coredns-custom` (k3s imports keys ending in `.server`).
pub fn coredns_key(lab: &LabName) -> String {
    format!("fedilab-{lab}.server")
}

/// The lab whose key in `coredns-custom` `key` is (the inverse of
/// [`coredns_key`]); `None` for any other key, such as a user's own.
pub fn lab_of_coredns_key(key: &str) -> Option<LabName> {
    key.strip_prefix("fedilab-")?
        .strip_suffix(".server")?
        .parse()
        .ok()
}

/// The NetworkPolicy that closes egress for every pod of the lab.
pub const EGRESS_POLICY: &str = "fedilab-egress";
/// The ConfigMap holding the lab CA certificate.
pub const LAB_CA_CONFIGMAP: &str = "fedilab-lab-ca";
/// The key of the CA certificate in [`LAB_CA_CONFIGMAP`].
pub const LAB_CA_KEY: &str = "ca.pem";
/// The ConfigMap holding the setup Job's scripts.
pub const SETUP_SCRIPTS_CONFIGMAP: &str = "fedilab-setup-scripts";

/// The admin account fedilab creates on every Mastodon instance. Not
/// `admin`: Mastodon reserves that name in production.
pub const ADMIN_USERNAME: &str = "labadmin";
/// The host side's default ports (`fedilab serve`): the embedded DNS on
/// loopback (5353 is mDNS's, so not that), the inspector's proxy on the
/// node address, its UI on loopback. A second lab on the same host takes
/// the next free block of [`SERVE_PORT_STRIDE`].
pub const SERVE_DNS_PORT: u16 = 5300;
/// See [`SERVE_DNS_PORT`].
pub const SERVE_PROXY_PORT: u16 = 8480;
/// See [`SERVE_DNS_PORT`].
pub const SERVE_UI_PORT: u16 = 8481;
/// How far apart the ports of two labs on one host are.
pub const SERVE_PORT_STRIDE: u16 = 10;

/// The label on the short-lived pods of `fedilab verify`; its value is the
/// check's id (`egress`, `names`, `trust`, `federation`).
pub const VERIFY_KEY: &str = "fedilab.dev/verify";
/// k3s's Traefik Service in [`KUBE_SYSTEM`]: lab names resolve to its
/// ClusterIP inside the cluster.
pub const TRAEFIK_SERVICE: &str = "traefik";

/// The pod of check `check` run from `instance`: `verify-<check>-<instance>`.
pub fn verify_pod(instance: &InstanceName, check: &str) -> String {
    format!("verify-{check}-{instance}")
}

/// The pod of check `check` run from `from` towards `to` (one pair of the
/// federation round trip): `verify-<check>-<from>-to-<to>`.
pub fn verify_pair_pod(from: &InstanceName, to: &InstanceName, check: &str) -> String {
    format!("verify-{check}-{from}-to-{to}")
}

/// The label selector, as text, that finds every check pod of a lab.
pub fn verify_selector(lab: &LabName) -> String {
    format!("{},{VERIFY_KEY}", lab_selector(lab))
}

/// The OAuth application that owns fedilab's API token.
pub const OAUTH_APP_NAME: &str = "fedilab";

/// The parts of an instance, as the value of [`COMPONENT_KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// Puma.
    Web,
    /// The streaming server.
    Streaming,
    /// Sidekiq.
    Sidekiq,
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
    /// The one-off setup Job.
    Setup,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Component; 6] = [
        Component::Postgres,
        Component::Redis,
        Component::Setup,
        Component::Web,
        Component::Streaming,
        Component::Sidekiq,
    ];

    /// The label value, also the suffix of the component's object names.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Web => "web",
            Component::Streaming => "streaming",
            Component::Sidekiq => "sidekiq",
            Component::Postgres => "postgres",
            Component::Redis => "redis",
            Component::Setup => "setup",
        }
    }
}

/// The components an instance of `kind` runs in the cluster, in start
/// order: Mastodon all of them; Misskey its server (`web`) with PostgreSQL,
/// Redis and setup; GoToSocial its server with PostgreSQL and setup; an
/// external server none.
pub fn components_of(kind: crate::InstanceKind) -> &'static [Component] {
    use Component::{Postgres, Redis, Setup, Web};
    match kind {
        crate::InstanceKind::Mastodon => &Component::ALL,
        crate::InstanceKind::Misskey => &[Postgres, Redis, Setup, Web],
        crate::InstanceKind::Gotosocial => &[Postgres, Setup, Web],
        crate::InstanceKind::External => &[],
    }
}

/// The name of a component's workload and Service: `<instance>-<component>`.
pub fn component_object(instance: &InstanceName, component: Component) -> String {
    format!("{instance}-{}", component.as_str())
}

/// The instance's non-secret environment ConfigMap.
pub fn env_configmap(instance: &InstanceName) -> String {
    format!("{instance}-env")
}

/// The instance's configuration-file ConfigMap (GoToSocial's
/// `config.yaml`).
pub fn config_configmap(instance: &InstanceName) -> String {
    format!("{instance}-config")
}

/// The instance's Secret of generated application secrets (environment).
pub fn env_secret(instance: &InstanceName) -> String {
    format!("{instance}-secrets")
}

/// The instance's Secret with the admin login and API token.
pub fn admin_secret(instance: &InstanceName) -> String {
    format!("{instance}-admin")
}

/// The instance's TLS Secret (the leaf certificate Traefik serves).
pub fn tls_secret(instance: &InstanceName) -> String {
    format!("{instance}-tls")
}

/// The volume shared by web and Sidekiq for uploaded and fetched media.
pub fn media_pvc(instance: &InstanceName) -> String {
    format!("{instance}-media")
}

/// The instance's Ingress.
pub fn ingress(instance: &InstanceName) -> String {
    instance.to_string()
}

/// The value of [`COMPONENT_KEY`] on an instance's inspector route (its
/// Service and EndpointSlice), and the suffix of their name.
pub const INSPECTOR_ROUTE_COMPONENT: &str = "inspector";

/// The selector-less Service (and its EndpointSlice, same name) through
/// which Traefik sends an instance's traffic to the inspector on the host:
/// `<instance>-inspector`.
pub fn inspector_route(instance: &InstanceName) -> String {
    format!("{instance}-{INSPECTOR_ROUTE_COMPONENT}")
}

/// The name of the one port of an inspector route's Service and
/// EndpointSlice (they are matched by name).
pub const INSPECTOR_ROUTE_PORT_NAME: &str = "http";

/// The EndpointSlice label naming the Service it belongs to.
pub const SERVICE_NAME_KEY: &str = "kubernetes.io/service-name";
/// The EndpointSlice label naming who manages it; Kubernetes' own
/// controller deletes slices that carry its value and no selector.
pub const ENDPOINTSLICE_MANAGED_BY_KEY: &str = "endpointslice.kubernetes.io/managed-by";
/// fedilab's value of [`ENDPOINTSLICE_MANAGED_BY_KEY`] (never
/// `endpointslice-controller.k8s.io`, the controller's).
pub const ENDPOINTSLICE_MANAGED_BY: &str = "fedilab.dev";
/// The annotation on an external instance's route Service that records
/// where the inspector forwards its traffic (`http://HOST:PORT`), for
/// people reading the cluster.
pub const UPSTREAM_ANNOTATION: &str = "fedilab.dev/upstream";

/// Keys of the admin Secret ([`admin_secret`]).
pub mod admin_keys {
    /// The admin's username.
    pub const USERNAME: &str = "username";
    /// The admin's e-mail address.
    pub const EMAIL: &str = "email";
    /// The admin's password.
    pub const PASSWORD: &str = "password";
    /// The API access token (scopes read, write, follow, push, admin).
    pub const API_TOKEN: &str = "api-token";
}

/// Labels on every object of the lab.
pub fn lab_labels(lab: &LabName) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_KEY.to_owned(), MANAGED_BY.to_owned()),
        (LAB_KEY.to_owned(), lab.to_string()),
    ])
}

/// Labels on every object of one instance.
pub fn instance_labels(
    lab: &LabName,
    instance: &InstanceName,
    app: &str,
) -> BTreeMap<String, String> {
    let mut labels = lab_labels(lab);
    labels.insert(INSTANCE_KEY.to_owned(), instance.to_string());
    labels.insert(APP_NAME_KEY.to_owned(), app.to_owned());
    labels
}

/// Labels on an instance's inspector route (Service and EndpointSlice
/// carry these; the EndpointSlice adds its own two).
pub fn inspector_route_labels(
    lab: &LabName,
    instance: &InstanceName,
    app: &str,
) -> BTreeMap<String, String> {
    let mut labels = instance_labels(lab, instance, app);
    labels.insert(
        COMPONENT_KEY.to_owned(),
        INSPECTOR_ROUTE_COMPONENT.to_owned(),
    );
    labels
}

/// Labels on one component's objects and pods.
pub fn component_labels(
    lab: &LabName,
    instance: &InstanceName,
    app: &str,
    component: Component,
) -> BTreeMap<String, String> {
    let mut labels = instance_labels(lab, instance, app);
    labels.insert(COMPONENT_KEY.to_owned(), component.as_str().to_owned());
    labels
}

/// The selector of one component's pods: the few labels that never change,
/// since workload selectors are immutable.
pub fn component_selector(
    lab: &LabName,
    instance: &InstanceName,
    component: Component,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LAB_KEY.to_owned(), lab.to_string()),
        (INSTANCE_KEY.to_owned(), instance.to_string()),
        (COMPONENT_KEY.to_owned(), component.as_str().to_owned()),
    ])
}

/// The label selector, as text, that finds everything of one instance (or
/// attached server) of a lab.
pub fn instance_selector(lab: &LabName, instance: &InstanceName) -> String {
    format!("{},{INSTANCE_KEY}={instance}", lab_selector(lab))
}

/// The path prefix Mastodon's streaming server answers under; Traefik (or
/// the inspector) sends it to the streaming Service, the rest to web.
pub const MASTODON_STREAMING_PATH: &str = "/api/v1/streaming";

/// The label selector, as text, that finds everything of a lab.
pub fn lab_selector(lab: &LabName) -> String {
    format!("{MANAGED_BY_KEY}={MANAGED_BY},{LAB_KEY}={lab}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_kubernetes_limits() {
        let lab: LabName = "a"
            .repeat(crate::types::MAX_LAB_NAME_LEN)
            .parse()
            .expect("valid");
        let inst: InstanceName = "b"
            .repeat(crate::types::MAX_INSTANCE_NAME_LEN)
            .parse()
            .expect("valid");
        assert!(namespace(&lab).len() <= 63);
        assert!(coredns_key(&lab).len() <= 253);
        for c in Component::ALL {
            // StatefulSet pods append "-<ordinal>" and a controller hash label.
            assert!(component_object(&inst, c).len() <= 52, "{c:?}");
        }
        for name in [
            env_configmap(&inst),
            env_secret(&inst),
            admin_secret(&inst),
            tls_secret(&inst),
            media_pvc(&inst),
            inspector_route(&inst),
            verify_pod(&inst, "federation"),
        ] {
            assert!(name.len() <= 63, "{name}");
        }
    }

    #[test]
    fn coredns_keys_name_their_lab_and_nothing_else() {
        let lab: LabName = "main".parse().expect("valid");
        assert_eq!(lab_of_coredns_key(&coredns_key(&lab)), Some(lab));
        for other in [
            "user.server",
            "fedilab-main.override",
            "fedilab-.server",
            "fedilab-Bad_Lab.server",
            "main.server",
        ] {
            assert_eq!(lab_of_coredns_key(other), None, "{other}");
        }
    }

    #[test]
    fn traefik_target_follows_the_cluster_domain() {
        assert_eq!(
            traefik_service_fqdn(DEFAULT_CLUSTER_DOMAIN),
            TRAEFIK_SERVICE_FQDN
        );
        assert_eq!(
            traefik_service_fqdn("lab.internal"),
            "traefik.kube-system.svc.lab.internal."
        );
    }

    #[test]
    fn selector_is_a_subset_of_labels() {
        let lab: LabName = "main".parse().expect("valid");
        let inst: InstanceName = "mastodon1".parse().expect("valid");
        let labels = component_labels(&lab, &inst, "mastodon", Component::Web);
        for (k, v) in component_selector(&lab, &inst, Component::Web) {
            assert_eq!(labels.get(&k), Some(&v));
        }
        assert_eq!(
            lab_selector(&lab),
            "app.kubernetes.io/managed-by=fedilab,fedilab.dev/lab=main"
        );
    }
}
