//! Judging checks from what their steps printed: a pass, and each failure
//! with the likely cause it names.

use fedilab_profile::{InstanceCounts, InstanceKind, LabSpec, Overrides};
use fedilab_verify::{
    Check, CheckId, HostSide, Outcome, PlanInputs, StepOutput, StepStatus, VerifyPlan, evaluate,
    plan,
};

fn the_plan(n: usize) -> VerifyPlan {
    let spec = LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(InstanceCounts::Total(n)),
            ..Overrides::default()
        },
    )
    .expect("valid");
    let host = HostSide {
        node_address: Some("192.0.2.10".parse().expect("ip")),
        dns: "127.0.0.1:5300".parse().expect("addr"),
        inspector: Some("127.0.0.1:8481".parse().expect("addr")),
    };
    plan(&spec, &PlanInputs::new(Some(host), "n0nce"))
}

fn check(plan: &VerifyPlan, id: CheckId) -> &Check {
    plan.checks.iter().find(|c| c.id == id).expect("check")
}

fn done(step: &str, lines: &[&str]) -> StepOutput {
    StepOutput::from_log(
        step.to_owned(),
        StepStatus::Completed { exit_code: 0 },
        lines.join("\n"),
    )
}

const M1: &str = "mastodon1.fediverse.local";
const M2: &str = "mastodon2.fediverse.local";
const WEB2: &str = "mastodon2-web.fedilab-main.svc.cluster.local:3000";

fn egress_log(public_connects: bool, lab_connects: bool) -> StepOutput {
    let line = |probe: &str, target: &str, c: bool| {
        format!(r#"{{"probe":"{probe}","target":"{target}","connected":{c},"detail":"d"}}"#)
    };
    let lines = [
        "warning: something Ruby said".to_owned(),
        line("blocked_tcp", "1.1.1.1:443", public_connects),
        line("blocked_tcp", "9.9.9.9:443", false),
        line("blocked_dns", "8.8.8.8:53", false),
        line("allowed_tcp", WEB2, lab_connects),
    ];
    StepOutput::from_log(
        "egress@mastodon1".to_owned(),
        StepStatus::Completed { exit_code: 0 },
        lines.join("\n"),
    )
}

fn explanation(c: &fedilab_verify::CheckResult) -> String {
    assert_eq!(c.outcome, Outcome::Fail, "{c:#?}");
    c.explanation.clone().expect("a failure explains itself")
}

#[test]
fn egress_passes_and_names_network_policy_when_open() {
    let plan = the_plan(2);
    let egress = check(&plan, CheckId::Egress);
    let ok = evaluate(egress, &[egress_log(false, true)]);
    assert_eq!(ok.outcome, Outcome::Pass, "{ok:#?}");
    assert_eq!(ok.evidence.len(), 4);

    let open = evaluate(egress, &[egress_log(true, true)]);
    let text = explanation(&open);
    assert!(text.contains("TCP to 1.1.1.1:443 succeeded"), "{text}");
    assert!(text.contains("--disable-network-policy"), "{text}");

    let closed = evaluate(egress, &[egress_log(false, false)]);
    assert!(explanation(&closed).contains("egress_cidrs"));
}

#[test]
fn pod_failures_name_the_pod() {
    let plan = the_plan(2);
    let egress = check(&plan, CheckId::Egress);
    let timed_out = evaluate(
        egress,
        &[StepOutput::from_log(
            "egress@mastodon1",
            StepStatus::TimedOut { seconds: 120 },
            String::new(),
        )],
    );
    let text = explanation(&timed_out);
    assert!(
        text.contains("fedilab-main/verify-egress-mastodon1"),
        "{text}"
    );
    assert!(text.contains("Pending"), "{text}");

    let not_run = evaluate(
        egress,
        &[StepOutput::not_run("egress@mastodon1", "pods is forbidden")],
    );
    assert!(explanation(&not_run).contains("pods is forbidden"));

    let crashed = evaluate(
        egress,
        &[StepOutput::from_log(
            "egress@mastodon1",
            StepStatus::Completed { exit_code: 1 },
            "egress.rb:3: undefined method",
        )],
    );
    let text = explanation(&crashed);
    assert!(text.contains("script failed"), "{text}");
    assert!(
        crashed
            .evidence
            .iter()
            .any(|e| e.contains("undefined method"))
    );
}

fn resolve(host: &str, addresses: &[&str], expected: &str) -> String {
    let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"{{"probe":"resolve","host":"{host}","addresses":[{}],"expected":"{expected}","detail":"d"}}"#,
        list.join(",")
    )
}

fn host_dns(host: &str, address: Option<&str>) -> String {
    let list = address.map(|a| format!("\"{a}\"")).unwrap_or_default();
    format!(r#"{{"probe":"host_dns","host":"{host}","addresses":[{list}],"detail":"d"}}"#)
}

fn names_outputs(in_cluster: [&str; 2], host: [&str; 2]) -> Vec<StepOutput> {
    vec![
        done("names@mastodon1", &in_cluster),
        done("names@host", &host),
    ]
}

#[test]
fn names_pass_and_each_failure() {
    let plan = the_plan(2);
    let names = check(&plan, CheckId::Names);
    let t = "10.43.0.20";
    let good_host = [
        host_dns(M1, Some("192.0.2.10")),
        host_dns(M2, Some("192.0.2.10")),
    ];
    let good_host = [good_host[0].as_str(), good_host[1].as_str()];
    let good = [resolve(M1, &[t], t), resolve(M2, &[t], t)];
    let ok = evaluate(names, &names_outputs([&good[0], &good[1]], good_host));
    assert_eq!(ok.outcome, Outcome::Pass, "{ok:#?}");

    let nx = [resolve(M1, &[], t), resolve(M2, &[t], t)];
    let text = explanation(&evaluate(
        names,
        &names_outputs([&nx[0], &nx[1]], good_host),
    ));
    assert!(
        text.contains("mastodon1.fediverse.local does not resolve"),
        "{text}"
    );
    assert!(
        text.contains("rollout restart deployment coredns"),
        "{text}"
    );

    let wrong = [resolve(M1, &["10.43.9.9"], t), resolve(M2, &[t], t)];
    let text = explanation(&evaluate(
        names,
        &names_outputs([&wrong[0], &wrong[1]], good_host),
    ));
    assert!(
        text.contains("resolves to 10.43.9.9, not Traefik's 10.43.0.20"),
        "{text}"
    );

    let no_traefik = [resolve(M1, &[t], ""), resolve(M2, &[t], "")];
    let text = explanation(&evaluate(
        names,
        &names_outputs([&no_traefik[0], &no_traefik[1]], good_host),
    ));
    assert!(text.contains("--disable traefik"), "{text}");

    let silent = [host_dns(M1, None), host_dns(M2, None)];
    let text = explanation(&evaluate(
        names,
        &names_outputs([&good[0], &good[1]], [&silent[0], &silent[1]]),
    ));
    assert!(text.contains("fedilab serve --lab main"), "{text}");

    let stale = [
        host_dns(M1, Some("192.0.2.99")),
        host_dns(M2, Some("192.0.2.10")),
    ];
    let text = explanation(&evaluate(
        names,
        &names_outputs([&good[0], &good[1]], [&stale[0], &stale[1]]),
    ));
    assert!(text.contains("answers 192.0.2.99"), "{text}");

    let not_run = evaluate(
        names,
        &[
            done("names@mastodon1", &[&good[0], &good[1]]),
            StepOutput::not_run("names@host", "no host side recorded for lab main"),
        ],
    );
    assert!(explanation(&not_run).contains("fedilab serve"));
}

fn https(host: &str, bundle: &str, status: Option<u16>, verify_error: bool) -> String {
    let status = status.map_or("null".to_owned(), |s| s.to_string());
    format!(
        r#"{{"probe":"https","host":"{host}","bundle":"{bundle}","status":{status},"verify_error":{verify_error},"detail":"d"}}"#
    )
}

fn trust_outputs(to_m2: [String; 2]) -> Vec<StepOutput> {
    let to_m1 = [
        https(M1, "lab", Some(200), false),
        https(M1, "system", None, true),
    ];
    vec![
        done("trust@mastodon1", &[&to_m2[0], &to_m2[1]]),
        done("trust@mastodon2", &[&to_m1[0], &to_m1[1]]),
    ]
}

#[test]
fn trust_pass_and_each_failure() {
    let plan = the_plan(2);
    let trust = check(&plan, CheckId::Trust);
    let ok = evaluate(
        trust,
        &trust_outputs([
            https(M2, "lab", Some(200), false),
            https(M2, "system", None, true),
        ]),
    );
    assert_eq!(ok.outcome, Outcome::Pass, "{ok:#?}");
    assert_eq!(ok.evidence.len(), 4);

    let untrusted = evaluate(
        trust,
        &trust_outputs([
            https(M2, "lab", None, true),
            https(M2, "system", None, true),
        ]),
    );
    let text = explanation(&untrusted);
    assert!(
        text.contains("lab CA is not in the pods' trust bundle"),
        "{text}"
    );

    let public = evaluate(
        trust,
        &trust_outputs([
            https(M2, "lab", Some(200), false),
            https(M2, "system", Some(200), false),
        ]),
    );
    assert!(explanation(&public).contains("verifies with the system bundle"));

    let down = evaluate(
        trust,
        &trust_outputs([
            https(M2, "lab", None, false),
            https(M2, "system", None, false),
        ]),
    );
    assert!(explanation(&down).contains("not reachable over HTTPS"));
}

fn round_trip(allowed: &str, fail_at: Option<(&str, u16)>) -> StepOutput {
    let mut lines = vec![format!(
        r#"{{"step":"env","ok":true,"allowed_private_addresses":"{allowed}"}}"#
    )];
    let mut exit_code = 0;
    for step in ["resolve", "follow", "accepted", "post", "delivered"] {
        match fail_at {
            Some((failing, status)) if failing == step => {
                lines.push(format!(
                    r#"{{"step":"{step}","ok":false,"status":{status},"account":"labadmin@{M2}","detail":"nope","seconds":60.0}}"#
                ));
                exit_code = 1;
                break;
            }
            _ => lines.push(format!(r#"{{"step":"{step}","ok":true,"detail":"fine"}}"#)),
        }
    }
    StepOutput::from_log(
        "federation@mastodon1>mastodon2",
        StepStatus::Completed { exit_code },
        lines.join("\n"),
    )
}

fn exchange(id: u64, host: &str, activity: &str, verdict: &str) -> String {
    format!(
        r#"{{"id":{id},"host":"{host}","kind":"inbox_post","activity":"{activity}","verdict":"{verdict}","problems":[{}]}}"#,
        if verdict == "valid" {
            ""
        } else {
            r#"{"code":"bad_signature"}"#
        }
    )
}

fn inspector(follow: &[String], accept: &[String], create: &[String]) -> StepOutput {
    let line = |activity: &str, xs: &[String]| {
        format!(
            r#"{{"probe":"inspector","activity":"{activity}","exchanges":[{}]}}"#,
            xs.join(",")
        )
    };
    done(
        "federation@inspector:mastodon1>mastodon2",
        &[
            &line("Follow", follow),
            &line("Accept", accept),
            &line("Create", create),
        ],
    )
}

fn good_inspector() -> StepOutput {
    inspector(
        &[
            exchange(1, M2, "Undo(Follow)", "valid"),
            exchange(2, M2, "Follow", "valid"),
        ],
        &[exchange(3, M1, "Accept(Follow)", "valid")],
        &[exchange(4, M1, "Create(Note)", "valid")],
    )
}

#[test]
fn federation_pass_and_each_failure() {
    let plan = the_plan(2);
    let fed = check(&plan, CheckId::Federation);
    let ok = evaluate(fed, &[round_trip("10.42.0.0/15", None), good_inspector()]);
    assert_eq!(ok.outcome, Outcome::Pass, "{ok:#?}");
    assert!(
        ok.evidence
            .iter()
            .any(|e| e.contains("ALLOWED_PRIVATE_ADDRESSES=10.42.0.0/15"))
    );

    let unset = evaluate(
        fed,
        &[round_trip("", Some(("resolve", 200))), good_inspector()],
    );
    let text = explanation(&unset);
    assert!(text.contains("ALLOWED_PRIVATE_ADDRESSES unset"), "{text}");
    assert!(
        unset.evidence.iter().any(|e| e.contains("not consulted")),
        "{unset:#?}"
    );

    let token = evaluate(
        fed,
        &[
            round_trip("10.42.0.0/15", Some(("resolve", 401))),
            good_inspector(),
        ],
    );
    assert!(explanation(&token).contains("token was rejected"));

    let slow = evaluate(
        fed,
        &[
            round_trip("10.42.0.0/15", Some(("delivered", 0))),
            good_inspector(),
        ],
    );
    assert!(explanation(&slow).contains("Sidekiq"));

    let bypassed = evaluate(
        fed,
        &[
            round_trip("10.42.0.0/15", None),
            inspector(&[exchange(1, M2, "Undo(Follow)", "valid")], &[], &[]),
        ],
    );
    let text = explanation(&bypassed);
    assert!(
        text.contains("no Follow mastodon1.fediverse.local -> mastodon2.fediverse.local recorded"),
        "{text}"
    );
    assert!(text.contains("--no-inspector"), "{text}");

    let forged = evaluate(
        fed,
        &[
            round_trip("10.42.0.0/15", None),
            inspector(
                &[exchange(2, M2, "Follow", "valid")],
                &[exchange(3, M1, "Accept(Follow)", "valid")],
                &[exchange(4, M1, "Create(Note)", "invalid")],
            ),
        ],
    );
    let text = explanation(&forged);
    assert!(text.contains("#4 invalid bad_signature"), "{text}");

    let no_serve = evaluate(
        fed,
        &[
            round_trip("10.42.0.0/15", None),
            done(
                "federation@inspector:mastodon1>mastodon2",
                &[
                    r#"{"probe":"inspector","activity":"Follow","error":"connection refused"}"#,
                    r#"{"probe":"inspector","activity":"Accept","error":"connection refused"}"#,
                    r#"{"probe":"inspector","activity":"Create","error":"connection refused"}"#,
                ],
            ),
        ],
    );
    assert!(explanation(&no_serve).contains("fedilab serve --lab main"));
}

/// Issue 14: with several pairs, a pair whose round trip failed is named,
/// its inspector step is not consulted, and the other pairs are judged on
/// their own.
#[test]
fn issue_14_each_pair_is_judged_on_its_own() {
    let spec = LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(InstanceCounts::PerKind(vec![
                (InstanceKind::Mastodon, 1),
                (InstanceKind::Misskey, 1),
            ])),
            ..Overrides::default()
        },
    )
    .expect("valid");
    let host = HostSide {
        node_address: None,
        dns: "127.0.0.1:5300".parse().expect("addr"),
        inspector: Some("127.0.0.1:8481".parse().expect("addr")),
    };
    let plan = plan(&spec, &PlanInputs::new(Some(host), "n0nce"));
    let fed = check(&plan, CheckId::Federation);
    const K: &str = "misskey1.fediverse.local";
    let trip = |id: &str, env: &str, fail_accept: bool| {
        let mut lines = vec![env.to_owned()];
        for step in ["resolve", "follow", "accepted", "post", "delivered"] {
            if fail_accept && step == "accepted" {
                lines.push(
                    r#"{"step":"accepted","ok":false,"detail":"no Accept within 60.0s"}"#.into(),
                );
                break;
            }
            lines.push(format!(r#"{{"step":"{step}","ok":true,"detail":"fine"}}"#));
        }
        StepOutput::from_log(
            id,
            StepStatus::Completed {
                exit_code: i32::from(fail_accept),
            },
            lines.join("\n"),
        )
    };
    let line = |activity: &str, host: &str, label: &str| {
        format!(
            r#"{{"probe":"inspector","activity":"{activity}","exchanges":[{}]}}"#,
            exchange(7, host, label, "valid")
        )
    };
    let records = |id: &str, to_b: &str, to_a: &str| {
        done(
            id,
            &[
                &line("Follow", to_b, "Follow"),
                &line("Accept", to_a, "Accept(Follow)"),
                &line("Create", to_a, "Create(Note)"),
            ],
        )
    };
    let outputs = [
        trip(
            "federation@mastodon1>misskey1",
            r#"{"step":"env","ok":true,"from_kind":"mastodon","to_kind":"misskey","allowed_private_addresses":"10.42.0.0/15"}"#,
            false,
        ),
        // Misskey's pod reports no ALLOWED_PRIVATE_ADDRESSES: not a cause.
        trip(
            "federation@misskey1>mastodon1",
            r#"{"step":"env","ok":true,"from_kind":"misskey","to_kind":"mastodon"}"#,
            true,
        ),
        records("federation@inspector:mastodon1>misskey1", K, M1),
        records("federation@inspector:misskey1>mastodon1", M1, K),
    ];
    let result = evaluate(fed, &outputs);
    let text = explanation(&result);
    assert!(
        text.contains("misskey1 -> mastodon1: accepted: no Accept within 60.0s"),
        "{text}"
    );
    assert!(text.contains("delivery queue"), "{text}");
    assert!(!text.contains("ALLOWED_PRIVATE_ADDRESSES unset"), "{text}");
    assert!(!text.contains("mastodon1 -> misskey1"), "{text}");
    assert!(
        result.evidence.iter().any(|e| e
            == "inspector (misskey1 -> mastodon1): not consulted, the round trip did not complete"),
        "{:#?}",
        result.evidence
    );
    assert!(
        result
            .evidence
            .iter()
            .any(|e| e.starts_with(&format!("ok inspector: Create {K} -> {M1}: 1 recorded"))),
        "{:#?}",
        result.evidence
    );
}

#[test]
fn skipped_checks_do_not_fail_the_report() {
    let plan = the_plan(1);
    let fed = check(&plan, CheckId::Federation);
    let result = evaluate(fed, &[]);
    assert_eq!(result.outcome, Outcome::Skipped);
    let report = fedilab_verify::VerifyReport {
        lab: "main".into(),
        checks: vec![result],
    };
    assert!(report.passed());
}

#[test]
fn a_missing_output_fails() {
    let plan = the_plan(2);
    let result = evaluate(check(&plan, CheckId::Egress), &[]);
    assert!(explanation(&result).contains("egress@mastodon1 did not report"));
}
