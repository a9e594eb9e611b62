//! The check plan as data: which pods, where, with what; its JSON form.

use fedilab_profile::{InstanceCounts, InstanceKind, LabSpec, Overrides};
use fedilab_verify::{
    Check, CheckId, EnvSource, HostSide, PlanInputs, PodStep, Script, StepRun, VerifyPlan, plan,
};

fn spec(n: usize) -> LabSpec {
    LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(InstanceCounts::Total(n)),
            ..Overrides::default()
        },
    )
    .expect("valid")
}

fn host() -> Option<HostSide> {
    Some(HostSide {
        node_address: Some("192.0.2.10".parse().expect("ip")),
        dns: "127.0.0.1:5300".parse().expect("addr"),
        inspector: Some("127.0.0.1:8481".parse().expect("addr")),
    })
}

fn plan_of(n: usize) -> VerifyPlan {
    plan(&spec(n), &PlanInputs::new(host(), "nonce-1234"))
}

fn pods(plan: &VerifyPlan) -> Vec<(CheckId, String, Script)> {
    plan.pods()
        .map(|(c, _, p)| (c.id, p.pod.clone(), p.script))
        .collect()
}

#[test]
fn two_instances_get_one_pod_per_check_and_a_trust_pod_each() {
    let plan = plan_of(2);
    assert_eq!(plan.namespace, "fedilab-main");
    let ids: Vec<CheckId> = plan.checks.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            CheckId::Egress,
            CheckId::Names,
            CheckId::Trust,
            CheckId::Federation
        ]
    );
    assert_eq!(
        pods(&plan),
        vec![
            (
                CheckId::Egress,
                "verify-egress-mastodon1".into(),
                Script::Egress
            ),
            (
                CheckId::Names,
                "verify-names-mastodon1".into(),
                Script::Names
            ),
            (
                CheckId::Trust,
                "verify-trust-mastodon1".into(),
                Script::Trust
            ),
            (
                CheckId::Trust,
                "verify-trust-mastodon2".into(),
                Script::Trust
            ),
            (
                CheckId::Federation,
                "verify-federation-mastodon1-to-mastodon2".into(),
                Script::Federation
            ),
        ]
    );
    for (_, _, pod) in plan.pods() {
        assert_eq!(pod.image, "ghcr.io/mastodon/mastodon:v4.5.18");
        assert_eq!(pod.command()[..2], ["ruby", "-e"]);
    }
    // Egress probes the other instance's web Service.
    let (_, _, egress) = plan.pods().next().expect("egress pod");
    assert_eq!(
        egress.env_value("FEDILAB_ALLOWED_TCP"),
        Some("mastodon2-web.fedilab-main.svc.cluster.local:3000")
    );
    assert_eq!(
        egress.env_value("FEDILAB_BLOCKED_TCP"),
        Some("1.1.1.1:443,9.9.9.9:443")
    );
    // Trust from each instance to the other one.
    let trust: Vec<_> = plan
        .pods()
        .filter(|(c, _, _)| c.id == CheckId::Trust)
        .map(|(_, _, p)| p.env_value("FEDILAB_HOSTS").map(str::to_owned))
        .collect();
    assert_eq!(
        trust,
        [
            Some("mastodon2.fediverse.local".to_owned()),
            Some("mastodon1.fediverse.local".to_owned())
        ]
    );
}

#[test]
fn tokens_are_secret_references_never_literals() {
    let plan = plan_of(2);
    let (_, _, fed) = plan
        .pods()
        .find(|(c, _, _)| c.id == CheckId::Federation)
        .expect("federation pod");
    let tokens: Vec<_> = fed
        .env
        .iter()
        .filter(|e| e.name.ends_with("_TOKEN"))
        .map(|e| e.from.clone())
        .collect();
    assert_eq!(
        tokens,
        [
            EnvSource::SecretKeyRef {
                secret: "mastodon1-admin".into(),
                key: "api-token".into()
            },
            EnvSource::SecretKeyRef {
                secret: "mastodon2-admin".into(),
                key: "api-token".into()
            },
        ]
    );
    let json = serde_json::to_string(&plan).expect("json");
    assert!(json.contains("\"kind\":\"secret_key_ref\""));
}

#[test]
fn one_instance_skips_federation_and_checks_its_own_certificate() {
    let plan = plan_of(1);
    let federation = &plan.checks[3];
    assert_eq!(federation.id, CheckId::Federation);
    assert!(federation.skipped.is_some());
    assert!(federation.steps.is_empty());
    let (_, _, egress) = plan.pods().next().expect("egress pod");
    assert_eq!(
        egress.env_value("FEDILAB_ALLOWED_TCP"),
        Some("mastodon1-web.fedilab-main.svc.cluster.local:3000")
    );
    let (_, _, trust) = plan
        .pods()
        .find(|(c, _, _)| c.id == CheckId::Trust)
        .expect("trust pod");
    assert_eq!(
        trust.env_value("FEDILAB_HOSTS"),
        Some("mastodon1.fediverse.local")
    );
    assert_eq!(pods(&plan).len(), 3);
}

#[test]
fn three_instances_resolve_every_host_and_trust_from_each() {
    let plan = plan_of(3);
    assert_eq!(pods(&plan).len(), 3 + 3);
    let names = &plan.checks[1];
    let hosts = "mastodon1.fediverse.local,mastodon2.fediverse.local,mastodon3.fediverse.local";
    let StepRun::Pod(pod) = &names.steps[0].run else {
        panic!("a pod first");
    };
    assert_eq!(pod.env_value("FEDILAB_HOSTS"), Some(hosts));
    assert!(
        pod.env
            .iter()
            .any(|e| e.name == "FEDILAB_TRAEFIK_IP" && e.from == EnvSource::TraefikClusterIp)
    );
    let StepRun::HostDns(dns) = &names.steps[1].run else {
        panic!("then the host");
    };
    assert_eq!(dns.hosts.join(","), hosts);
    assert_eq!(dns.server, Some("127.0.0.1:5300".parse().expect("addr")));
    let trust_from_3 = plan
        .pods()
        .find(|(_, _, p)| p.pod == "verify-trust-mastodon3")
        .and_then(|(_, _, p)| p.env_value("FEDILAB_HOSTS").map(str::to_owned));
    assert_eq!(
        trust_from_3.as_deref(),
        Some("mastodon1.fediverse.local,mastodon2.fediverse.local")
    );
}

#[test]
fn host_side_unknown_or_without_inspector() {
    let unknown = plan(&spec(2), &PlanInputs::new(None, "n"));
    let StepRun::HostDns(dns) = &unknown.checks[1].steps[1].run else {
        panic!("host dns");
    };
    assert_eq!((dns.server, dns.expected), (None, None));
    let StepRun::Inspector(inspector) = &unknown.checks[3].steps[1].run else {
        panic!("inspector");
    };
    assert_eq!(inspector.api, None);

    let mut side = host();
    if let Some(h) = side.as_mut() {
        h.inspector = None;
    }
    let bare = plan(&spec(2), &PlanInputs::new(side, "n"));
    assert_eq!(bare.checks[3].steps.len(), 1, "no inspector step");
    assert_eq!(bare.checks[3].notes.len(), 1);
}

#[test]
fn inspector_queries_name_the_deliveries() {
    let plan = plan_of(2);
    let StepRun::Inspector(step) = &plan.checks[3].steps[1].run else {
        panic!("inspector");
    };
    assert_eq!(
        plan.checks[3].steps[1].id,
        "federation@inspector:mastodon1>mastodon2"
    );
    assert_eq!(
        step.round_trip.as_deref(),
        Some("federation@mastodon1>mastodon2")
    );
    let paths: Vec<String> = step.queries.iter().map(|q| q.path(41)).collect();
    assert_eq!(
        paths,
        [
            "/api/exchanges?activity=Follow&instance=mastodon2.fediverse.local&after=41&limit=1000",
            "/api/exchanges?activity=Accept&instance=mastodon1.fediverse.local&after=41&limit=1000",
            "/api/exchanges?activity=Create&instance=mastodon1.fediverse.local&after=41&limit=1000&text=nonce-1234-mastodon1-mastodon2",
        ]
    );
}

fn per_kind(counts: &[(InstanceKind, usize)]) -> VerifyPlan {
    let spec = LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(InstanceCounts::PerKind(counts.to_vec())),
            ..Overrides::default()
        },
    )
    .expect("valid");
    plan(&spec, &PlanInputs::new(host(), "nonce-1234"))
}

fn federation(plan: &VerifyPlan) -> &Check {
    plan.checks
        .iter()
        .find(|c| c.id == CheckId::Federation)
        .expect("federation")
}

/// The federation pods: (step id, pod, image, client only, from kind, to kind).
fn pairs(plan: &VerifyPlan) -> Vec<(String, String, String, bool, String, String)> {
    let var = |p: &PodStep, n: &str| p.env_value(n).unwrap_or_default().to_owned();
    plan.pods()
        .filter(|(c, _, _)| c.id == CheckId::Federation)
        .map(|(_, s, p)| {
            (
                s.id.clone(),
                p.pod.clone(),
                p.image.clone(),
                p.client_only,
                var(p, "FEDILAB_FROM_KIND"),
                var(p, "FEDILAB_TO_KIND"),
            )
        })
        .collect()
}

const MASTODON_IMAGE: &str = "ghcr.io/mastodon/mastodon:v4.5.18";

/// Issue 14: one round trip per ordered pair of kinds, plus Mastodon to
/// Mastodon; a pair whose A is not Mastodon runs as a client in the first
/// Mastodon instance's image.
#[test]
fn issue_14_mixed_lab_pairs_every_kind_both_ways() {
    let plan = per_kind(&[
        (InstanceKind::Mastodon, 2),
        (InstanceKind::Misskey, 1),
        (InstanceKind::Gotosocial, 1),
    ]);
    let m = |id: &str, pod: &str, client: bool, from: &str, to: &str| {
        (
            format!("federation@{id}"),
            format!("verify-federation-{pod}"),
            MASTODON_IMAGE.to_owned(),
            client,
            from.to_owned(),
            to.to_owned(),
        )
    };
    assert_eq!(
        pairs(&plan),
        [
            m(
                "mastodon1>mastodon2",
                "mastodon1-to-mastodon2",
                false,
                "mastodon",
                "mastodon"
            ),
            m(
                "mastodon1>misskey1",
                "mastodon1-to-misskey1",
                false,
                "mastodon",
                "misskey"
            ),
            m(
                "misskey1>mastodon1",
                "misskey1-to-mastodon1",
                true,
                "misskey",
                "mastodon"
            ),
            m(
                "mastodon1>gts1",
                "mastodon1-to-gts1",
                false,
                "mastodon",
                "gotosocial"
            ),
            m(
                "gts1>mastodon1",
                "gts1-to-mastodon1",
                true,
                "gotosocial",
                "mastodon"
            ),
            m(
                "misskey1>gts1",
                "misskey1-to-gts1",
                true,
                "misskey",
                "gotosocial"
            ),
            m(
                "gts1>misskey1",
                "gts1-to-misskey1",
                true,
                "gotosocial",
                "misskey"
            ),
        ]
    );
    let fed = federation(&plan);
    // Every pod step has its inspector step, after the pods.
    type Queries = Vec<(String, String)>;
    let inspector: Vec<(&str, Option<&str>, Queries)> = fed
        .steps
        .iter()
        .filter_map(|s| match &s.run {
            StepRun::Inspector(i) => Some((
                s.id.as_str(),
                i.round_trip.as_deref(),
                i.queries
                    .iter()
                    .map(|q| (q.activity.clone(), q.to.clone()))
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(inspector.len(), 7);
    assert_eq!(
        inspector[2],
        (
            "federation@inspector:misskey1>mastodon1",
            Some("federation@misskey1>mastodon1"),
            vec![
                ("Follow".into(), "mastodon1.fediverse.local".into()),
                ("Accept".into(), "misskey1.fediverse.local".into()),
                ("Create".into(), "misskey1.fediverse.local".into()),
            ]
        )
    );
    // Each pair its own nonce, so no pair sees another's post.
    let (_, _, gts_to_misskey) = plan
        .pods()
        .find(|(_, s, _)| s.id == "federation@gts1>misskey1")
        .expect("gts1 to misskey1");
    assert_eq!(
        gts_to_misskey.env_value("FEDILAB_NONCE"),
        Some("nonce-1234-gts1-misskey1")
    );
    let tokens: Vec<_> = gts_to_misskey
        .env
        .iter()
        .filter(|e| e.name.ends_with("_TOKEN"))
        .map(|e| e.from.clone())
        .collect();
    assert_eq!(
        tokens,
        [
            EnvSource::SecretKeyRef {
                secret: "gts1-admin".into(),
                key: "api-token".into()
            },
            EnvSource::SecretKeyRef {
                secret: "misskey1-admin".into(),
                key: "api-token".into()
            },
        ]
    );
    let causes = fed.cause("private_addresses_refused");
    for setting in [
        "ALLOWED_PRIVATE_ADDRESSES",
        "allowedPrivateNetworks",
        "http-client.allow-ips",
    ] {
        assert!(causes.contains(setting), "{causes}");
    }
}

/// Issue 14: two Mastodon instances (today's lab): one pair, as before.
#[test]
fn issue_14_two_mastodons_make_one_pair() {
    let plan = per_kind(&[(InstanceKind::Mastodon, 2)]);
    assert_eq!(
        pairs(&plan)
            .into_iter()
            .map(|p| (p.0, p.3))
            .collect::<Vec<_>>(),
        [("federation@mastodon1>mastodon2".to_owned(), false)]
    );
    assert_eq!(plan, plan_of(2), "the same as `--instances 2`");
}

/// Issue 14: without Mastodon, every pair runs as a client in the pinned
/// Mastodon image; the egress, names and trust pods are skipped (they run
/// in a Mastodon instance).
#[test]
fn issue_14_misskey_and_gotosocial_only() {
    let plan = per_kind(&[(InstanceKind::Misskey, 1), (InstanceKind::Gotosocial, 2)]);
    let got: Vec<_> = pairs(&plan).into_iter().map(|p| (p.0, p.2, p.3)).collect();
    let client = |id: &str| {
        (
            format!("federation@{id}"),
            format!(
                "{}:{}",
                fedilab_profile::DEFAULT_MASTODON_IMAGE,
                fedilab_profile::DEFAULT_MASTODON_VERSION
            ),
            true,
        )
    };
    assert_eq!(
        got,
        [
            client("gts1>gts2"),
            client("misskey1>gts1"),
            client("gts1>misskey1")
        ]
    );
    assert_eq!(got[0].1, MASTODON_IMAGE);
    assert!(federation(&plan).skipped.is_none());
    for c in &plan.checks[..3] {
        assert!(
            c.skipped.is_some() || c.steps.iter().all(|s| !matches!(s.run, StepRun::Pod(_))),
            "{c:#?}"
        );
    }
    // One instance of one kind: nothing to pair.
    let alone = per_kind(&[(InstanceKind::Misskey, 1)]);
    assert!(federation(&alone).skipped.is_some());
}

#[test]
fn the_json_plan() {
    insta::assert_json_snapshot!("plan_two_instances", plan_of(2));
}
