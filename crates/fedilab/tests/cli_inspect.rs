//! `fedilab inspect` end to end: the binary proxies, records, serves its UI
//! and API, and rejects bad flags with exit code 2. Blocking I/O with
//! socket timeouts (no async runtime needed here).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::{TestDir, stderr};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Kills the child when the test ends, even on panic.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// A tiny upstream that answers one request with 202 and its own marker.
fn one_shot_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_read_timeout(Some(TIMEOUT));
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"HTTP/1.1 202 Accepted\r\nx-upstream: yes\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    addr
}

#[test]
fn inspect_proxies_records_and_serves_the_ui() {
    let t = TestDir::new();
    let upstream = one_shot_upstream();
    let route = format!("mastodon2.fediverse.local=http://{upstream}");
    let mut child = t
        .fedilab(&[
            "inspect",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "127.0.0.1:0",
            "--route",
            &route,
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start fedilab inspect");
    let err = child.stderr.take().expect("stderr");
    let child = Running(child);
    // "fedilab inspect: proxy on ADDR for HOSTS; UI on http://ADDR/ ..."
    let mut line = String::new();
    BufReader::new(err).read_line(&mut line).expect("banner");
    let proxy: SocketAddr = line
        .split("proxy on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no proxy address in {line:?}"));
    let ui: SocketAddr = line
        .split("UI on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no UI address in {line:?}"));

    let reply = http(
        proxy,
        "POST /users/bob/inbox HTTP/1.1\r\nHost: mastodon2.fediverse.local\r\ncontent-type: application/activity+json\r\ncontent-length: 17\r\nconnection: close\r\n\r\n{\"type\":\"Follow\"}",
    );
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    assert!(reply.contains("x-upstream: yes"), "{reply}");

    let unknown = http(
        proxy,
        "GET / HTTP/1.1\r\nHost: nowhere.test\r\nconnection: close\r\n\r\n",
    );
    assert!(unknown.starts_with("HTTP/1.1 502"), "{unknown}");
    assert!(unknown.contains("mastodon2.fediverse.local"), "{unknown}");

    // The UI answers only requests for its own address (DNS rebinding).
    let page = http(
        ui,
        &format!("GET / HTTP/1.1\r\nHost: {ui}\r\nconnection: close\r\n\r\n"),
    );
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("fedilab inspector"),
        "{}",
        &page[..200.min(page.len())]
    );
    let list = http(
        ui,
        &format!(
            "GET /api/exchanges?activity=Follow HTTP/1.1\r\nHost: {ui}\r\nconnection: close\r\n\r\n"
        ),
    );
    assert!(list.contains("\"activity\":\"Follow\""), "{list}");
    drop(child);
}

#[test]
fn inspect_rejects_a_bad_route_with_usage_exit_code() {
    let t = TestDir::new();
    let out = t.run(&[
        "inspect",
        "--route",
        "mastodon1.fediverse.local=https://10.0.0.1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("must be http://"), "{}", stderr(&out));
    let out = t.run(&[
        "inspect",
        "--route",
        "a.test=http://127.0.0.1:1",
        "--max-bytes",
        "1KiB",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("at least four times"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_starts_with_fault_rules_and_fault_changes_them() {
    let t = TestDir::new();
    let upstream = one_shot_upstream();
    let route = format!("mastodon2.fediverse.local=http://{upstream}");
    let mut child = t
        .fedilab(&[
            "inspect",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "127.0.0.1:0",
            "--route",
            &route,
            "--fault",
            "host=mastodon2,path_prefix=/users,status=418,body=teapot",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start fedilab inspect");
    let err = child.stderr.take().expect("stderr");
    let child = Running(child);
    let mut line = String::new();
    BufReader::new(err).read_line(&mut line).expect("banner");
    let addr = |after: &str, end: char| -> SocketAddr {
        line.split(after)
            .nth(1)
            .and_then(|r| r.split(end).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address after {after:?} in {line:?}"))
    };
    let proxy = addr("proxy on ", ' ');
    let ui = addr("UI on http://", '/').to_string();

    let reply = http(
        proxy,
        "POST /users/bob/inbox HTTP/1.1\r\nHost: mastodon2.fediverse.local\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    );
    assert!(reply.starts_with("HTTP/1.1 418"), "{reply}");
    assert!(reply.ends_with("teapot"), "{reply}");

    let ok = |args: &[&str]| {
        let out = t.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        crate::common::stdout(&out)
    };
    let list = ok(&["fault", "list", "--ui", &ui]);
    assert!(
        list.contains("1  active") && list.contains("answer 418 when host=mastodon2"),
        "{list}"
    );
    let added = ok(&[
        "fault",
        "add",
        "--ui",
        &ui,
        r#"{"match": {"method": "GET"}, "action": {"delay_ms": 5}}"#,
    ]);
    assert_eq!(added.trim(), "rule 2 added: delay 5 ms when method=GET");
    assert_eq!(
        ok(&["fault", "remove", "1", "--ui", &ui]).trim(),
        "rule 1 removed"
    );
    let out = t.run(&["fault", "remove", "1", "--ui", &ui]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no fault rule 1"), "{}", stderr(&out));
    assert_eq!(
        ok(&["fault", "clear", "--ui", &ui]).trim(),
        "every fault rule removed"
    );
    assert!(ok(&["fault", "list", "--ui", &ui]).contains("no fault rules"));
    drop(child);
}

#[test]
fn fault_refuses_bad_rules_and_says_when_no_inspector_runs() {
    let t = TestDir::new();
    let out = t.run(&["fault", "add", "colour=red", "--ui", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown rule field"),
        "{}",
        stderr(&out)
    );
    let out = t.run(&[
        "inspect",
        "--route",
        "a.test=http://127.0.0.1:1",
        "--fault",
        "status=503,reset",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exactly one action"),
        "{}",
        stderr(&out)
    );
    let out = t.run(&["fault", "list", "--lab", "nolab"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not running for lab nolab"),
        "{}",
        stderr(&out)
    );
}
