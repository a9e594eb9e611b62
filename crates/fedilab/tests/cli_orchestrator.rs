//! `fedilab up/status/creds/down/bootstrap` as a user runs them, without a
//! cluster: the dry-run bootstrap, and what each command says when the
//! cluster is not there. (The flows against an API server are the
//! orchestrator crate's tests.)

use crate::common::{TestDir, dead_kubeconfig, stderr, stdout};

#[test]
fn bootstrap_dry_run_prints_the_steps_and_does_nothing() {
    let t = TestDir::new();
    let out = t.run(&["bootstrap", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // k3s may or may not be installed where the test runs.
    assert!(
        text.contains("install k3s: curl -sfL https://get.k3s.io | sh -")
            || text.contains("already installed"),
        "{text}"
    );
    // Issue 12: the cluster-admin kubeconfig stays root's; the user gets a
    // private copy, also on an installed k3s.
    assert!(!text.contains("write-kubeconfig-mode"), "{text}");
    assert!(
        text.contains("give you a copy of /etc/rancher/k3s/k3s.yaml (mode 0600, yours"),
        "{text}"
    );
    assert!(!text.contains("disable-network-policy"));
    assert!(text.contains("next: fedilab up --instances 2"), "{text}");
    assert!(text.contains("dry run: nothing was done"), "{text}");
}

#[test]
fn commands_say_how_to_reach_a_cluster_that_is_not_there() {
    let t = TestDir::new();
    let kubeconfig = dead_kubeconfig(&t);
    for args in [
        vec!["status"],
        vec!["down", "--lab", "main"],
        vec!["creds"],
        vec!["up", "--instances", "1", "--domain", "fediverse.test"],
    ] {
        let mut full = args.clone();
        full.extend(["--kubeconfig", kubeconfig.as_str()]);
        let out = t.run(&full);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("cannot reach the Kubernetes API"),
            "{args:?}: {err}"
        );
        assert!(err.contains("fedilab bootstrap"), "{args:?}: {err}");
    }
}

#[test]
fn up_without_the_inspector_says_the_profile_rules_will_not_apply() {
    let t = TestDir::new();
    let kubeconfig = dead_kubeconfig(&t);
    let profile = t.dir.path().join("faults.yaml");
    std::fs::write(
        &profile,
        "name: main\ndomain: fediverse.test\ninstances:\n  - name: mastodon1\n\
         inspector:\n  faults:\n    - match: { host: mastodon1 }\n      action: { status: 503 }\n",
    )
    .expect("profile");
    let profile = profile.to_str().expect("utf-8 path");
    let base = [
        "up",
        "--profile",
        profile,
        "--kubeconfig",
        kubeconfig.as_str(),
    ];
    let warned = "warning: the profile's 1 fault rule will not apply: --no-inspector";
    let out = t.run(&[&base[..], &["--no-inspector"]].concat());
    assert!(stderr(&out).contains(warned), "{}", stderr(&out));
    // Then up goes on (here to the missing cluster).
    assert!(stderr(&out).contains("cannot reach the Kubernetes API"));
    let out = t.run(&base);
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));
}

#[test]
fn no_kubeconfig_anywhere_is_explained() {
    let t = TestDir::new();
    let out = t
        .fedilab(&["status"])
        .env("HOME", t.dir.path())
        .env_remove("KUBECONFIG")
        .output()
        .expect("runs");
    let err = stderr(&out);
    if std::path::Path::new("/etc/rancher/k3s/k3s.yaml").exists() {
        return; // this host has k3s; the fallback is taken
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no kubeconfig found"), "{err}");
    assert!(err.contains("--kubeconfig FILE"), "{err}");
}

#[test]
fn bad_lab_name_is_a_usage_error() {
    let t = TestDir::new();
    let out = t.run(&["down", "--lab", "Not_A_Name"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--lab"), "{}", stderr(&out));
}

/// The `lab.json` `up` saves for a one-instance lab `main`, with the
/// inspector's proxy and UI as given (`null` without the inspector).
fn saved_lab(proxy: &str, ui: &str) -> String {
    format!(
        r#"{{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
            "node_address":"192.0.2.10","instances":[{{"name":"mastodon1",
            "host":"mastodon1.fediverse.local","url":"https://mastodon1.fediverse.local/"}}],
            "serve":{{"dns":"127.0.0.1:5300","proxy":{proxy},"ui":{ui}}}}}"#
    )
}

#[test]
fn attach_and_detach_refuse_with_what_to_do_before_touching_a_cluster() {
    let t = TestDir::new();
    let out = t.run(&["attach", "mine", "--url", "http://127.0.0.1:3000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `fedilab up --lab main` first"),
        "{}",
        stderr(&out)
    );

    // A lab that `up` put on the cluster without the inspector.
    t.write("data/labs/main/lab.json", &saved_lab("null", "null"));
    let out = t.run(&["attach", "mine", "--url", "http://127.0.0.1:3000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("without the inspector"),
        "{}",
        stderr(&out)
    );

    // With the inspector: the name and URL are checked, a profile
    // instance can be neither attached over nor detached.
    t.write(
        "data/labs/main/lab.json",
        &saved_lab(r#""192.0.2.10:8480""#, r#""127.0.0.1:8481""#),
    );
    for (args, expected) in [
        (
            vec!["attach", "mine", "--url", "https://127.0.0.1:3000"],
            "url",
        ),
        (
            vec!["attach", "Mine!", "--url", "http://127.0.0.1:3000"],
            "name",
        ),
        (
            vec!["attach", "mastodon1", "--url", "http://127.0.0.1:3000"],
            "already an instance of lab main",
        ),
        (vec!["detach", "mastodon1"], "not an attached server"),
    ] {
        let out = t.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}
