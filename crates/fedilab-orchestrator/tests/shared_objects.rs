//! Issue 12, the shared k3s objects: fedilab on a node that runs other work
//! never breaks what it shares with it. Against the fake API server: a
//! user's own Traefik HelmChartConfig is never written or deleted; a lab
//! domain that a user's `coredns-custom` key already serves is refused with
//! the key's name; a CoreDNS rollout that does not come back takes the
//! lab's key out again (and `down` waits for CoreDNS too); the cluster
//! domain read from CoreDNS's Corefile becomes the CNAME target; a
//! dual-stack cluster's IPv6 networks reach the egress policy and
//! `ALLOWED_PRIVATE_ADDRESSES`.

mod common;

use std::time::Duration;

use common::{Behaviour, Fake, bounded, fixture_tls, manifests, spec};
use fedilab_manifest::{ClusterFacts, LabManifests, LabSecrets, Routing, build_on, seed_from_text};
use fedilab_orchestrator::{
    ApplyError, CoreDnsWait, DownError, DownOptions, Preflight, PreflightError, PreflightOptions,
    apply, cluster_facts, down, preflight,
};
use fedilab_profile::{LabSpec, names};
use serde_json::{Value, json};

/// A user's own HelmChartConfig, as `kubectl apply` leaves it: their
/// entrypoint settings, trusted IPs and extra arguments.
const USER_VALUES: &str = "ports:\n  websecure:\n    http3:\n      enabled: true\n    forwardedHeaders:\n      trustedIPs: [\"10.0.0.0/8\"]\n  web:\n    redirections:\n      entryPoint:\n        to: websecure\nadditionalArguments:\n  - \"--serversTransport.insecureSkipVerify=true\"\n";

fn user_helm_chart_config(values: &str) -> Value {
    json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig",
           "metadata": {"name": "traefik", "namespace": "kube-system",
                        "annotations": {"owner": "the user"}},
           "spec": {"valuesContent": values}})
}

/// What an older fedilab applied as `kube-system/traefik`: its label and
/// the access-log values chart 41 no longer accepts.
fn legacy_helm_chart_config() -> Value {
    json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig",
           "metadata": {"name": "traefik", "namespace": "kube-system",
                        "labels": {names::MANAGED_BY_KEY: names::MANAGED_BY}},
           "spec": {"valuesContent": "logs:\n  access:\n    enabled: true\n"}})
}

fn helm_chart_config(fake: &Fake) -> Option<Value> {
    fake.object("helmchartconfigs", Some("kube-system"), "traefik")
}

fn fast_down() -> DownOptions {
    DownOptions {
        timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(5),
    }
}

async fn checked(fake: &Fake, spec: &LabSpec, manifests: &LabManifests) -> Preflight {
    bounded(preflight(
        &fake.cluster,
        spec,
        manifests,
        PreflightOptions::default(),
    ))
    .await
    .expect("preflight passes")
}

async fn up(fake: &Fake, spec: &LabSpec) {
    let manifests = manifests(spec);
    let checked = checked(fake, spec, &manifests).await;
    bounded(apply(&fake.cluster, spec, &manifests, &checked))
        .await
        .expect("applied");
}

/// Whether any request wrote to a HelmChartConfig.
fn wrote_helm_chart_config(fake: &Fake) -> bool {
    fake.log()
        .iter()
        .any(|r| r.method != "GET" && r.path.contains("helmchartconfigs"))
}

/// The user's HelmChartConfig is theirs: two labs up and down leave it
/// exactly as it was (same text, same resourceVersion, no fedilab label or
/// field manager), and fedilab never sends it a write. Before issue 12 `up`
/// force-applied its own valuesContent over it and the last `down` emptied
/// it.
#[tokio::test]
async fn a_users_helm_chart_config_survives_up_and_the_last_down_byte_for_byte() {
    let fake = Fake::start(Behaviour::default());
    fake.seed(
        "helmchartconfigs",
        Some("kube-system"),
        "traefik",
        "kubectl-client-side-apply",
        user_helm_chart_config(USER_VALUES),
    );
    let before = helm_chart_config(&fake).expect("seeded");

    let main = spec("main", "fediverse.local", 2);
    let other = spec("other", "fediverse.test", 1);
    up(&fake, &main).await;
    up(&fake, &other).await;
    assert_eq!(helm_chart_config(&fake), Some(before.clone()), "after up");

    bounded(down(&fake.cluster, &main.name, &fast_down()))
        .await
        .expect("down main");
    let report = bounded(down(&fake.cluster, &other.name, &fast_down()))
        .await
        .expect("down other, the last lab");
    assert!(!report.traefik_config_removed);
    let after = helm_chart_config(&fake).expect("the user's object is still there");
    assert_eq!(after, before, "after the last down");
    assert_eq!(after["spec"]["valuesContent"].as_str(), Some(USER_VALUES));
    assert!(after["metadata"]["labels"][names::MANAGED_BY_KEY].is_null());
    assert!(!wrote_helm_chart_config(&fake));
}

/// An older fedilab stamped its label on a user's HelmChartConfig and
/// took over valuesContent. The user's manager is still in managedFields,
/// so the last `down` leaves the object alone (before issue 12 it applied
/// an empty object as `fedilab`, dropping the values).
#[tokio::test]
async fn a_users_helm_chart_config_that_an_older_fedilab_stamped_is_left_alone() {
    let fake = Fake::start(Behaviour::default());
    fake.seed(
        "helmchartconfigs",
        Some("kube-system"),
        "traefik",
        "kubectl-client-side-apply",
        user_helm_chart_config(USER_VALUES),
    );
    fake.seed(
        "helmchartconfigs",
        Some("kube-system"),
        "traefik",
        names::FIELD_MANAGER,
        legacy_helm_chart_config(),
    );
    let before = helm_chart_config(&fake).expect("seeded");
    let main = spec("main", "fediverse.local", 1);
    up(&fake, &main).await;
    let report = bounded(down(&fake.cluster, &main.name, &fast_down()))
        .await
        .expect("down");
    assert!(!report.traefik_config_removed);
    assert_eq!(helm_chart_config(&fake), Some(before));
    assert!(!wrote_helm_chart_config(&fake));
}

/// The one HelmChartConfig fedilab may delete: the one an older fedilab
/// created and wrote alone, with exactly its old access-log values (chart
/// 41 no longer accepts `logs.access`). Not while another lab is there.
#[tokio::test]
async fn the_last_down_deletes_only_a_helm_chart_config_an_older_fedilab_created() {
    let fake = Fake::start(Behaviour::default());
    fake.seed(
        "helmchartconfigs",
        Some("kube-system"),
        "traefik",
        names::FIELD_MANAGER,
        legacy_helm_chart_config(),
    );
    let main = spec("main", "fediverse.local", 1);
    let other = spec("other", "fediverse.test", 1);
    up(&fake, &main).await;
    up(&fake, &other).await;
    let report = bounded(down(&fake.cluster, &main.name, &fast_down()))
        .await
        .expect("down main");
    assert!(!report.traefik_config_removed);
    assert!(helm_chart_config(&fake).is_some());
    let report = bounded(down(&fake.cluster, &other.name, &fast_down()))
        .await
        .expect("down other");
    assert!(report.traefik_config_removed);
    assert!(helm_chart_config(&fake).is_none());
}

/// A user's server block (or override) that serves the lab domain would
/// make CoreDNS exit on a second block for it ("already defined"): preflight
/// refuses, names the key and writes nothing. Before issue 12 only keys
/// named `fedilab-*.server` were looked at.
#[tokio::test]
async fn a_conflicting_user_coredns_key_is_refused_with_its_name() {
    for (key, block) in [
        (
            "mycompany.server",
            "fediverse.local:53 {\n    forward . 10.0.0.53\n}\n",
        ),
        (
            "lab-hosts.override",
            "hosts {\n    10.0.0.7 mastodon1.fediverse.local\n    fallthrough\n}\n",
        ),
    ] {
        let fake = Fake::start(Behaviour::default());
        fake.seed(
            "configmaps",
            Some("kube-system"),
            "coredns-custom",
            "kubectl-client-side-apply",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "coredns-custom", "namespace": "kube-system"},
                   "data": {key: block, "unrelated.server": "example.test:53 {\n}\n"}}),
        );
        let spec = spec("main", "fediverse.local", 1);
        let err = bounded(preflight(
            &fake.cluster,
            &spec,
            &manifests(&spec),
            PreflightOptions::default(),
        ))
        .await
        .expect_err("the domain is served");
        assert!(
            matches!(&err, PreflightError::DomainServed { key: k, .. } if k == key),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(key), "{message}");
        assert!(message.contains("--domain"), "{message}");
        assert!(fake.log().iter().all(|r| r.method == "GET"));
    }
}

/// A `coredns-custom` ConfigMap the user created (empty, ready for keys)
/// is theirs: the lab's key comes and goes, the ConfigMap stays (before
/// issue 12 `down` deleted it once it was empty again).
#[tokio::test]
async fn a_users_empty_coredns_custom_configmap_outlives_the_lab() {
    let fake = Fake::start(Behaviour::default());
    fake.seed(
        "configmaps",
        Some("kube-system"),
        "coredns-custom",
        "kubectl-create",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "coredns-custom", "namespace": "kube-system"}}),
    );
    let spec = spec("main", "fediverse.local", 1);
    up(&fake, &spec).await;
    bounded(down(&fake.cluster, &spec.name, &fast_down()))
        .await
        .expect("down");
    let left = fake
        .object("configmaps", Some("kube-system"), "coredns-custom")
        .expect("the user's ConfigMap stays");
    assert!(left["data"]["fedilab-main.server"].is_null());
}

/// k3s's CoreDNS with the selector and pod labels of the real one, so the
/// fake has a pod (and a log) for it.
fn seed_coredns(fake: &Fake) {
    fake.seed(
        "deployments",
        Some("kube-system"),
        "coredns",
        "k3s",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "coredns", "namespace": "kube-system"},
               "spec": {"replicas": 1,
                        "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                                     "spec": {"containers": [{"name": "coredns"}]}}}}),
    );
}

/// A CoreDNS Deployment status that never completes a rollout.
fn stuck_coredns() -> serde_json::Value {
    json!({"observedGeneration": 1000, "replicas": 1, "updatedReplicas": 0,
           "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 1})
}

const QUICK: CoreDnsWait = CoreDnsWait {
    timeout: Duration::from_millis(100),
    poll_interval: Duration::from_millis(5),
};

/// CoreDNS never becomes available after the restart: apply takes the
/// lab's key out again, restarts CoreDNS once more and fails with the
/// CoreDNS pod's log tail. Before issue 12 apply returned after the
/// restart without looking.
#[tokio::test]
async fn a_coredns_rollout_that_never_becomes_available_rolls_the_key_back() {
    let fake = Fake::start(Behaviour::default());
    seed_coredns(&fake);
    // Its status is pinned: the controller sees the restart, but no
    // replica of the new template ever becomes available.
    fake.set_status(
        "deployments",
        Some("kube-system"),
        "coredns",
        stuck_coredns(),
    );
    let spec = spec("main", "fediverse.local", 1);
    let manifests = manifests(&spec);
    let mut checked = checked(&fake, &spec, &manifests).await;
    checked.coredns_wait = QUICK;
    let err = bounded(apply(&fake.cluster, &spec, &manifests, &checked))
        .await
        .expect_err("CoreDNS stays down");
    assert!(
        matches!(err, ApplyError::CoreDnsUnavailable { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    for needle in [
        "fedilab-main.server",
        "0 of 1 replicas updated",
        "removed again",
        "last log lines of kube-system/coredns-1",
    ] {
        assert!(message.contains(needle), "no {needle:?} in:\n{message}");
    }
    let key_left = fake
        .object("configmaps", Some("kube-system"), "coredns-custom")
        .is_some_and(|c| !c["data"]["fedilab-main.server"].is_null());
    assert!(!key_left, "the lab's key is out again");
    let restarts = fake
        .log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/deployments/coredns"))
        .count();
    assert_eq!(restarts, 2, "restarted with the key, and without it");
}

/// `down` waits for CoreDNS the same way, and says so when it does not
/// come back (before issue 12 it restarted CoreDNS and moved on).
#[tokio::test]
async fn down_waits_for_coredns_and_reports_when_it_does_not_come_back() {
    let fake = Fake::start(Behaviour::default());
    seed_coredns(&fake);
    let spec = spec("main", "fediverse.local", 1);
    up(&fake, &spec).await;
    fake.set_status(
        "deployments",
        Some("kube-system"),
        "coredns",
        stuck_coredns(),
    );
    let options = DownOptions {
        timeout: Duration::from_millis(100),
        poll_interval: Duration::from_millis(5),
    };
    let err = bounded(down(&fake.cluster, &spec.name, &options))
        .await
        .expect_err("CoreDNS stays down");
    assert!(
        matches!(err, DownError::CoreDnsUnavailable { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("last log lines of kube-system/coredns-1"),
        "{message}"
    );
    let key_left = fake
        .object("configmaps", Some("kube-system"), "coredns-custom")
        .is_some_and(|c| !c["data"]["fedilab-main.server"].is_null());
    assert!(!key_left, "the key is removed all the same");
}

fn build_for(spec: &LabSpec, facts: &ClusterFacts) -> LabManifests {
    let secrets = LabSecrets::generate(spec, seed_from_text("fake-api tests"));
    build_on(spec, &secrets, &fixture_tls(spec), &Routing::Direct, facts).expect("built")
}

/// k3s started with `--cluster-domain lab.internal`: the Corefile says so,
/// and the lab's CNAME points into that domain (before issue 12 it was
/// always `cluster.local`, which such a cluster does not serve).
#[tokio::test]
async fn a_non_default_cluster_domain_flows_into_the_cname() {
    let fake = Fake::start(Behaviour::default());
    let corefile = ".:53 {\n    errors\n    health\n    ready\n    kubernetes lab.internal in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n    forward . /etc/resolv.conf\n    import /etc/coredns/custom/*.override\n}\nimport /etc/coredns/custom/*.server\n";
    fake.seed(
        "configmaps",
        Some("kube-system"),
        "coredns",
        "k3s",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "coredns", "namespace": "kube-system"},
               "data": {"Corefile": corefile}}),
    );
    let facts = bounded(cluster_facts(&fake.cluster)).await.expect("facts");
    assert_eq!(facts.cluster_domain.as_str(), "lab.internal");

    let spec = spec("main", "fediverse.local", 1);
    let manifests = build_for(&spec, &facts);
    let checked = checked(&fake, &spec, &manifests).await;
    bounded(apply(&fake.cluster, &spec, &manifests, &checked))
        .await
        .expect("applied");
    let stored = fake
        .object("configmaps", Some("kube-system"), "coredns-custom")
        .expect("key applied");
    let block = stored["data"]["fedilab-main.server"]
        .as_str()
        .expect("the lab's key");
    assert!(
        block.contains("IN CNAME traefik.kube-system.svc.lab.internal."),
        "{block}"
    );
    assert!(!block.contains("cluster.local"), "{block}");
}

/// A dual-stack node: the IPv6 pod network (node `spec.podCIDRs`) and
/// service network (ServiceCIDR) join the egress policy and
/// `ALLOWED_PRIVATE_ADDRESSES`, since CoreDNS answers lab names' AAAA
/// queries with Traefik's IPv6 ClusterIP. Before issue 12 both held
/// 10.42.0.0/15 only, so IPv6 federation was blocked.
#[tokio::test]
async fn dual_stack_cidrs_reach_the_policy_and_allowed_private_addresses() {
    let fake = Fake::start(Behaviour::default());
    // The node's spec.podCIDRs: 10.42.0.0/24 and 2001:cafe:42::/64.
    fake.seed_fixture("node-dual-stack.yaml");
    fake.seed(
        "services",
        Some("kube-system"),
        "traefik",
        "k3s",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "traefik", "namespace": "kube-system"},
               "spec": {"clusterIP": "10.43.0.20",
                        "clusterIPs": ["10.43.0.20", "2001:cafe:43::20"],
                        "ipFamilies": ["IPv4", "IPv6"],
                        "ipFamilyPolicy": "PreferDualStack"}}),
    );
    fake.seed(
        "servicecidrs",
        None,
        "kubernetes",
        "kube-apiserver",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
               "metadata": {"name": "kubernetes"},
               "spec": {"cidrs": ["10.43.0.0/16", "2001:cafe:43::/112"]}}),
    );
    let facts = bounded(cluster_facts(&fake.cluster)).await.expect("facts");
    let ipv6: Vec<String> = facts.ipv6_cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(ipv6, vec!["2001:cafe:42::/64", "2001:cafe:43::/112"]);

    let spec = spec("main", "fediverse.local", 2);
    let manifests = build_for(&spec, &facts);
    let checked = checked(&fake, &spec, &manifests).await;
    bounded(apply(&fake.cluster, &spec, &manifests, &checked))
        .await
        .expect("applied");
    let policy = fake
        .object(
            "networkpolicies",
            Some("fedilab-main"),
            names::EGRESS_POLICY,
        )
        .expect("policy");
    let blocks: Vec<&str> = policy["spec"]["egress"][0]["to"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(
        blocks,
        vec!["10.42.0.0/15", "2001:cafe:42::/64", "2001:cafe:43::/112"]
    );
    for instance in ["mastodon1", "mastodon2"] {
        let env = fake
            .object(
                "configmaps",
                Some("fedilab-main"),
                &format!("{instance}-env"),
            )
            .expect("env");
        assert_eq!(
            env["data"]["ALLOWED_PRIVATE_ADDRESSES"],
            "10.42.0.0/15,2001:cafe:42::/64,2001:cafe:43::/112"
        );
    }
}

/// Without a ServiceCIDR (a cluster before 1.33, or none readable), the
/// IPv6 ClusterIP of Traefik itself is covered, so the AAAA answer is
/// reachable all the same.
#[tokio::test]
async fn without_service_cidrs_traefiks_ipv6_address_is_covered() {
    let fake = Fake::start(Behaviour::default());
    // The node's spec.podCIDRs: 10.42.0.0/24 and 2001:cafe:42::/64.
    fake.seed_fixture("node-dual-stack.yaml");
    fake.seed(
        "services",
        Some("kube-system"),
        "traefik",
        "k3s",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "traefik", "namespace": "kube-system"},
               "spec": {"clusterIP": "10.43.0.20",
                        "clusterIPs": ["10.43.0.20", "2001:cafe:43::20"]}}),
    );
    let facts = bounded(cluster_facts(&fake.cluster)).await.expect("facts");
    let ipv6: Vec<String> = facts.ipv6_cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(ipv6, vec!["2001:cafe:42::/64", "2001:cafe:43::20/128"]);
}

/// On k3s's defaults (single stack, `cluster.local`) the facts are the
/// default ones and the objects are exactly what `build` makes, so the
/// golden files in manifests/ stay as they are.
#[tokio::test]
async fn a_single_stack_default_cluster_changes_nothing() {
    let fake = Fake::start(Behaviour::default());
    let facts = bounded(cluster_facts(&fake.cluster)).await.expect("facts");
    assert_eq!(facts, ClusterFacts::default());
    let spec = spec("main", "fediverse.local", 2);
    assert_eq!(build_for(&spec, &facts), manifests(&spec));
    assert!(fake.log().iter().all(|r| r.method == "GET"));
}
