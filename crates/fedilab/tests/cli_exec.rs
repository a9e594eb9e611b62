//! `fedilab exec` and `fedilab tootctl` without a cluster: argument
//! parsing, and the refusals that come from the lab's state before any
//! connection (the exec protocol itself is tested in the orchestrator
//! crate against a loopback server).

use crate::common::{TestDir, dead_kubeconfig, stderr, stdout};

/// A lab `main` with a Mastodon instance, an external and an attached
/// server.
const LAB_JSON: &str = r#"{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
  "node_address":"192.0.2.10","instances":[
    {"name":"mastodon1","host":"mastodon1.fediverse.local","url":"https://mastodon1.fediverse.local/"},
    {"name":"gts","host":"gts.fediverse.local","url":"https://gts.fediverse.local/","kind":"external",
     "upstreams":[{"path_prefix":"/","url":"http://10.0.0.5:8080/"}]},
    {"name":"mine","host":"mine.fediverse.local","url":"https://mine.fediverse.local/","kind":"attached",
     "upstreams":[{"path_prefix":"/","url":"http://127.0.0.1:3000/"}]}],
  "serve":null}"#;

#[test]
fn arguments_are_checked_by_clap() {
    let t = TestDir::new();
    for (args, expected) in [
        (vec!["exec"], "<INSTANCE>"),
        (
            vec!["exec", "mastodon1", "--component", "setup"],
            "possible values",
        ),
        // A command needs `--`, so fedilab's flags never reach it.
        (vec!["exec", "mastodon1", "ls"], "unexpected argument"),
        (vec!["tootctl", "mastodon1"], "<ARGS>"),
        (vec!["exec", "mastodon1", "--lab", "Not_A_Name"], "--lab"),
    ] {
        let out = t.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = t.run(&["exec", "--help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("fedilab exec mastodon2 --component postgres -- psql"));
}

#[test]
fn a_lab_without_state_here_is_refused_before_any_cluster() {
    let t = TestDir::new();
    let kubeconfig = dead_kubeconfig(&t);
    for args in [
        vec!["exec", "mastodon1", "--", "ls"],
        // tootctl's own flags go to tootctl, not to clap.
        vec!["tootctl", "mastodon1", "accounts", "--help"],
        vec!["exec", "mastodon1", "--lab", "exp"],
    ] {
        let out = t
            .fedilab(&args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("runs");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("has no state on this host"), "{args:?}: {err}");
        assert!(err.contains("run `fedilab up --lab "), "{args:?}: {err}");
        assert!(!stdout(&out).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn instances_outside_the_cluster_and_unknown_ones_are_refused() {
    let t = TestDir::new();
    let kubeconfig = dead_kubeconfig(&t);
    t.write("data/labs/main/lab.json", LAB_JSON);
    for (args, expected) in [
        (
            vec!["exec", "mastodon9", "--", "ls"],
            "lab main has no instance \"mastodon9\"; it has: mastodon1, gts, mine",
        ),
        (
            vec!["tootctl", "gts", "accounts", "list"],
            "gts is an external server of lab main",
        ),
        (
            vec!["exec", "mine"],
            "mine is a server on this host attached to lab main",
        ),
        (vec!["exec", "Mastodon_1"], "no instance"),
    ] {
        let out = t
            .fedilab(&args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("runs");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // A Mastodon instance gets as far as the cluster, which is not there.
    let out = t
        .fedilab(&["tootctl", "mastodon1", "accounts", "list"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the Kubernetes API"), "{err}");
}
