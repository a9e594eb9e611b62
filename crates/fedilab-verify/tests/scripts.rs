//! The check scripts run for real with Ruby (Debian's; the lab runs them
//! with the Mastodon image's), and what they print goes through
//! `evaluate`: every script parses, and the egress probe judges a closed
//! and an open network correctly against loopback servers.

use std::net::{TcpListener, UdpSocket};
use std::process::Command;

use fedilab_profile::{LabSpec, Overrides};
use fedilab_verify::{
    Check, CheckId, EnvSource, Outcome, PlanInputs, PodStep, Script, StepOutput, StepRun,
    StepStatus, evaluate, plan,
};

fn ruby() -> bool {
    let found = Command::new("ruby").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: no `ruby` on this machine (scripts/install-test-deps.sh installs it)");
    }
    found
}

#[test]
fn every_script_parses() {
    if !ruby() {
        return;
    }
    for script in [
        Script::Egress,
        Script::Names,
        Script::Trust,
        Script::Federation,
    ] {
        let out = Command::new("ruby")
            .args(["-c", "-e", script.source()])
            .output()
            .expect("ruby runs");
        assert!(
            out.status.success(),
            "{}: {}",
            script.file_name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The egress check of a two-instance lab, with its targets replaced.
fn egress_check(blocked_tcp: &str, blocked_dns: &str, allowed_tcp: &str) -> Check {
    let spec = LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(2),
            ..Overrides::default()
        },
    )
    .expect("valid");
    let mut check = plan(&spec, &PlanInputs::new(None, "n0nce"))
        .checks
        .into_iter()
        .find(|c| c.id == CheckId::Egress)
        .expect("an egress check");
    for step in &mut check.steps {
        let StepRun::Pod(pod) = &mut step.run else {
            continue;
        };
        for var in &mut pod.env {
            let value = match var.name.as_str() {
                "FEDILAB_BLOCKED_TCP" => blocked_tcp,
                "FEDILAB_BLOCKED_DNS" => blocked_dns,
                "FEDILAB_ALLOWED_TCP" => allowed_tcp,
                "FEDILAB_PROBE_TIMEOUT" => "1",
                _ => continue,
            };
            var.from = EnvSource::Value {
                value: value.to_owned(),
            };
        }
    }
    check
}

/// Runs each pod step's command with its literal environment, as the pod
/// would.
fn run(check: &Check) -> Vec<StepOutput> {
    check
        .steps
        .iter()
        .filter_map(|step| match &step.run {
            StepRun::Pod(pod) => Some((step.id.clone(), pod)),
            _ => None,
        })
        .map(|(id, pod): (String, &PodStep)| {
            let command = pod.command();
            let mut cmd = Command::new(&command[0]);
            cmd.args(&command[1..]).env_clear();
            for var in &pod.env {
                if let EnvSource::Value { value } = &var.from {
                    cmd.env(&var.name, value);
                }
            }
            let out = cmd.output().expect("ruby runs");
            StepOutput::from_log(
                id,
                StepStatus::Completed {
                    exit_code: out.status.code().unwrap_or(-1),
                },
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        })
        .collect()
}

#[test]
fn egress_passes_when_closed_and_names_the_policy_when_open() {
    if !ruby() {
        return;
    }
    // "Another instance": a listener. "The public internet": a port
    // nothing listens on (refused) and a DNS server that never answers.
    let lab = TcpListener::bind("127.0.0.1:0").expect("bind");
    let lab_addr = lab.local_addr().expect("addr").to_string();
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let silent_dns = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dns_addr = silent_dns.local_addr().expect("addr").to_string();

    let closed_lab = egress_check(&closed, &dns_addr, &lab_addr);
    let result = evaluate(&closed_lab, &run(&closed_lab));
    assert_eq!(result.outcome, Outcome::Pass, "{result:#?}");

    // Egress open: the "public" address answers.
    let open_lab = egress_check(&lab_addr, &dns_addr, &lab_addr);
    let result = evaluate(&open_lab, &run(&open_lab));
    assert_eq!(result.outcome, Outcome::Fail, "{result:#?}");
    let why = result.explanation.unwrap_or_default();
    assert!(why.contains("NetworkPolicy"), "{why}");
    assert!(
        result
            .evidence
            .iter()
            .any(|e| e.starts_with("FAILED TCP to")),
        "{:?}",
        result.evidence
    );
}
