//! `fedilab backup`, `restore` and `import` without a cluster: argument
//! parsing and the refusals that come from the lab's state before any
//! connection (the cluster steps are tested in the orchestrator crate
//! against the exec test server and a local PostgreSQL).

use crate::common::{TestDir, dead_kubeconfig, stderr};

const LAB_JSON: &str = r#"{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
  "node_address":"192.0.2.10","instances":[
    {"name":"mastodon1","host":"mastodon1.fediverse.local","url":"https://mastodon1.fediverse.local/"},
    {"name":"gts","host":"gts.fediverse.local","url":"https://gts.fediverse.local/","kind":"external",
     "upstreams":[{"path_prefix":"/","url":"http://10.0.0.5:8080/"}]}],
  "serve":null}"#;

#[test]
fn arguments_are_checked_by_clap() {
    let t = TestDir::new();
    for (args, expected) in [
        (vec!["backup", "mastodon1"], "--output <FILE>"),
        (vec!["restore", "mastodon1"], "<FILE>"),
        (
            vec!["import", "mastodon1", "--dump", "x"],
            "--env-file <FILE>",
        ),
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

#[test]
fn unknown_labs_and_instances_outside_the_cluster_are_refused_before_any_cluster() {
    let t = TestDir::new();
    let kubeconfig = dead_kubeconfig(&t);
    let out = t
        .fedilab(&["backup", "mastodon1", "-o", "x.fedilab"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lab main has no state on this host"),
        "{}",
        stderr(&out)
    );

    t.write("data/labs/main/lab.json", LAB_JSON);
    for (args, expected) in [
        (
            vec!["restore", "mastodon9", "a.fedilab"],
            "lab main has no instance \"mastodon9\"; it has: mastodon1, gts",
        ),
        (
            vec!["import", "gts", "--env-file", "e", "--dump", "d"],
            "gts is a server outside the cluster (external)",
        ),
    ] {
        let out = t
            .fedilab(&args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // The lab's own instance gets as far as the cluster, which is not there.
    let out = t
        .fedilab(&["backup", "mastodon1", "-o", "x.fedilab"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the Kubernetes API"),
        "{}",
        stderr(&out)
    );
}
