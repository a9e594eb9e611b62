//! `fedilab dns` end to end: the binary serving on loopback, queried with
//! `dig` (Debian dnsutils), reloaded with SIGHUP and stopped with SIGTERM;
//! the zone printout and the resolver drop-in's dry run.
//!
//! No sleeps: the tests wait for the lines the server prints, each wait
//! bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::common::{TestDir, stderr, stdout};

const LIMIT: Duration = Duration::from_secs(20);

/// A running `fedilab dns serve`, killed if the test fails.
struct Served {
    child: Option<Child>,
    lines: Receiver<String>,
    addr: SocketAddr,
    stderr: Vec<String>,
}

impl Served {
    fn start(t: &TestDir, args: &[&str]) -> Self {
        let mut child = t
            .fedilab(&[&["dns", "serve", "--listen", "127.0.0.1:0"], args].concat())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fedilab runs");
        let pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child: Some(child),
            lines,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr: Vec::new(),
        };
        let line = served.wait_for("serving ");
        // "serving fediverse.local (2 instances, serial N) on 127.0.0.1:PORT over ..."
        served.addr = line
            .split(" on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        served
    }

    /// The next stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {needle:?} on stderr ({e}); got:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id();
        let pid = libc::pid_t::try_from(pid).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// SIGTERM, then the exit status and the last stderr line.
    fn terminate(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let last = self.wait_for("stopped on SIGTERM");
        let mut child = self.child.take().expect("running");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(LIMIT)
            .expect("fedilab exits after SIGTERM")
            .expect("wait");
        (status, last)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `dig @ADDR -p PORT ARGS +short`-like: the full output.
fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let (tx, rx) = mpsc::channel();
    let mut command = std::process::Command::new("dig");
    command
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=5", "+tries=1"])
        .args(args);
    std::thread::spawn(move || {
        let _ = tx.send(command.output());
    });
    let output = match rx.recv_timeout(LIMIT).expect("dig finishes") {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("dig is not installed: apt-get install dnsutils (scripts/test.sh does)")
        }
        Err(e) => panic!("cannot run dig: {e}"),
    };
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "dig {args:?}:\n{out}");
    out
}

fn status(dig_output: &str) -> &str {
    dig_output
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("(none)")
}

fn answers(dig_output: &str) -> Vec<String> {
    dig_output
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn issue_4_dns_serve_answers_refuses_and_stops_on_sigterm() {
    let t = TestDir::new();
    let served = Served::start(&t, &["--instances", "2", "--answer", "10.0.0.1"]);
    let addr = served.addr;

    let out = dig(addr, &["mastodon2.fediverse.local"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(
        answers(&out),
        ["mastodon2.fediverse.local. 60 IN A 10.0.0.1"]
    );

    let out = dig(addr, &["example.com"]);
    assert_eq!(status(&out), "REFUSED", "{out}");

    let out = dig(addr, &["+tcp", "anything.fediverse.local", "AAAA"]);
    assert_eq!(status(&out), "NOERROR", "wildcard NODATA: {out}");
    assert!(answers(&out).is_empty(), "{out}");
    assert!(out.contains("AUTHORITY: 1"), "SOA in authority: {out}");

    let (status, last) = served.terminate();
    assert!(status.success(), "{status}");
    assert!(
        last.contains("3 answers (A 2, AAAA 1; NOERROR 2, REFUSED 1)"),
        "{last}"
    );
}

#[test]
fn dns_serve_reloads_the_profile_on_sighup() {
    let t = TestDir::new();
    let profile = t.write(
        "lab.yaml",
        "name: main\ndomain: fediverse.local\ninstances:\n  - name: mastodon1\n",
    );
    let profile = profile.to_str().expect("utf-8 path");
    let mut served = Served::start(&t, &["--profile", profile, "--answer", "10.0.0.1"]);
    let addr = served.addr;
    assert_eq!(status(&dig(addr, &["mastodon1.fediverse.test"])), "REFUSED");

    t.write(
        "lab.yaml",
        "name: main\ndomain: fediverse.test\ninstances:\n  - name: mastodon1\n",
    );
    served.signal(libc::SIGHUP);
    let line = served.wait_for("reloaded");
    assert!(line.contains("fediverse.test"), "{line}");
    let out = dig(addr, &["mastodon1.fediverse.test"]);
    assert_eq!(
        answers(&out),
        ["mastodon1.fediverse.test. 60 IN A 10.0.0.1"]
    );
    assert_eq!(
        status(&dig(addr, &["mastodon1.fediverse.local"])),
        "REFUSED"
    );

    // A broken profile keeps the zone being served.
    t.write("lab.yaml", "name: main\ndomain: NOT A DOMAIN\n");
    served.signal(libc::SIGHUP);
    served.wait_for("reload failed");
    let out = dig(addr, &["mastodon1.fediverse.test"]);
    assert_eq!(
        answers(&out),
        ["mastodon1.fediverse.test. 60 IN A 10.0.0.1"]
    );

    let (status, _) = served.terminate();
    assert!(status.success());
}

#[test]
fn dns_serve_without_answer_says_why_it_is_required() {
    let t = TestDir::new();
    let out = t.run(&["dns", "serve", "--instances", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--answer IP is required"), "{err}");
    assert!(
        err.contains("lab main has no node address saved by `fedilab up`"),
        "{err}"
    );
}

#[test]
fn dns_zone_prints_the_zone_file() {
    let t = TestDir::new();
    let out = t.run(&[
        "dns",
        "zone",
        "-n",
        "1",
        "--domain",
        "fediverse.test",
        "--answer",
        "10.0.0.1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("$ORIGIN fediverse.test.\n"), "{text}");
    assert!(
        text.contains("\nmastodon1.fediverse.test. 60 IN A 10.0.0.1\n"),
        "{text}"
    );
    assert!(
        text.contains("\n*.fediverse.test. 60 IN A 10.0.0.1\n"),
        "{text}"
    );
}

#[test]
fn install_resolver_dry_run_prints_the_drop_in_and_changes_nothing() {
    let t = TestDir::new();
    let out = t.run(&[
        "dns",
        "install-resolver",
        "--dry-run",
        "--domain",
        "fediverse.test",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "tee /etc/systemd/resolved.conf.d/fedilab-fediverse.test.conf >/dev/null <<'EOF'\n",
        "\n[Resolve]\nDNS=127.0.0.1:5300\nDomains=~fediverse.test\nEOF\n",
        "systemctl restart systemd-resolved\n",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    let out = t.run(&[
        "dns",
        "uninstall-resolver",
        "--dry-run",
        "--domain",
        "fediverse.test",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("rm -f /etc/systemd/resolved.conf.d/fedilab-fediverse.test.conf\n"),
        "{text}"
    );
}

#[test]
fn after_up_the_node_address_and_dns_port_come_from_the_lab_state() {
    let t = TestDir::new();
    // What `fedilab up` saves for lab main (a second lab took the next ports).
    t.write(
        "data/labs/main/lab.json",
        r#"{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
            "node_address":"192.0.2.10","instances":[],
            "serve":{"dns":"127.0.0.1:5310","proxy":"192.0.2.10:8490","ui":"127.0.0.1:8491"}}"#,
    );
    let out = t.run(&["dns", "zone", "--instances", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let zone = stdout(&out);
    let a_records: Vec<&str> = zone.lines().filter(|l| l.contains(" IN A ")).collect();
    assert!(!a_records.is_empty(), "{zone}");
    assert!(
        a_records.iter().all(|l| l.ends_with("192.0.2.10")),
        "{zone}"
    );

    let out = t.run(&["dns", "install-resolver", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("DNS=127.0.0.1:5310\nDomains=~fediverse.local"),
        "{}",
        stdout(&out)
    );
}
