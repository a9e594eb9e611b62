//! The check scripts run for real with Ruby (Debian's; the lab runs them
//! with the Mastodon image's), and what they print goes through
//! `evaluate`: every script parses, and the egress probe judges a closed
//! and an open network correctly against loopback servers.

use std::net::{TcpListener, UdpSocket};
use std::process::Command;

use fedilab_profile::{InstanceCounts, LabSpec, Overrides};
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
            instances: Some(InstanceCounts::Total(2)),
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

/// What the stand-in Mastodon pair knows: A's view of the follow, B's
/// followers, and A's home timeline.
#[derive(Debug, Default)]
struct Pair {
    a_following: bool,
    b_lists_a: bool,
    /// An Undo on its way to B: it lands after this many more polls of B's
    /// followers, or after a Follow sent before that (the race).
    undo_polls_left: Option<u32>,
    home: Vec<String>,
    /// The status code of A's home timeline (206: feed being rebuilt).
    home_status: u16,
}

const A_TOKEN: &str = "token-a";
const B_TOKEN: &str = "token-b";

fn handle(pair: &std::sync::Mutex<Pair>, method: &str, path: &str, token: &str) -> (u16, String) {
    let Ok(mut p) = pair.lock() else {
        return (500, "{}".to_owned());
    };
    let path = path.split('?').next().unwrap_or_default();
    match (token, method, path) {
        (A_TOKEN, "GET", "/api/v2/search") => (
            200,
            r#"{"accounts":[{"id":"7","acct":"labadmin@b.test","url":"https://b.test/@labadmin"}]}"#
                .to_owned(),
        ),
        (A_TOKEN, "GET", "/api/v1/accounts/relationships") => (
            200,
            format!(r#"[{{"id":"7","following":{},"requested":false}}]"#, p.a_following),
        ),
        (A_TOKEN, "POST", "/api/v1/accounts/7/unfollow") => {
            p.a_following = false;
            p.undo_polls_left = Some(2);
            (200, r#"{"following":false}"#.to_owned())
        }
        (A_TOKEN, "POST", "/api/v1/accounts/7/follow") => {
            // B already has the follower: it accepts at once (Mastodon
            // fast-forwards a repeated Follow); an Undo still on its way
            // lands afterwards and removes the follower.
            p.a_following = true;
            p.b_lists_a = p.undo_polls_left.take().is_none();
            (200, r#"{"following":true}"#.to_owned())
        }
        (A_TOKEN, "GET", "/api/v1/timelines/home") => {
            let statuses: Vec<String> = p
                .home
                .iter()
                .map(|c| format!(r#"{{"content":"<p>{c}</p>"}}"#))
                .collect();
            (p.home_status, format!("[{}]", statuses.join(",")))
        }
        (B_TOKEN, "GET", "/api/v1/accounts/verify_credentials") => {
            (200, r#"{"id":"1","acct":"labadmin"}"#.to_owned())
        }
        (B_TOKEN, "GET", "/api/v1/accounts/1/followers") => {
            if let Some(left) = p.undo_polls_left {
                if left <= 1 {
                    p.undo_polls_left = None;
                    p.b_lists_a = false;
                } else {
                    p.undo_polls_left = Some(left - 1);
                }
            }
            let list = if p.b_lists_a {
                r#"[{"id":"9","acct":"labadmin@a.test"}]"#
            } else {
                "[]"
            };
            (200, list.to_owned())
        }
        (B_TOKEN, "POST", "/api/v1/statuses") => {
            if p.b_lists_a {
                p.home.push("fedilab verify n0nce".to_owned());
            }
            (200, r#"{"id":"1","uri":"https://b.test/users/labadmin/statuses/1"}"#.to_owned())
        }
        _ => (404, r#"{"error":"Record not found"}"#.to_owned()),
    }
}

/// Serves `pair` over plain HTTP on a loopback port, one request per
/// connection, from a thread that lives as long as the test process.
fn serve(pair: std::sync::Arc<std::sync::Mutex<Pair>>) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(clone);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let (mut length, mut token) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    token = line
                        .trim()
                        .rsplit(' ')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (code, json) = handle(&pair, method, path, &token);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{json}",
                json.len()
            );
        }
    });
    port
}

/// The federation pod step of a two-instance lab, pointed at a stand-in
/// pair on `port` (tokens as literals, short waits), and run.
fn run_federation(port: u16) -> (Check, Vec<StepOutput>) {
    let spec = LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(InstanceCounts::Total(2)),
            ..Overrides::default()
        },
    )
    .expect("valid");
    let mut check = plan(&spec, &PlanInputs::new(None, "n0nce"))
        .checks
        .into_iter()
        .find(|c| c.id == CheckId::Federation)
        .expect("a federation check");
    check.steps.retain(|s| matches!(s.run, StepRun::Pod(_)));
    for step in &mut check.steps {
        let StepRun::Pod(pod) = &mut step.run else {
            continue;
        };
        for var in &mut pod.env {
            let value = match var.name.as_str() {
                "FEDILAB_FROM_HOST" => "a.test",
                "FEDILAB_TO_HOST" => "b.test",
                "FEDILAB_FROM_TOKEN" => A_TOKEN,
                "FEDILAB_TO_TOKEN" => B_TOKEN,
                "FEDILAB_WAIT" => "3",
                _ => continue,
            };
            var.from = EnvSource::Value {
                value: value.to_owned(),
            };
        }
        for (name, value) in [
            ("FEDILAB_POLL", "0.05".to_owned()),
            ("FEDILAB_API_PORT", port.to_string()),
            ("FEDILAB_API_HTTPS", "false".to_owned()),
            ("FEDILAB_API_CONNECT_TO", "127.0.0.1".to_owned()),
            ("ALLOWED_PRIVATE_ADDRESSES", "10.42.0.0/15".to_owned()),
        ] {
            pod.env.push(fedilab_verify::EnvVar {
                name: name.to_owned(),
                from: EnvSource::Value { value },
            });
        }
    }
    let outputs = run(&check);
    (check, outputs)
}

/// Issue 12: a rerun unfollows and follows again; when the Undo reaches B
/// after the new Follow, B drops the follower and the post never arrives.
/// The script waits until B no longer lists A before following.
#[test]
fn issue_12_federation_rerun_waits_for_the_undo() {
    if !ruby() {
        return;
    }
    let pair = std::sync::Arc::new(std::sync::Mutex::new(Pair {
        a_following: true,
        b_lists_a: true,
        home_status: 200,
        ..Pair::default()
    }));
    let (check, outputs) = run_federation(serve(pair.clone()));
    let result = evaluate(&check, &outputs);
    assert_eq!(result.outcome, Outcome::Pass, "{result:#?}\n{outputs:#?}");
    let p = pair.lock().expect("not poisoned");
    assert!(p.b_lists_a, "B keeps the new follower");
}

/// Issue 12: the home timeline answers 206 while the feed is rebuilt; the
/// statuses it holds count.
#[test]
fn issue_12_federation_accepts_a_206_home_timeline() {
    if !ruby() {
        return;
    }
    let pair = std::sync::Arc::new(std::sync::Mutex::new(Pair {
        home_status: 206,
        ..Pair::default()
    }));
    let (check, outputs) = run_federation(serve(pair));
    let result = evaluate(&check, &outputs);
    assert_eq!(result.outcome, Outcome::Pass, "{result:#?}\n{outputs:#?}");
}
