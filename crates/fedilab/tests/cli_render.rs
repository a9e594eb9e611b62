//! `fedilab render` end to end: the binary, real profiles, the real lab CA.

use crate::common::{TestDir, repo_root, stderr, stdout};

fn docs(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(yaml).expect("render output is YAML")
}

fn hosts(docs: &[serde_json::Value]) -> Vec<String> {
    docs.iter()
        .filter(|d| d["kind"] == "Ingress")
        .filter_map(|d| d["spec"]["rules"][0]["host"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn render_instances_2_prints_the_default_lab() {
    let t = TestDir::new();
    let out = t.run(&["render", "--instances", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs = docs(&stdout(&out));
    assert_eq!(
        hosts(&docs),
        ["mastodon1.fediverse.local", "mastodon2.fediverse.local"]
    );
    assert_eq!(docs[0]["kind"], "Namespace");
    assert_eq!(docs[0]["metadata"]["name"], "fedilab-main");
}

#[test]
fn render_trio_profile_gives_three_instances() {
    let t = TestDir::new();
    let out = t.run(&["render", "--profile", "lab-profiles/mastodon-trio.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hosts(&docs(&stdout(&out))).len(), 3);
}

#[test]
fn flags_override_the_profile() {
    let t = TestDir::new();
    let out = t.run(&[
        "render",
        "-p",
        "lab-profiles/mastodon-trio.yaml",
        "-n",
        "1",
        "--domain",
        "fediverse.test",
        "--lab",
        "exp",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs = docs(&stdout(&out));
    assert_eq!(hosts(&docs), ["mastodon1.fediverse.test"]);
    assert_eq!(docs[0]["metadata"]["name"], "fedilab-exp");
}

#[test]
fn broken_profile_prints_every_error_with_its_path_and_exits_2() {
    let t = TestDir::new();
    let profile = t.write(
        "broken.yaml",
        "name: Bad_Lab\nnetwork:\n  egress_cidrs: [10.43.0.0/15]\ninstances:\n  - name: mastodon1\n  - name: mastodon1\n  - kind: misskey\n    version: \"2024.9.0\"\n",
    );
    let out = t.run(&["render", "--profile", profile.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing rendered");
    let err = stderr(&out);
    for expected in [
        "the lab profile has 4 problems:",
        "  name: \"Bad_Lab\" is not a valid name",
        "  network.egress_cidrs[0]: \"10.43.0.0/15\" has host bits set; did you mean 10.42.0.0/15?",
        "  instances[1].name: \"mastodon1\" is already the name of instances[0]",
        "  instances[2].version: \"2024.9.0\" is older than Misskey 2024.10.0",
        "nothing was rendered or applied",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn inspector_fault_rules_are_checked_by_render_and_change_no_object() {
    let t = TestDir::new();
    let plain = t.write("plain.yaml", "instances: [{}, {}]\n");
    let faulty = t.write(
        "faulty.yaml",
        "instances: [{}, {}]\ninspector:\n  faults:\n    - match: { host: mastodon2, activity: Accept(Follow) }\n      action: { status: 503 }\n",
    );
    let render = |p: &std::path::Path| {
        t.run(&[
            "render",
            "--seed",
            "7",
            "--profile",
            p.to_str().expect("utf-8 path"),
        ])
    };
    let (a, b) = (render(&plain), render(&faulty));
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(!stderr(&b).contains("warning"), "{}", stderr(&b));
    assert_eq!(
        stdout(&a),
        stdout(&b),
        "rules live in the inspector, not in the cluster"
    );

    // A rule for a host the lab does not have renders, with a warning.
    let typo_host = t.write(
        "typo-host.yaml",
        "instances: [{}, {}]\ninspector:\n  faults:\n    - match: { host: mastodon3 }\n      action: { status: 503 }\n",
    );
    let out = render(&typo_host);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: inspector.faults[0].match.host: \"mastodon3\" is no instance of this lab"
        ),
        "{}",
        stderr(&out)
    );

    let bad = t.write(
        "bad.yaml",
        "instances: [{}]\ninspector:\n  faults:\n    - action: { status: 503 }\n    - action: { delay_ms: 5, reset: true }\n",
    );
    let out = render(&bad);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing rendered");
    let err = stderr(&out);
    assert!(
        err.contains(
            "  inspector.faults[1].action: a rule needs exactly one action of delay_ms, status, \
             reset, corrupt, duplicate (found 2), in {\"match\":{},\"action\":{\"delay_ms\":5,\"reset\":true}}"
        ),
        "{err}"
    );
    let typo = t.write(
        "typo.yaml",
        "instances: [{}]\ninspector:\n  faults:\n    - action: { delay: 5 }\n",
    );
    let out = render(&typo);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown field `delay`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_field_and_missing_file_exit_2() {
    let t = TestDir::new();
    let typo = t.write("typo.yaml", "instances:\n  - nmae: x\n");
    let out = t.run(&["render", "--profile", typo.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nmae"), "{}", stderr(&out));
    let out = t.run(&["render", "--profile", "/nonexistent/lab.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read the profile /nonexistent/lab.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn json_output_is_a_list_of_the_same_objects() {
    let t = TestDir::new();
    let yaml = t.run(&["render", "--seed", "s"]);
    let json = t.run(&["render", "--seed", "s", "-o", "json"]);
    assert!(yaml.status.success() && json.status.success());
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(
        list["items"].as_array().cloned().unwrap_or_default(),
        docs(&stdout(&yaml))
    );
}

#[test]
fn seeded_renders_are_identical_and_unseeded_ones_are_not() {
    let t = TestDir::new();
    let a = t.run(&["render", "--seed", "x"]);
    let b = t.run(&["render", "--seed", "x"]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(
        stdout(&a),
        stdout(&b),
        "same seed, same CA dir: byte-identical"
    );
    let c = t.run(&["render"]);
    let d = t.run(&["render"]);
    assert_ne!(
        stdout(&c),
        stdout(&d),
        "fresh secrets every time without --seed"
    );
}

/// Replaces what differs per machine (certificates and keys from the local
/// CA) with a placeholder, so `manifests/` can be compared byte for byte.
fn mask_certificates(docs: &mut [serde_json::Value]) {
    for d in docs.iter_mut() {
        if d["kind"] == "Secret" && d["type"] == "kubernetes.io/tls" {
            d["data"]["tls.crt"] = "<leaf certificate from the local lab CA>".into();
            d["data"]["tls.key"] = "<leaf private key, never printed elsewhere>".into();
        }
        if d["kind"] == "ConfigMap" && d["data"].get("ca.pem").is_some() {
            d["data"]["ca.pem"] = "<lab CA certificate from the local lab CA>".into();
        }
    }
}

/// The inspector address the golden renders of profiles with an external
/// instance use (TEST-NET-1: documentation only, never a real host).
const GOLDEN_INSPECTOR_AT: &str = "192.0.2.10:8480";

/// The extra `render` flags of a shipped profile's golden render: the
/// inspector's address when the profile has an external instance (only the
/// inspector reaches it), none otherwise.
fn golden_flags(profile: &std::path::Path) -> Vec<&'static str> {
    let text = std::fs::read_to_string(profile).expect("profile readable");
    let parsed = fedilab_profile::LabProfile::from_yaml(&text, "golden").expect("profile parses");
    let external = parsed
        .instances
        .unwrap_or_default()
        .iter()
        .any(|i| i.kind == Some(fedilab_profile::InstanceKind::External));
    if external {
        vec!["--inspector-at", GOLDEN_INSPECTOR_AT]
    } else {
        Vec::new()
    }
}

/// `manifests/<profile>.yaml` is the render of each shipped profile with
/// `--seed test` (and, for a profile with an external instance,
/// `--inspector-at 192.0.2.10:8480`), certificates masked. Regenerate with
/// `FEDILAB_BLESS=1 cargo test -p fedilab --test cli_render`.
#[test]
fn shipped_manifests_match_the_profiles() {
    let t = TestDir::new();
    let root = repo_root();
    let mut profiles: Vec<_> = std::fs::read_dir(root.join("lab-profiles"))
        .expect("lab-profiles")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    profiles.sort();
    assert!(profiles.len() >= 3);
    for profile in profiles {
        let flags = golden_flags(&profile);
        let mut args = vec![
            "render",
            "--seed",
            "test",
            "--profile",
            profile.to_str().expect("utf-8 path"),
        ];
        args.extend(&flags);
        let out = t.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut docs = docs(&stdout(&out));
        mask_certificates(&mut docs);
        let name = profile
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let extra: String = flags.iter().map(|f| format!(" {f}")).collect();
        let header = format!(
            "# Rendered by `fedilab render --profile lab-profiles/{name} --seed test{extra}`.\n\
             # Certificates are masked (they come from each machine's lab CA), and --seed\n\
             # makes the secrets reproducible: never use these secrets for a real lab.\n\
             # Kept in sync by crates/fedilab/tests/cli_render.rs.\n"
        );
        let mut text = header;
        text.push_str(&serde_saphyr::to_string_multiple(&docs).expect("serialize"));
        let golden = root.join("manifests").join(&name);
        if std::env::var_os("FEDILAB_BLESS").is_some() {
            std::fs::write(&golden, &text).expect("write golden");
        }
        let checked_in = std::fs::read_to_string(&golden).unwrap_or_default();
        assert!(
            checked_in == text,
            "manifests/{name} is out of date; run FEDILAB_BLESS=1 cargo test -p fedilab --test cli_render"
        );
    }
}

#[test]
fn external_instance_without_inspector_at_exits_2_and_says_what_to_pass() {
    let t = TestDir::new();
    let out = t.run(&["render", "-p", "lab-profiles/mastodon-and-host.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing rendered");
    let err = stderr(&out);
    assert!(err.contains("external servers need the inspector"), "{err}");
    assert!(err.contains("--inspector-at"), "{err}");
}

#[test]
fn inspector_at_routes_every_instance_through_the_inspector() {
    let t = TestDir::new();
    let out = t.run(&[
        "render",
        "-p",
        "lab-profiles/mastodon-and-host.yaml",
        "--inspector-at",
        GOLDEN_INSPECTOR_AT,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs = docs(&stdout(&out));
    assert_eq!(
        hosts(&docs),
        ["mastodon1.fediverse.local", "mine.fediverse.local"]
    );
    let slices: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == "EndpointSlice")
        .map(|d| {
            d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(slices, ["mastodon1-inspector", "mine-inspector"]);
    for d in docs.iter().filter(|d| d["kind"] == "Ingress") {
        let paths = &d["spec"]["rules"][0]["http"]["paths"];
        assert_eq!(paths.as_array().map(Vec::len), Some(1));
        assert!(
            paths[0]["backend"]["service"]["name"]
                .as_str()
                .is_some_and(|s| s.ends_with("-inspector"))
        );
    }
}

#[test]
fn a_loopback_inspector_address_exits_2() {
    let t = TestDir::new();
    let out = t.run(&["render", "--inspector-at", "127.0.0.1:8480"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--inspector-at"), "{err}");
    assert!(err.contains("loopback"), "{err}");
}
