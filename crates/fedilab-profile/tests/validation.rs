//! Validation of lab profiles: every error at once, each with its path.

use fedilab_profile::{
    DEFAULT_PROFILE_YAML, Domain, FaultRule, InstanceCounts, InstanceSpec, InstanceSpecKind,
    LabProfile, LabSpec, MAX_INSTANCES, Overrides, ParseOrValidationError, ValidationErrors,
};

fn resolve(yaml: &str, overrides: &Overrides) -> Result<LabSpec, ValidationErrors> {
    let profile = LabProfile::from_yaml(yaml, "test.yaml").expect("test YAML parses");
    LabSpec::resolve(&profile, overrides)
}

/// The paths of every error, in order.
fn error_paths(yaml: &str, overrides: &Overrides) -> Vec<String> {
    match resolve(yaml, overrides) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(errs) => errs.0.into_iter().map(|e| e.path).collect(),
    }
}

fn message_at(yaml: &str, overrides: &Overrides, path: &str) -> String {
    let errs = resolve(yaml, overrides).expect_err("expected errors");
    errs.0
        .into_iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no error at {path}"))
        .message
}

const NONE: Overrides = Overrides {
    lab: None,
    domain: None,
    instances: None,
};

#[test]
fn default_profile_is_two_mastodons_on_fediverse_local() {
    let spec = resolve(DEFAULT_PROFILE_YAML, &NONE).expect("default profile is valid");
    assert_eq!(spec.name.as_str(), "main");
    assert_eq!(spec.domain.as_str(), "fediverse.local");
    assert_eq!(
        spec.egress_cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.42.0.0/15"]
    );
    let hosts: Vec<_> = spec.instances.iter().map(|i| i.host.to_string()).collect();
    assert_eq!(
        hosts,
        ["mastodon1.fediverse.local", "mastodon2.fediverse.local"]
    );
    let InstanceSpecKind::Mastodon(m) = &spec.instances[0].kind else {
        panic!("a Mastodon instance")
    };
    assert_eq!(m.image, "ghcr.io/mastodon/mastodon:v4.5.18");
    assert_eq!(
        m.streaming_image,
        "ghcr.io/mastodon/mastodon-streaming:v4.5.18"
    );
    assert!(!m.authorized_fetch);
}

#[test]
fn empty_profile_gets_every_default_but_needs_instances() {
    assert_eq!(error_paths("{}", &NONE), ["instances"]);
    let spec = resolve(
        "{}",
        &Overrides {
            instances: Some(InstanceCounts::Total(3)),
            ..NONE
        },
    )
    .expect("valid");
    let names: Vec<_> = spec.instances.iter().map(|i| i.name.to_string()).collect();
    assert_eq!(names, ["mastodon1", "mastodon2", "mastodon3"]);
    assert_eq!(spec.name.as_str(), "main");
}

#[test]
fn flags_override_the_profile() {
    let overrides = Overrides {
        lab: Some("exp".into()),
        domain: Some("fediverse.test".into()),
        instances: Some(InstanceCounts::Total(1)),
    };
    let spec = resolve(DEFAULT_PROFILE_YAML, &overrides).expect("valid");
    assert_eq!(spec.name.as_str(), "exp");
    assert_eq!(spec.instances.len(), 1);
    assert_eq!(spec.instances[0].host.as_str(), "mastodon1.fediverse.test");
}

#[test]
fn instances_flag_keeps_listed_instances_and_adds_defaults() {
    let yaml = "instances:\n  - name: alpha\n    mastodon: {authorized_fetch: true}\n";
    let spec = resolve(
        yaml,
        &Overrides {
            instances: Some(InstanceCounts::Total(3)),
            ..NONE
        },
    )
    .expect("valid");
    let names: Vec<_> = spec.instances.iter().map(|i| i.name.to_string()).collect();
    assert_eq!(names, ["alpha", "mastodon2", "mastodon3"]);
    let InstanceSpecKind::Mastodon(m) = &spec.instances[0].kind else {
        panic!("a Mastodon instance")
    };
    assert!(m.authorized_fetch);
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let yaml = r#"
name: Bad_Lab
domain: localhost
network:
  egress_cidrs: [10.43.0.0/15, 0.0.0.0/0, nonsense]
mastodon:
  version: v4.2.0
instances:
  - name: mastodon1
  - name: mastodon1
  - name: 9lives
  - kind: misskey
    version: "2026"
  - name: ok
    version: latest
    image: "ghcr.io/x/y:tag"
    resources:
      web: {memory: 2Gi, memory_limit: 1Gi, cpu: lots}
"#;
    assert_eq!(
        error_paths(yaml, &NONE),
        [
            "name",
            "domain",
            "network.egress_cidrs[0]",
            "network.egress_cidrs[1]",
            "network.egress_cidrs[2]",
            "mastodon.version",
            "instances[1].name",
            "instances[2].name",
            "instances[3].version",
            "instances[4].version",
            "instances[4].image",
            "instances[4].resources.web.cpu",
            "instances[4].resources.web.memory_limit",
        ]
    );
}

#[test]
fn messages_say_what_to_do() {
    let yaml = "network:\n  egress_cidrs: [10.43.0.0/15]\ninstances: [{}]\n";
    assert!(
        message_at(yaml, &NONE, "network.egress_cidrs[0]").contains("did you mean 10.42.0.0/15")
    );
    let yaml = "network:\n  egress_cidrs: [0.0.0.0/0]\ninstances: [{}]\n";
    assert!(
        message_at(yaml, &NONE, "network.egress_cidrs[0]")
            .contains("must not reach public addresses")
    );
    let yaml = "instances: [{name: a}, {name: a}]\n";
    assert!(
        message_at(yaml, &NONE, "instances[1].name").contains("already the name of instances[0]")
    );
    let yaml = "instances: [{kind: gotosocial, version: 0.17.0}]\n";
    assert!(
        message_at(yaml, &NONE, "instances[0].version")
            .contains("older than GoToSocial 0.19.0, the oldest release fedilab supports")
    );
    let yaml = "instances: [{kind: gotosocial, resources: {redis: {cpu: 1}}}]\n";
    assert!(
        message_at(yaml, &NONE, "instances[0].resources.redis").contains("GoToSocial has no redis")
    );
}

#[test]
fn a_mixed_lab_names_each_kind_from_one_and_pins_each_release() {
    let yaml = "instances:\n  - {}\n  - kind: misskey\n  - kind: gotosocial\n    version: 0.19.2\n  - {}\n  - kind: misskey\n";
    let spec = resolve(yaml, &NONE).expect("valid");
    let names: Vec<&str> = spec.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["mastodon1", "misskey1", "gts1", "mastodon2", "misskey2"]
    );
    let InstanceSpecKind::Misskey(m) = &spec.instances[1].kind else {
        panic!("misskey1 is a Misskey");
    };
    assert_eq!(m.image, "docker.io/misskey/misskey:2026.6.0");
    assert!(m.resources.redis.is_some());
    let InstanceSpecKind::GoToSocial(g) = &spec.instances[2].kind else {
        panic!("gts1 is a GoToSocial");
    };
    assert_eq!(g.image, "docker.io/superseriousbusiness/gotosocial:0.19.2");
    assert_eq!(g.resources.redis, None);
}

#[test]
fn instances_per_kind_keep_the_profiles_own_first_then_add_defaults() {
    let yaml = "instances:\n  - name: first\n  - {name: mk, kind: misskey}\n  - name: second\n";
    let counts: InstanceCounts = "gotosocial=1, mastodon=1,misskey=2".parse().expect("valid");
    let overrides = Overrides {
        instances: Some(counts),
        ..Overrides::default()
    };
    let spec = resolve(yaml, &overrides).expect("valid");
    let names: Vec<&str> = spec.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["gts1", "first", "mk", "misskey2"]);
    assert_eq!(
        "2".parse::<InstanceCounts>(),
        Ok(InstanceCounts::Total(2)),
        "a bare number stays the Mastodon count"
    );
}

#[test]
fn instance_counts_say_what_is_wrong() {
    let err = |text: &str| text.parse::<InstanceCounts>().expect_err(text);
    assert!(err("mastodon").contains("neither a number nor KIND=N"));
    assert!(err("pleroma=1").contains("not a server kind"));
    assert!(err("external=1").contains("fedilab attach"));
    assert!(err("misskey=1,misskey=2").contains("counted twice"));
    assert!(err("gts=x").contains("not a count"));
}

#[test]
fn flag_values_are_reported_as_flags() {
    let overrides = Overrides {
        lab: Some("UPPER".into()),
        domain: Some("nodots".into()),
        instances: Some(InstanceCounts::Total(0)),
    };
    assert_eq!(
        error_paths(DEFAULT_PROFILE_YAML, &overrides),
        ["--lab", "domain", "--instances"].map(|p| if p == "domain" { "--domain" } else { p })
    );
}

#[test]
fn too_many_instances_is_an_error() {
    let msg = message_at(
        "{}",
        &Overrides {
            instances: Some(InstanceCounts::Total(MAX_INSTANCES + 1)),
            ..NONE
        },
        "--instances",
    );
    assert!(msg.contains("more than the 256"), "{msg}");
    assert!(
        resolve(
            "{}",
            &Overrides {
                instances: Some(InstanceCounts::Total(MAX_INSTANCES)),
                ..NONE
            }
        )
        .is_ok()
    );
}

#[test]
fn empty_egress_list_is_an_error() {
    assert_eq!(
        error_paths("network: {egress_cidrs: []}\ninstances: [{}]\n", &NONE),
        ["network.egress_cidrs"]
    );
}

#[test]
fn instance_names_are_unique_for_1_to_50() {
    for n in 1..=50 {
        let spec = resolve(
            "{}",
            &Overrides {
                instances: Some(InstanceCounts::Total(n)),
                ..NONE
            },
        )
        .expect("valid");
        let mut hosts: Vec<_> = spec.instances.iter().map(|i| i.host.to_string()).collect();
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), n);
    }
}

#[test]
fn from_yaml_separates_parse_and_validation_errors() {
    let parse = LabSpec::from_yaml("instances: [", "x.yaml", &NONE).expect_err("broken");
    assert!(matches!(parse, ParseOrValidationError::Parse(_)));
    let invalid = LabSpec::from_yaml("instances: []", "x.yaml", &NONE).expect_err("empty");
    assert!(matches!(invalid, ParseOrValidationError::Invalid(_)));
    let text = invalid.to_string();
    assert!(
        text.starts_with("the lab profile has 1 problem:\n  instances: "),
        "{text}"
    );
}

#[test]
fn lab_defaults_apply_and_instances_win() {
    let yaml = r#"
mastodon: {version: v4.3.9, image: registry.local/mastodon, limited_federation: true}
instances:
  - name: a
  - name: b
    version: v4.4.8
    mastodon: {limited_federation: false}
"#;
    let spec = resolve(yaml, &NONE).expect("valid");
    let InstanceSpecKind::Mastodon(a) = &spec.instances[0].kind else {
        panic!("a Mastodon instance")
    };
    let InstanceSpecKind::Mastodon(b) = &spec.instances[1].kind else {
        panic!("a Mastodon instance")
    };
    assert_eq!(a.image, "registry.local/mastodon:v4.3.9");
    assert!(a.version.needs_otp_secret());
    assert!(a.limited_federation);
    assert_eq!(b.image, "registry.local/mastodon:v4.4.8");
    assert!(!b.limited_federation);
}

#[test]
fn version_and_image_inside_the_mastodon_block_of_an_instance_are_misplaced() {
    let yaml = "instances:\n  - mastodon: {version: v4.4.8, image: x}\n";
    assert_eq!(
        error_paths(yaml, &NONE),
        [
            "instances[0].mastodon.version",
            "instances[0].mastodon.image"
        ]
    );
}

#[test]
fn external_instances_need_a_plain_http_url() {
    let yaml = r#"
instances:
  - name: mastodon1
  - kind: external
    url: http://127.0.0.1:3000
  - {kind: external, name: v6, url: "http://[::1]:8080/"}
"#;
    let spec = resolve(yaml, &NONE).expect("valid");
    let names: Vec<_> = spec.instances.iter().map(|i| i.name.to_string()).collect();
    assert_eq!(names, ["mastodon1", "external1", "v6"]);
    assert_eq!(spec.instances[1].host.as_str(), "external1.fediverse.local");
    let InstanceSpecKind::External(e) = &spec.instances[1].kind else {
        panic!("an external instance")
    };
    assert_eq!(e.url.to_string(), "http://127.0.0.1:3000");
    assert_eq!((e.url.host(), e.url.port()), ("127.0.0.1", 3000));
    let InstanceSpecKind::External(e) = &spec.instances[2].kind else {
        panic!("an external instance")
    };
    assert_eq!(e.url.to_string(), "http://[::1]:8080");
}

#[test]
fn external_instances_reject_what_only_mastodon_has_all_at_once() {
    let yaml = r#"
instances:
  - kind: external
  - kind: external
    url: https://127.0.0.1:3000
  - kind: external
    url: http://127.0.0.1:3000
    version: v4.4.8
    image: ghcr.io/x/y
    mastodon: {authorized_fetch: true}
    resources: {web: {cpu: 1}}
  - name: m
    url: http://127.0.0.1:3000
  - {kind: external, url: "http://127.0.0.1"}
  - {kind: external, url: "http://127.0.0.1:3000/path"}
"#;
    assert_eq!(
        error_paths(yaml, &NONE),
        [
            "instances[0].url",
            "instances[1].url",
            "instances[2].version",
            "instances[2].image",
            "instances[2].mastodon",
            "instances[2].resources",
            "instances[3].url",
            "instances[4].url",
            "instances[5].url",
        ]
    );
    let at = |path| message_at(yaml, &NONE, path);
    assert!(at("instances[0].url").contains("url: http://127.0.0.1:3000"));
    assert!(at("instances[1].url").contains("Traefik terminates TLS"));
    assert!(at("instances[2].image").contains("remove the field"));
    assert!(at("instances[3].url").contains("only an instance of kind external has a url"));
    assert!(at("instances[4].url").contains("no port"));
    assert!(at("instances[5].url").contains("path"));
}

#[test]
fn instance_spec_external_validates_like_a_profile() {
    let domain: Domain = "fediverse.test".parse().expect("valid");
    let spec = InstanceSpec::external("mine", "http://127.0.0.1:3000", &domain).expect("valid");
    assert_eq!(spec.host.as_str(), "mine.fediverse.test");
    let InstanceSpecKind::External(e) = &spec.kind else {
        panic!("an external instance")
    };
    assert_eq!(e.url.port(), 3000);
    let errs =
        InstanceSpec::external("Mine", "https://127.0.0.1:3000", &domain).expect_err("both wrong");
    let paths: Vec<_> = errs.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["name", "url"]);
    assert!(errs.0[1].message.contains("Traefik terminates TLS"));
}

const FAULTS: &str = r#"
instances: [{}, {}]
inspector:
  faults:
    - match: { host: mastodon2, activity: Accept(Follow), count: 3 }
      action: { status: 503, retry_after: 30 }
    - action: { delay_ms: 500 }
    - match: { from: mastodon1, probability: 0.5, seed: 7 }
      action: { corrupt: signature }
"#;

#[test]
fn inspector_fault_rules_read_as_the_apis_json() {
    let spec = resolve(FAULTS, &NONE).expect("valid rules");
    let api: Vec<FaultRule> = [
        r#"{"match": {"host": "mastodon2", "activity": "Accept(Follow)", "count": 3}, "action": {"status": 503, "retry_after": 30}}"#,
        r#"{"action": {"delay_ms": 500}}"#,
        r#"{"match": {"from": "mastodon1", "probability": 0.5, "seed": 7}, "action": {"corrupt": "signature"}}"#,
    ]
    .iter()
    .map(|json| json.parse().expect("the API's form"))
    .collect();
    assert_eq!(spec.inspector.faults, api);
    assert_eq!(
        resolve(DEFAULT_PROFILE_YAML, &NONE)
            .expect("default")
            .inspector
            .faults,
        [],
        "no section, no rules"
    );
    let empty = resolve("instances: [{}]\ninspector: {}\n", &NONE).expect("empty section");
    assert!(empty.inspector.faults.is_empty());
}

#[test]
fn fault_rules_naming_no_instance_are_found() {
    let spec = resolve(FAULTS, &NONE).expect("valid rules");
    assert_eq!(spec.fault_rules_naming_no_instance(), []);
    let yaml = r#"
instances: [{}, {}]
inspector:
  faults:
    - match: { host: mastodon3 }
      action: { status: 503 }
    - match: { host: mastodon2.fediverse.local, from: mastodon11 }
      action: { status: 503 }
"#;
    let spec = resolve(yaml, &NONE).expect("valid rules");
    let unknown = spec.fault_rules_naming_no_instance();
    let found: Vec<(usize, &str, &str)> =
        unknown.iter().map(|u| (u.index, u.field, u.name)).collect();
    assert_eq!(found, [(0, "host", "mastodon3"), (1, "from", "mastodon11")]);
    assert_eq!(
        unknown[0].to_string(),
        "inspector.faults[0].match.host: \"mastodon3\" is no instance of this lab, so the rule never fires"
    );
}

#[test]
fn bad_fault_rules_are_reported_at_their_field_with_the_rule() {
    let yaml = r#"
name: Bad
instances: [{}]
inspector:
  faults:
    - action: { status: 503 }
    - action: { delay_ms: 5, reset: true }
    - match: { probability: 2 }
      action: { duplicate: true }
    - action: { status: 99 }
    - action: { reset: false }
    - action: { delay_ms: 5, body: busy }
"#;
    assert_eq!(
        error_paths(yaml, &NONE),
        [
            "name",
            "inspector.faults[1].action",
            "inspector.faults[2].match.probability",
            "inspector.faults[3].action.status",
            "inspector.faults[4].action.reset",
            "inspector.faults[5].action",
        ],
        "every problem at once, the good rule 0 not among them"
    );
    assert_eq!(
        message_at(yaml, &NONE, "inspector.faults[1].action"),
        r#"a rule needs exactly one action of delay_ms, status, reset, corrupt, duplicate (found 2), in {"match":{},"action":{"delay_ms":5,"reset":true}}"#
    );
    assert_eq!(
        message_at(yaml, &NONE, "inspector.faults[3].action.status"),
        r#"status 99 is not an HTTP status code, in {"match":{},"action":{"status":99}}"#
    );
    let text = LabSpec::from_yaml(yaml, "bad.yaml", &NONE)
        .expect_err("invalid")
        .to_string();
    assert!(
        text.contains(
            "\n  inspector.faults[2].match.probability: probability 2 is not between 0 and 1, in "
        ),
        "{text}"
    );
}

#[test]
fn fault_rules_of_the_wrong_shape_fail_to_parse_naming_the_field() {
    for (yaml, want) in [
        (
            "inspector:\n  faults:\n    - action: { delay: 5 }\n",
            "unknown field `delay`",
        ),
        (
            "inspector:\n  faults:\n    - match: { hots: mastodon1 }\n      action: { reset: true }\n",
            "unknown field `hots`",
        ),
        (
            "inspector:\n  faults:\n    - match: {}\n",
            "missing field `action`",
        ),
        (
            "inspector:\n  faults:\n    - action: { corrupt: headers }\n",
            "headers",
        ),
        ("inspector:\n  fault: []\n", "unknown field `fault`"),
    ] {
        let err = LabProfile::from_yaml(yaml, "p.yaml").expect_err(yaml);
        let text = err.to_string();
        assert!(text.starts_with("p.yaml: "), "{text}");
        assert!(text.contains(want), "{yaml}: {text}");
    }
}
