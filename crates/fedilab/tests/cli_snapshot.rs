//! `fedilab reset` and `fedilab snapshot` without a cluster: argument
//! parsing and the refusals that come from the lab's state before any
//! connection (the commands themselves are tested in the orchestrator
//! crate through a loopback exec server, against a real PostgreSQL and
//! Redis).

use crate::common::{TestDir, dead_kubeconfig, stderr};

const LAB_JSON: &str = r#"{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
  "node_address":"192.0.2.10","instances":[
    {"name":"mastodon1","host":"mastodon1.fediverse.local","url":"https://mastodon1.fediverse.local/"},
    {"name":"mine","host":"mine.fediverse.local","url":"https://mine.fediverse.local/","kind":"attached",
     "upstreams":[{"path_prefix":"/","url":"http://127.0.0.1:3000/"}]}],
  "serve":null}"#;

#[test]
fn names_are_checked_by_clap() {
    let t = TestDir::new();
    for (args, expected) in [
        (
            vec!["reset", "--to", "Bad_Name"],
            "snapshot name \"Bad_Name\" is not valid",
        ),
        (vec!["snapshot", "save", "-x"], "unexpected argument"),
        (vec!["snapshot", "delete"], "<NAME>"),
        (vec!["reset", "Mastodon_1"], "INSTANCE"),
        (vec!["reset", "--quiet-timeout", "soon"], "--quiet-timeout"),
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
fn refusals_come_from_the_lab_state_before_any_cluster() {
    let t = TestDir::new();
    let kubeconfig = dead_kubeconfig(&t);
    let run = |args: &[&str]| {
        t.fedilab(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("runs")
    };
    for args in [
        vec!["reset"],
        vec!["snapshot", "list"],
        vec!["snapshot", "save", "x"],
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("has no state on this host"), "{args:?}: {err}");
    }
    t.write("data/labs/main/lab.json", LAB_JSON);
    for (args, expected) in [
        (
            vec!["reset", "mastodon9"],
            "lab main has no instance mastodon9 (it has: mastodon1, mine)",
        ),
        (
            vec!["snapshot", "save", "x", "mine"],
            "mine is an attached server",
        ),
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // A Mastodon instance gets as far as the cluster, which is not there.
    let out = run(&["reset", "mastodon1", "--to", "before"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the Kubernetes API"), "{err}");
}
