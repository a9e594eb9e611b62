//! `fedilab verify` as a user runs it, without a cluster: the plan as text
//! and JSON, and the exit codes (issue 8).

use crate::common::{TestDir, stderr, stdout};

#[test]
fn issue_8_plan_text_lists_pods_commands_and_expectations() {
    let t = TestDir::new();
    let out = t.run(&["verify", "--plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for wanted in [
        "4 checks for lab main (pods in namespace fedilab-main)",
        "pod verify-egress-mastodon1",
        "ruby -e <egress.rb>",
        "FEDILAB_BLOCKED_TCP=1.1.1.1:443,9.9.9.9:443",
        "FEDILAB_TRAEFIK_IP=<ClusterIP of kube-system/traefik>",
        "pod verify-trust-mastodon2",
        "FEDILAB_TO_TOKEN from Secret mastodon2-admin, key api-token",
        "pod verify-federation-mastodon1-to-mastodon2",
        "not recorded yet: `fedilab up` saves it",
        "expect: ",
    ] {
        assert!(text.contains(wanted), "{wanted:?} in\n{text}");
    }
}

#[test]
fn issue_8_plan_json_is_the_plan() {
    let t = TestDir::new();
    let out = t.run(&[
        "verify",
        "--plan",
        "-o",
        "json",
        "--instances",
        "3",
        "--lab",
        "exp",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plan["namespace"], "fedilab-exp");
    let ids: Vec<&str> = plan["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["egress", "names", "trust", "federation"]);
    assert_eq!(plan["checks"][2]["steps"].as_array().map(Vec::len), Some(3));
}

#[test]
fn issue_8_one_instance_plans_federation_as_skipped() {
    let t = TestDir::new();
    let out = t.run(&["verify", "--plan", "-n", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("skipped: the round trip needs two instances that fedilab runs"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn issue_8_exit_codes() {
    let t = TestDir::new();
    let out = t.run(&["verify", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = t.run(&["verify", "--lab", "Not_A_Name", "--plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // No cluster: 1, saying how to reach one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let kubeconfig = t.write(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\n\
             current-context: c\n"
        ),
    );
    let path = kubeconfig.display().to_string();
    let out = t.run(&["verify", "--kubeconfig", &path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the Kubernetes API"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn issue_8_help_explains_the_checks() {
    let t = TestDir::new();
    let out = t.run(&["verify", "--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("--plan"), "{text}");
    assert!(
        text.contains("Exit status: 0 when every check passed"),
        "{text}"
    );
}

/// Issue 14: the plan of a mixed lab lists one federation pod per ordered
/// pair of kinds, a Misskey or GoToSocial A as a client in the Mastodon
/// image. The nonce is random: filtered.
#[test]
fn issue_14_plan_of_a_mixed_lab() {
    let t = TestDir::new();
    let out = t.run(&[
        "verify",
        "--plan",
        "--instances",
        "mastodon=1,misskey=1,gotosocial=1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::with_settings!({filters => vec![(r"\b[0-9a-f]{16}\b", "[nonce]")]}, {
        insta::assert_snapshot!("verify_plan_mixed_lab", stdout(&out));
    });
}
