//! The objects of a lab: snapshots of the shipped profiles, and properties
//! every lab must have whatever its size.

use std::collections::{BTreeMap, BTreeSet};

use fedilab_manifest::{
    BuildError, LabManifests, LabSecrets, LeafPem, Manifest, Routing, TlsMaterial, build,
    seed_from_text,
};
use fedilab_profile::names;
use fedilab_profile::{InstanceCounts, LabProfile, LabSpec, Overrides};

const PROFILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../lab-profiles");

fn spec_from(profile_file: &str, overrides: &Overrides) -> LabSpec {
    let path = format!("{PROFILES}/{profile_file}");
    let text = std::fs::read_to_string(&path).expect("shipped profile readable");
    let profile = LabProfile::from_yaml(&text, &path).expect("shipped profile parses");
    LabSpec::resolve(&profile, overrides).expect("shipped profile valid")
}

/// Stand-in PEMs: certificate issuance is fedilab-ca's, tested there; here
/// only their placement matters, and fixed text keeps snapshots stable.
fn fixture_tls(spec: &LabSpec) -> TlsMaterial {
    TlsMaterial {
        ca_cert_pem: "-----BEGIN CERTIFICATE-----\nTEST-LAB-CA\n-----END CERTIFICATE-----\n".into(),
        leaves: spec
            .instances
            .iter()
            .map(|i| {
                let leaf = LeafPem {
                    cert_pem: format!(
                        "-----BEGIN CERTIFICATE-----\nTEST-LEAF {}\n-----END CERTIFICATE-----\n",
                        i.host
                    ),
                    key_pem: format!(
                        "-----BEGIN PRIVATE KEY-----\nTEST-KEY {}\n-----END PRIVATE KEY-----\n",
                        i.host
                    ),
                };
                (i.name.clone(), leaf)
            })
            .collect(),
    }
}

fn render(spec: &LabSpec) -> LabManifests {
    let secrets = LabSecrets::generate(spec, seed_from_text("fedilab-test"));
    build(spec, &secrets, &fixture_tls(spec), &Routing::Direct).expect("builds")
}

const INSPECTOR: Routing = Routing::Inspector {
    proxy: std::net::SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)),
        8480,
    ),
};

/// A Mastodon instance and an external server on the host.
const WITH_EXTERNAL: &str = "instances:\n  - name: mastodon1\n  - name: mine\n    kind: external\n    url: http://127.0.0.1:3000\n";

fn spec_yaml(yaml: &str) -> LabSpec {
    LabSpec::resolve(
        &LabProfile::from_yaml(yaml, "test.yaml").expect("parses"),
        &Overrides::default(),
    )
    .expect("valid")
}

fn render_routed(spec: &LabSpec, routing: &Routing) -> Result<LabManifests, BuildError> {
    let secrets = LabSecrets::generate(spec, seed_from_text("fedilab-test"));
    build(spec, &secrets, &fixture_tls(spec), routing)
}

/// The objects of `instance` that route traffic to it (and, for an
/// external one, everything it has), in apply order, as YAML.
fn route_objects_yaml(manifests: &LabManifests, instance: &str) -> String {
    let routed = manifests
        .objects
        .iter()
        .filter(|o| {
            let labels = o.metadata().labels.clone().unwrap_or_default();
            labels.get(names::INSTANCE_KEY).map(String::as_str) == Some(instance)
                && (matches!(o.kind(), "Ingress" | "EndpointSlice")
                    || labels.get(names::COMPONENT_KEY).map(String::as_str)
                        == Some(names::INSPECTOR_ROUTE_COMPONENT)
                    || instance == "mine")
        })
        .cloned()
        .collect();
    LabManifests { objects: routed }.to_yaml().expect("yaml")
}

fn json(object: &Manifest) -> serde_json::Value {
    serde_json::to_value(object).expect("serializes")
}

#[test]
fn mastodon_pair_snapshot() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    insta::assert_snapshot!("mastodon-pair", render(&spec).to_yaml().expect("yaml"));
}

#[test]
fn mastodon_trio_snapshot() {
    let spec = spec_from("mastodon-trio.yaml", &Overrides::default());
    insta::assert_snapshot!("mastodon-trio", render(&spec).to_yaml().expect("yaml"));
}

#[test]
fn every_object_is_labelled_for_teardown() {
    let spec = spec_from("mastodon-trio.yaml", &Overrides::default());
    let lab_ns = names::namespace(&spec.name);
    for object in render(&spec).objects {
        let labels = object.metadata().labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(names::MANAGED_BY_KEY).map(String::as_str),
            Some(names::MANAGED_BY),
            "{}",
            object.describe()
        );
        let in_lab = object.namespace() == Some(lab_ns.as_str()) || object.kind() == "Namespace";
        if in_lab {
            assert_eq!(
                labels.get(names::LAB_KEY),
                Some(&spec.name.to_string()),
                "{}",
                object.describe()
            );
        } else {
            // Shared kube-system objects: several labs apply them, so none
            // may carry one lab's label.
            assert_eq!(
                object.namespace(),
                Some(names::KUBE_SYSTEM),
                "{}",
                object.describe()
            );
            assert!(
                !labels.contains_key(names::LAB_KEY),
                "{}",
                object.describe()
            );
        }
    }
}

#[test]
fn apply_order_fences_pods_before_they_exist() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    let kinds: Vec<String> = render(&spec)
        .objects
        .iter()
        .map(|o| o.kind().to_owned())
        .collect();
    assert_eq!(kinds[0], "Namespace");
    assert_eq!(kinds[1], "NetworkPolicy");
    let first = |k: &str| kinds.iter().position(|x| x == k).expect("present");
    let last = |k: &str| kinds.iter().rposition(|x| x == k).expect("present");
    assert!(last("Secret") < first("StatefulSet"));
    assert!(last("ConfigMap") < first("Deployment"));
    assert!(last("StatefulSet") < first("Job"));
    assert!(last("Deployment") < first("Job"));
    assert_eq!(kinds.last().map(String::as_str), Some("Job"));
}

#[test]
fn egress_is_closed_to_the_cluster_networks() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    let objects = render(&spec).objects;
    let policy = objects
        .iter()
        .find(|o| o.kind() == "NetworkPolicy")
        .expect("policy");
    let v = json(policy);
    assert_eq!(
        v["spec"]["podSelector"],
        serde_json::json!({}),
        "selects every pod"
    );
    assert_eq!(v["spec"]["policyTypes"], serde_json::json!(["Egress"]));
    assert_eq!(
        v["spec"]["egress"],
        serde_json::json!([{ "to": [{ "ipBlock": { "cidr": "10.42.0.0/15" } }] }])
    );
}

#[test]
fn names_are_unique_and_hosts_distinct_for_1_to_50_instances() {
    for n in 1..=50 {
        let spec = spec_from(
            "mastodon-pair.yaml",
            &Overrides {
                instances: Some(InstanceCounts::Total(n)),
                ..Overrides::default()
            },
        );
        let objects = render(&spec).objects;
        let mut seen = BTreeSet::new();
        for o in &objects {
            assert!(
                seen.insert((
                    o.kind().to_owned(),
                    o.namespace().map(str::to_owned),
                    o.name().to_owned()
                )),
                "duplicate {}",
                o.describe()
            );
        }
        let hosts: BTreeSet<String> = objects
            .iter()
            .filter(|o| o.kind() == "Ingress")
            .map(|o| {
                json(o)["spec"]["rules"][0]["host"]
                    .as_str()
                    .expect("host")
                    .to_owned()
            })
            .collect();
        assert_eq!(hosts.len(), n);
        // 5 lab objects (no Traefik HelmChartConfig since issue 12), then
        // 16 per Mastodon instance.
        assert_eq!(objects.len(), 5 + 16 * n, "n = {n}");
    }
}

#[test]
fn coredns_key_answers_the_lab_domain_with_traefik() {
    let spec = spec_from(
        "mastodon-pair.yaml",
        &Overrides {
            domain: Some("fediverse.test".into()),
            ..Overrides::default()
        },
    );
    let objects = render(&spec).objects;
    let cm = objects
        .iter()
        .find(|o| o.name() == names::COREDNS_CUSTOM_CONFIGMAP)
        .expect("coredns-custom");
    let v = json(cm);
    let data = v["data"].as_object().expect("data");
    assert_eq!(data.len(), 1, "exactly this lab's key");
    let block = data[&names::coredns_key(&spec.name)].as_str().expect("key");
    assert!(block.contains("fediverse.test:53 {"));
    assert!(block.contains("template IN A fediverse.test {"));
    assert!(block.contains("template IN AAAA fediverse.test {"));
    assert!(block.contains("IN CNAME traefik.kube-system.svc.cluster.local."));
    assert_eq!(
        block.matches('{').count(),
        block.matches('}').count(),
        "balanced braces"
    );
}

#[test]
fn mastodon_env_points_at_its_own_services_and_the_trust_bundle() {
    let spec = spec_from("mastodon-trio.yaml", &Overrides::default());
    let objects = render(&spec).objects;
    let env = |instance: &str| -> BTreeMap<String, String> {
        let o = objects
            .iter()
            .find(|o| o.name() == format!("{instance}-env"))
            .expect("env configmap");
        serde_json::from_value(json(o)["data"].clone()).expect("string map")
    };
    let e = env("mastodon3");
    assert_eq!(e["LOCAL_DOMAIN"], "mastodon3.fediverse.local");
    assert_eq!(e["DB_HOST"], "mastodon3-postgres");
    assert_eq!(e["REDIS_HOST"], "mastodon3-redis");
    assert_eq!(e["ALLOWED_PRIVATE_ADDRESSES"], "10.42.0.0/15");
    assert_eq!(e["AUTHORIZED_FETCH"], "true");
    assert_eq!(env("mastodon1")["AUTHORIZED_FETCH"], "false");
    assert_eq!(e["SSL_CERT_FILE"], "/etc/fedilab/trust/ca-certificates.crt");
}

#[test]
fn secrets_carry_what_the_release_needs() {
    let decode = |objects: &[Manifest], name: &str| -> BTreeMap<String, String> {
        let o = objects.iter().find(|o| o.name() == name).expect("secret");
        let Manifest::Secret(secret) = o else {
            panic!("{name} is not a Secret")
        };
        secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf-8")))
            .collect()
    };
    let yaml = "instances:\n  - {name: old, version: v4.3.9}\n  - {name: new}\n";
    let spec = LabSpec::resolve(
        &LabProfile::from_yaml(yaml, "t").expect("parses"),
        &Overrides::default(),
    )
    .expect("valid");
    let objects = render(&spec).objects;
    let old = decode(&objects, "old-secrets");
    let new = decode(&objects, "new-secrets");
    assert_eq!(old["OTP_SECRET"].len(), 128, "4.3 requires OTP_SECRET");
    assert!(!new.contains_key("OTP_SECRET"), "4.4 removed OTP_SECRET");
    for key in [
        "SECRET_KEY_BASE",
        "VAPID_PRIVATE_KEY",
        "VAPID_PUBLIC_KEY",
        "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
        "DB_PASS",
    ] {
        assert!(!new[key].is_empty(), "{key}");
    }
    let admin = decode(&objects, "new-admin");
    assert_eq!(admin["username"], "labadmin");
    assert_eq!(admin["email"], "labadmin@new.fediverse.local");
    assert_eq!(admin["password"].len(), 24);
    let tls = decode(&objects, "new-tls");
    assert!(tls["tls.crt"].contains("TEST-LEAF new.fediverse.local"));
}

#[test]
fn missing_material_is_an_error_not_a_partial_lab() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    let secrets = LabSecrets::generate(&spec, seed_from_text("x"));
    let mut tls = fixture_tls(&spec);
    tls.leaves.clear();
    let err = build(&spec, &secrets, &tls, &Routing::Direct).expect_err("no leaves");
    assert_eq!(err.to_string(), "no TLS certificate for instance mastodon1");
    let err = build(
        &spec,
        &LabSecrets::default(),
        &fixture_tls(&spec),
        &Routing::Direct,
    )
    .expect_err("no secrets");
    assert_eq!(
        err.to_string(),
        "no generated secrets for instance mastodon1"
    );
}

#[test]
fn json_output_is_a_v1_list_of_the_same_objects() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    let manifests = render(&spec);
    let v: serde_json::Value =
        serde_json::from_str(&manifests.to_json().expect("json")).expect("valid JSON");
    assert_eq!(v["kind"], "List");
    assert_eq!(
        v["items"].as_array().map(Vec::len),
        Some(manifests.objects.len())
    );
    // Issue 12: no Traefik HelmChartConfig (that object is the user's);
    // the only kube-system object is the lab's coredns-custom key.
    let items = v["items"].as_array().expect("items");
    assert!(items.iter().all(|i| i["kind"] != "HelmChartConfig"));
    let kube_system: Vec<&serde_json::Value> = items
        .iter()
        .filter(|i| i["metadata"]["namespace"] == names::KUBE_SYSTEM)
        .collect();
    assert_eq!(kube_system.len(), 1);
    assert_eq!(
        kube_system[0]["metadata"]["name"],
        names::COREDNS_CUSTOM_CONFIGMAP
    );
}

#[test]
fn yaml_documents_read_back_as_the_same_objects() {
    let spec = spec_from("mastodon-trio.yaml", &Overrides::default());
    let manifests = render(&spec);
    let yaml = manifests.to_yaml().expect("yaml");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).expect("reads back");
    let expected: Vec<serde_json::Value> = manifests.objects.iter().map(json).collect();
    assert_eq!(docs, expected);
}

#[test]
fn inspector_routing_of_a_mastodon_instance_snapshot() {
    let spec = spec_yaml(WITH_EXTERNAL);
    let manifests = render_routed(&spec, &INSPECTOR).expect("builds");
    insta::assert_snapshot!(
        "inspector-route-mastodon",
        route_objects_yaml(&manifests, "mastodon1")
    );
}

#[test]
fn external_instance_snapshot() {
    let spec = spec_yaml(WITH_EXTERNAL);
    let manifests = render_routed(&spec, &INSPECTOR).expect("builds");
    insta::assert_snapshot!("external-instance", route_objects_yaml(&manifests, "mine"));
}

#[test]
fn inspector_routing_keeps_the_mastodon_objects_and_only_changes_the_route() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    let direct = render(&spec).objects;
    let routed = render_routed(&spec, &INSPECTOR).expect("builds").objects;
    let not_ingress = |o: &&Manifest| o.kind() != "Ingress";
    let direct_rest: Vec<_> = direct.iter().filter(not_ingress).collect();
    let routed_rest: Vec<_> = routed
        .iter()
        .filter(not_ingress)
        .filter(|o| o.name() != "mastodon1-inspector" && o.name() != "mastodon2-inspector")
        .collect();
    assert_eq!(
        direct_rest, routed_rest,
        "everything else is as with Direct"
    );
    // 2 more objects per instance (the Service and the EndpointSlice).
    assert_eq!(routed.len(), direct.len() + 2 * 2);
    for o in routed.iter().filter(|o| o.kind() == "Ingress") {
        let v = json(o);
        let paths = v["spec"]["rules"][0]["http"]["paths"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(paths.len(), 1, "{}", o.describe());
        assert_eq!(paths[0]["path"], "/");
        assert_eq!(
            paths[0]["backend"]["service"]["name"],
            format!("{}-inspector", o.name())
        );
        assert_eq!(paths[0]["backend"]["service"]["port"]["number"], 80);
    }
    // The Jobs stay last.
    assert_eq!(routed.last().map(Manifest::kind), Some("Job"));
}

#[test]
fn endpoint_slices_match_their_service_and_never_claim_the_controllers_label() {
    let spec = spec_yaml(WITH_EXTERNAL);
    let objects = render_routed(&spec, &INSPECTOR).expect("builds").objects;
    let slices: Vec<_> = objects
        .iter()
        .filter(|o| o.kind() == "EndpointSlice")
        .collect();
    assert_eq!(slices.len(), 2);
    for slice in slices {
        let v = json(slice);
        let service = objects
            .iter()
            .find(|o| o.kind() == "Service" && o.name() == slice.name())
            .expect("a Service of the same name");
        let s = json(service);
        assert!(s["spec"].get("selector").is_none(), "selector-less");
        assert_eq!(
            v["metadata"]["labels"][names::SERVICE_NAME_KEY],
            slice.name()
        );
        assert_eq!(
            v["metadata"]["labels"][names::ENDPOINTSLICE_MANAGED_BY_KEY],
            names::ENDPOINTSLICE_MANAGED_BY
        );
        assert_ne!(
            names::ENDPOINTSLICE_MANAGED_BY,
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(v["addressType"], "IPv4");
        assert_eq!(
            v["endpoints"],
            serde_json::json!([{ "addresses": ["192.0.2.10"], "conditions": { "ready": true } }])
        );
        assert_eq!(v["ports"][0]["name"], s["spec"]["ports"][0]["name"]);
        assert_eq!(v["ports"][0]["port"], 8480);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 8480);
    }
    let v6 = Routing::Inspector {
        proxy: "[2001:db8::10]:8480".parse().expect("socket address"),
    };
    let objects = render_routed(&spec, &v6).expect("builds").objects;
    let slice = objects
        .iter()
        .find(|o| o.kind() == "EndpointSlice")
        .expect("slice");
    assert_eq!(json(slice)["addressType"], "IPv6");
    assert_eq!(json(slice)["endpoints"][0]["addresses"][0], "2001:db8::10");
}

#[test]
fn external_instances_need_no_secrets_and_are_labelled_for_teardown() {
    let spec = spec_yaml(WITH_EXTERNAL);
    let secrets = LabSecrets::generate(&spec, seed_from_text("x"));
    assert_eq!(secrets.instances.len(), 1, "secrets for Mastodon only");
    let manifests = build(
        &spec,
        &LabSecrets::generate(&spec, seed_from_text("x")),
        &fixture_tls(&spec),
        &INSPECTOR,
    )
    .expect("builds");
    let mine: Vec<_> = manifests
        .objects
        .iter()
        .filter(|o| {
            o.metadata()
                .labels
                .as_ref()
                .and_then(|l| l.get(names::INSTANCE_KEY))
                .map(String::as_str)
                == Some("mine")
        })
        .map(Manifest::describe)
        .collect();
    assert_eq!(
        mine,
        [
            "Secret/fedilab-main/mine-tls",
            "Service/fedilab-main/mine-inspector",
            "EndpointSlice/fedilab-main/mine-inspector",
            "Ingress/fedilab-main/mine",
        ]
    );
    for o in &manifests.objects {
        let labels = o.metadata().labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(names::MANAGED_BY_KEY).map(String::as_str),
            Some(names::MANAGED_BY),
            "{}",
            o.describe()
        );
    }
}

#[test]
fn external_instances_with_direct_routing_are_an_error() {
    let spec = spec_yaml(WITH_EXTERNAL);
    let err = render_routed(&spec, &Routing::Direct).expect_err("needs the inspector");
    assert!(matches!(err, BuildError::ExternalNeedsInspector(ref n) if n.as_str() == "mine"));
    assert!(
        err.to_string()
            .contains("external servers need the inspector"),
        "{err}"
    );
}

#[test]
fn a_loopback_inspector_address_is_an_error() {
    let spec = spec_yaml(WITH_EXTERNAL);
    let routing = Routing::Inspector {
        proxy: "127.0.0.1:8480".parse().expect("socket address"),
    };
    let err = render_routed(&spec, &routing).expect_err("loopback");
    assert!(matches!(err, BuildError::ProxyAddress { .. }), "{err:?}");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[test]
fn an_attached_server_gets_exactly_what_a_profile_external_instance_gets() {
    let spec = spec_yaml(WITH_EXTERNAL);
    let in_lab: Vec<Manifest> = render_routed(&spec, &INSPECTOR)
        .expect("builds")
        .objects
        .into_iter()
        .filter(|o| {
            o.metadata()
                .labels
                .as_ref()
                .and_then(|l| l.get(names::INSTANCE_KEY))
                .map(String::as_str)
                == Some("mine")
        })
        .collect();
    let mine = spec.instance("mine").expect("in the profile");
    let tls = fixture_tls(&spec);
    let Routing::Inspector { proxy } = INSPECTOR else {
        unreachable!("a constant")
    };
    let attached = fedilab_manifest::build_external(&spec, mine, &tls.leaves[&mine.name], proxy)
        .expect("builds");
    let kinds: Vec<&str> = attached.objects.iter().map(Manifest::kind).collect();
    assert_eq!(kinds, ["Secret", "Service", "EndpointSlice", "Ingress"]);
    assert_eq!(attached.objects, in_lab);

    let mastodon = spec.instance("mastodon1").expect("in the profile");
    assert!(matches!(
        fedilab_manifest::build_external(&spec, mastodon, &tls.leaves[&mastodon.name], proxy),
        Err(BuildError::ExternalNeedsInspector(_))
    ));
}

/// Issue 12: nothing reads `STREAMING_CLUSTER_NUM` since the streaming
/// server lost its cluster mode (mastodon#24655, before 4.2), and the
/// update check can only fail behind the closed egress.
#[test]
fn issue_12_env_has_no_dead_keys_and_no_update_check() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    let objects = render(&spec).objects;
    for o in objects.iter().filter(|o| o.name().ends_with("-env")) {
        let data: BTreeMap<String, String> =
            serde_json::from_value(json(o)["data"].clone()).expect("string map");
        assert!(!data.contains_key("STREAMING_CLUSTER_NUM"), "{}", o.name());
        assert_eq!(
            data.get("UPDATE_CHECK_URL").map(String::as_str),
            Some(""),
            "{}",
            o.name()
        );
    }
}

fn setup_env(objects: &[Manifest], instance: &str) -> BTreeMap<String, serde_json::Value> {
    let job = objects
        .iter()
        .find(|o| o.kind() == "Job" && o.name() == format!("{instance}-setup"))
        .expect("setup job");
    json(job)["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v)))
        .collect()
}

/// Issue 12: an instance in limited federation mode allows every other
/// lab host (external ones too), or it federates with nobody.
#[test]
fn issue_12_limited_federation_allows_the_other_lab_hosts() {
    let spec = spec_yaml(
        "instances:\n  - name: closed\n    mastodon: {limited_federation: true}\n  \
         - name: open\n  - name: mine\n    kind: external\n    url: http://127.0.0.1:3000\n",
    );
    let objects = render_routed(&spec, &INSPECTOR).expect("builds").objects;
    let closed = setup_env(&objects, "closed");
    assert_eq!(
        closed[fedilab_manifest::ALLOW_DOMAINS_ENV]["value"],
        "mine.fediverse.local,open.fediverse.local"
    );
    let open = setup_env(&objects, "open");
    assert!(!open.contains_key(fedilab_manifest::ALLOW_DOMAINS_ENV));

    let closed_spec = &spec.instances[0];
    assert_eq!(
        fedilab_manifest::allowed_domains(&spec, closed_spec),
        ["mine.fediverse.local", "open.fediverse.local"]
    );
    assert!(fedilab_manifest::allowed_domains(&spec, &spec.instances[1]).is_empty());
    let command = fedilab_manifest::allow_domains_command(&["a.fediverse.local".to_owned()]);
    assert_eq!(
        command[..6],
        [
            "env",
            "FEDILAB_ALLOW_DOMAINS=a.fediverse.local",
            "bundle",
            "exec",
            "rails",
            "runner"
        ]
    );
    assert_eq!(command[6], fedilab_manifest::ALLOW_DOMAINS_RB);

    // The setup ConfigMap carries the script, and setup.sh runs it.
    let scripts = objects
        .iter()
        .find(|o| o.name() == names::SETUP_SCRIPTS_CONFIGMAP)
        .expect("setup scripts");
    let data = json(scripts)["data"].clone();
    assert_eq!(data["allow_domains.rb"], fedilab_manifest::ALLOW_DOMAINS_RB);
    assert!(
        data["setup.sh"]
            .as_str()
            .unwrap_or_default()
            .contains("rails runner /etc/fedilab/setup/allow_domains.rb")
    );
}

/// Issue 12: the setup Job sets the admin password only when it differs
/// (no new hash, no password-change mail on every `up`).
#[test]
fn issue_12_credentials_script_keeps_a_matching_password() {
    let spec = spec_from("mastodon-pair.yaml", &Overrides::default());
    let objects = render(&spec).objects;
    let scripts = objects
        .iter()
        .find(|o| o.name() == names::SETUP_SCRIPTS_CONFIGMAP)
        .expect("setup scripts");
    let rb = json(scripts)["data"]["credentials.rb"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let guard = rb
        .find("unless user.valid_password?(password)")
        .expect("guarded");
    let save = rb.find("user.save!").expect("saves");
    assert!(guard < save, "the save is inside the guard");
}
