//! `fedilab serve` end to end, the real binary started the way `up` starts
//! it (`fedilab_serve::daemon::start`, detached process: no systemd user
//! manager in tests): its DNS answers the lab names (queried with `dig`,
//! Debian dnsutils), its proxy forwards to a real upstream on loopback and
//! the UI API shows the exchange; after lab.json gains an attached server
//! and a reload (SIGHUP), the new host resolves and routes. Then stop, and
//! stale pid files that must never be signalled.
//!
//! Every wait is bounded (the daemon functions poll files with a limit).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{TestDir, stderr};
use fedilab_serve::daemon::{self, How, Launch, ServeCommand, ServeStatus, StopOutcome};
use fedilab_state::{LabDir, LabState, ServeSettings, StoredInstance, StoredKind, StoredUpstream};

const IO_LIMIT: Duration = Duration::from_secs(10);

/// A loopback HTTP server answering `upstream NAME: HOST PATH`.
fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(IO_LIMIT));
            let mut reader = BufReader::new(&stream);
            let mut head = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                head.push(std::mem::take(&mut line));
            }
            let path = head
                .first()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("?")
                .to_owned();
            let host = head
                .iter()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("host:")
                        .map(|h| h.trim().to_owned())
                })
                .unwrap_or_default();
            let body = format!("upstream {name}: {host} {path}");
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    addr
}

/// `GET path` with `Host: host` to `addr`; the whole response.
fn get(addr: SocketAddr, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, IO_LIMIT).expect("connect");
    s.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `dig +short` for an A record.
fn dig(dns: SocketAddr, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            &format!("@{}", dns.ip()),
            "-p",
            &dns.port().to_string(),
            "+short",
            "+time=2",
            "+tries=2",
            name,
            "A",
        ])
        .output()
        .expect("dig runs (Debian package dnsutils)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn instance(name: &str, kind: StoredKind, upstream: SocketAddr) -> StoredInstance {
    StoredInstance {
        name: name.parse().expect("name"),
        host: format!("{name}.fediverse.local").parse().expect("host"),
        url: format!("https://{name}.fediverse.local/"),
        kind,
        limited_federation: false,
        upstreams: vec![StoredUpstream {
            path_prefix: "/".to_owned(),
            url: format!("http://{upstream}").parse().expect("url"),
        }],
    }
}

fn lab_state(instances: Vec<StoredInstance>) -> LabState {
    let any = "127.0.0.1:0".parse().expect("addr");
    LabState {
        lab: "main".parse().expect("lab"),
        domain: "fediverse.local".parse().expect("domain"),
        namespace: "fedilab-main".to_owned(),
        node_address: Some([127, 0, 0, 1].into()),
        instances,
        serve: Some(ServeSettings {
            dns: any,
            proxy: Some(any),
            ui: Some(any),
        }),
        faults: Vec::new(),
    }
}

fn lab_dir(t: &TestDir) -> LabDir {
    LabDir::new(
        &t.dir.path().join("data"),
        &"main".parse().expect("lab name"),
    )
}

/// Lab `main` saved with one instance, mastodon1, whose upstream (also
/// returned) is a local server answering "upstream m1".
fn lab_with_mastodon1(t: &TestDir) -> (LabDir, SocketAddr) {
    let lab = lab_dir(t);
    let m1 = upstream("m1");
    lab.save_state(&lab_state(vec![instance(
        "mastodon1",
        StoredKind::Mastodon,
        m1,
    )]))
    .expect("save state");
    (lab, m1)
}

fn command(t: &TestDir) -> ServeCommand {
    ServeCommand {
        program: env!("CARGO_BIN_EXE_fedilab").into(),
        args: ["serve", "--lab", "main"].map(Into::into).to_vec(),
        env: vec![("FEDILAB_DATA_DIR".into(), t.dir.path().join("data").into())],
    }
}

/// Stops the lab's serve when a test ends, passed or failed.
struct StopOnDrop(LabDir);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = daemon::stop(&self.0);
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
}

#[test]
fn serve_answers_dns_proxies_records_and_reloads_an_attached_server() {
    let t = TestDir::new();
    let (lab, m1) = lab_with_mastodon1(&t);

    let started = daemon::start(&lab, &command(&t), Launch::Process).expect("start");
    let _guard = StopOnDrop(lab.clone());
    let ServeStatus::Running {
        pid,
        addresses,
        how,
        ..
    } = started
    else {
        panic!("not running: {started:?}");
    };
    assert_eq!(how, How::Process);
    assert!(matches!(
        daemon::status(&lab),
        ServeStatus::Running { pid: p, how: How::Process, .. } if p == pid
    ));
    let pid_file = std::fs::read_to_string(lab.path().join("serve.pid")).expect("pid file");
    assert_eq!(pid_file.trim(), pid.to_string());
    let log = std::fs::read_to_string(lab.path().join("serve.log")).expect("log file");
    assert!(log.contains("serving fediverse.local"), "{log}");

    // DNS: instance names, the wildcard, and REFUSED (empty) outside.
    assert_eq!(dig(addresses.dns, "mastodon1.fediverse.local"), "127.0.0.1");
    assert_eq!(dig(addresses.dns, "anything.fediverse.local"), "127.0.0.1");
    assert_eq!(dig(addresses.dns, "example.org"), "");

    // The proxy forwards and records.
    let proxy = addresses.proxy.expect("proxy");
    let ui = addresses.ui.expect("ui");
    let reply = get(proxy, "mastodon1.fediverse.local", "/hello");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with("upstream m1: mastodon1.fediverse.local /hello"),
        "{reply}"
    );
    let exchanges = get(ui, &ui.to_string(), "/api/exchanges?all=1");
    assert!(exchanges.contains("\"uri\":\"/hello\""), "{exchanges}");
    let servers = get(ui, &ui.to_string(), "/api/servers");
    assert!(servers.contains("\"kind\":\"instance\""), "{servers}");

    // An attached server joins: lab.json changes, then a reload (SIGHUP).
    let mine = upstream("mine");
    lab.save_state(&lab_state(vec![
        instance("mastodon1", StoredKind::Mastodon, m1),
        instance("mine", StoredKind::Attached, mine),
    ]))
    .expect("save state");
    let info = daemon::reload(&lab).expect("reload");
    assert_eq!(info.generation, 1);
    assert_eq!(info.pid, pid);
    assert_eq!(dig(addresses.dns, "mine.fediverse.local"), "127.0.0.1");
    let reply = get(proxy, "mine.fediverse.local", "/inbox");
    assert!(
        reply.ends_with("upstream mine: mine.fediverse.local /inbox"),
        "{reply}"
    );
    let servers = get(ui, &ui.to_string(), "/api/servers");
    assert!(servers.contains("\"kind\":\"attached\""), "{servers}");
    let exchanges = get(ui, &ui.to_string(), "/api/exchanges?all=1");
    assert!(
        exchanges.contains("\"uri\":\"/hello\""),
        "kept: {exchanges}"
    );
    let log = std::fs::read_to_string(lab.path().join("serve.log")).expect("log file");
    assert!(log.contains("reloaded"), "{log}");

    // A broken state: the reload fails, the old zone and routes stay.
    std::fs::write(lab.path().join("lab.json"), "{broken").expect("write");
    let err = daemon::reload(&lab).expect_err("broken state");
    assert!(err.to_string().contains("previous state"), "{err}");
    assert_eq!(dig(addresses.dns, "mine.fediverse.local"), "127.0.0.1");

    // Stop: files gone, recordings kept for the next start.
    let stopped = daemon::stop(&lab).expect("stop");
    assert_eq!(stopped, StopOutcome::Stopped { pid, killed: false });
    assert_eq!(daemon::status(&lab), ServeStatus::Stopped);
    assert!(!lab.path().join("serve.pid").exists());
    assert!(!lab.path().join("serve.json").exists());
    assert!(!alive(pid));
    let recorded = std::fs::read_to_string(lab.path().join("exchanges.jsonl")).expect("persisted");
    assert!(recorded.contains("/hello"));
    let log = std::fs::read_to_string(lab.path().join("serve.log")).expect("log file");
    assert!(log.contains("stopping on SIGTERM"), "{log}");
}

#[test]
fn stale_pid_files_are_reported_never_signalled_and_replaced() {
    let t = TestDir::new();
    let (lab, _) = lab_with_mastodon1(&t);
    let pid_path = lab.path().join("serve.pid");

    // A dead pid.
    let mut done = Command::new("true").spawn().expect("true");
    let dead = done.id();
    done.wait().expect("wait");
    std::fs::write(&pid_path, format!("{dead}\n")).expect("pid file");
    assert_eq!(daemon::status(&lab), ServeStatus::Stale { pid: dead });
    assert_eq!(
        daemon::stop(&lab).expect("stop"),
        StopOutcome::RemovedStale { pid: dead }
    );
    assert!(!pid_path.exists());

    // A live pid of an unrelated process.
    let mut sleep = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    let unrelated = sleep.id();
    std::fs::write(&pid_path, format!("{unrelated}\n")).expect("pid file");
    assert_eq!(daemon::status(&lab), ServeStatus::Stale { pid: unrelated });
    assert!(matches!(
        daemon::reload(&lab),
        Err(daemon::DaemonError::NotRunning)
    ));

    // The next start replaces the files and leaves `sleep` alone.
    let started = daemon::start(&lab, &command(&t), Launch::Process).expect("start");
    let _guard = StopOnDrop(lab.clone());
    let ServeStatus::Running { pid, .. } = started else {
        panic!("not running: {started:?}");
    };
    assert_ne!(pid, unrelated);
    assert_eq!(
        std::fs::read_to_string(&pid_path).expect("pid file").trim(),
        pid.to_string()
    );
    assert!(
        matches!(
            daemon::start(&lab, &command(&t), Launch::Process),
            Err(daemon::DaemonError::AlreadyRunning { .. })
        ),
        "a second start is refused"
    );
    assert!(daemon::stop(&lab).is_ok());
    assert!(alive(unrelated), "the unrelated process was not signalled");
    let _ = sleep.kill();
    let _ = sleep.wait();
}

#[test]
fn serve_without_a_lab_says_to_run_up_and_start_shows_the_log() {
    let t = TestDir::new();
    let out = t.run(&["serve", "--lab", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fedilab up --lab nope"),
        "{}",
        stderr(&out)
    );

    // A lab state without host-side addresses: the detached process exits
    // and start reports the end of its log.
    let lab = lab_dir(&t);
    let mut state = lab_state(vec![]);
    state.serve = None;
    lab.save_state(&state).expect("save");
    let err = daemon::start(&lab, &command(&t), Launch::Process).expect_err("fails");
    let text = err.to_string();
    assert!(text.contains("serve.log"), "{text}");
    assert!(text.contains("fedilab up --lab main"), "{text}");
    assert_eq!(daemon::status(&lab), ServeStatus::Stopped);
}

#[test]
fn serve_help_teaches_where_it_listens_and_its_log() {
    let t = TestDir::new();
    let out = t.run(&["serve", "--help"]);
    assert!(out.status.success());
    let help = crate::common::stdout(&out);
    for needle in [
        "fedilab up",
        "serve.log",
        "journalctl --user -u fedilab-serve-main",
        "SIGHUP",
    ] {
        assert!(help.contains(needle), "{needle} in:\n{help}");
    }
}
