//! The check scripts run for real with Ruby (Debian's; the lab runs them
//! with the Mastodon image's), and what they print goes through
//! `evaluate`: every script parses, the egress probe judges a closed
//! and an open network correctly against loopback servers, and the
//! federation round trip runs for each pair of kinds against a stand-in lab
//! speaking the subset of Mastodon's, GoToSocial's and Misskey's client
//! APIs the script uses.

use std::net::{TcpListener, UdpSocket};
use std::process::Command;

use fedilab_profile::{InstanceCounts, InstanceKind, LabSpec, Overrides};
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

/// One request as the stand-in servers see it.
struct Request {
    method: String,
    /// The path with its query.
    path: String,
    /// The Host header without the port: which instance is asked.
    host: String,
    /// The Bearer token, if any.
    token: String,
    body: Vec<u8>,
}

/// Serves `handler` over plain HTTP on a loopback port, one request per
/// connection, from a thread that lives as long as the test process.
fn serve(handler: impl Fn(&Request) -> (u16, String) + Send + 'static) -> u16 {
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
            let (mut length, mut token, mut host) = (0usize, String::new(), String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("host:") {
                    host = v.trim().split(':').next().unwrap_or_default().to_owned();
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
            let request = Request {
                method: parts.next().unwrap_or("").to_owned(),
                path: parts.next().unwrap_or("").to_owned(),
                host,
                token,
                body,
            };
            let (code, json) = handler(&request);
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

/// Serves the stand-in Mastodon pair.
fn serve_pair(pair: std::sync::Arc<std::sync::Mutex<Pair>>) -> u16 {
    serve(move |r| handle(&pair, &r.method, &r.path, &r.token))
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
                "FEDILAB_NONCE" => "n0nce",
                _ => continue,
            };
            var.from = EnvSource::Value {
                value: value.to_owned(),
            };
        }
        point_at_stand_in(pod, port);
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
    let (check, outputs) = run_federation(serve_pair(pair.clone()));
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
    let (check, outputs) = run_federation(serve_pair(pair));
    let result = evaluate(&check, &outputs);
    assert_eq!(result.outcome, Outcome::Pass, "{result:#?}\n{outputs:#?}");
}

/// The kinds of API the stand-in lab speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// Mastodon's REST API, Bearer token.
    Mastodon,
    /// GoToSocial's Mastodon-compatible API; its admin is locked.
    GoToSocial,
    /// Misskey's `POST /api/<endpoint>` with the token as `i`.
    Misskey,
}

/// One stand-in server of the lab.
#[derive(Debug)]
struct Server {
    host: String,
    api: Api,
    token: String,
    /// Follows wait for approval (GoToSocial's default).
    locked: bool,
    /// It sends an Accept when a follow is accepted; `false`: the Accept is
    /// lost on the way.
    accepts: bool,
}

/// A lab of stand-in servers whose admins follow and post: deliveries are
/// immediate, follows of a locked admin wait for approval.
#[derive(Debug, Default)]
struct World {
    servers: Vec<Server>,
    /// (follower, followee), by server index.
    follows: std::collections::BTreeSet<(usize, usize)>,
    /// Follow requests a locked followee holds.
    requests: std::collections::BTreeSet<(usize, usize)>,
    /// Texts in each admin's home timeline.
    homes: std::collections::BTreeMap<usize, Vec<String>>,
    /// Follow requests approved through the API.
    approvals: Vec<(usize, usize)>,
}

impl World {
    fn of(spec: &LabSpec) -> World {
        let servers = spec
            .instances
            .iter()
            .map(|i| {
                let api = match i.kind.kind() {
                    InstanceKind::Misskey => Api::Misskey,
                    InstanceKind::Gotosocial => Api::GoToSocial,
                    _ => Api::Mastodon,
                };
                Server {
                    host: i.host.to_string(),
                    api,
                    token: token_of(i.host.as_str()),
                    locked: api == Api::GoToSocial,
                    accepts: true,
                }
            })
            .collect();
        World {
            servers,
            ..World::default()
        }
    }

    fn index(&self, host: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.host == host)
    }

    /// The admin of server `i` as every server names it.
    fn id(i: usize) -> String {
        format!("u{i}")
    }

    fn from_id(id: &str) -> Option<usize> {
        id.strip_prefix('u')?.parse().ok()
    }

    fn acct(&self, i: usize) -> String {
        format!("labadmin@{}", self.servers[i].host)
    }

    fn follow(&mut self, follower: usize, followee: usize) {
        if self.servers[followee].locked {
            self.requests.insert((follower, followee));
        } else if self.servers[followee].accepts {
            self.follows.insert((follower, followee));
        }
    }

    fn approve(&mut self, follower: usize, followee: usize) -> bool {
        if !self.requests.remove(&(follower, followee)) {
            return false;
        }
        self.approvals.push((follower, followee));
        if self.servers[followee].accepts {
            self.follows.insert((follower, followee));
        }
        true
    }

    fn unfollow(&mut self, follower: usize, followee: usize) {
        self.follows.remove(&(follower, followee));
        self.requests.remove(&(follower, followee));
    }

    fn publish(&mut self, author: usize, text: &str) {
        let followers: Vec<usize> = self
            .follows
            .iter()
            .filter(|(_, t)| *t == author)
            .map(|(f, _)| *f)
            .collect();
        for f in followers {
            self.homes.entry(f).or_default().push(text.to_owned());
        }
    }

    fn handle(&mut self, r: &Request) -> (u16, String) {
        let Some(me) = self.index(&r.host) else {
            return (404, "{}".to_owned());
        };
        match self.servers[me].api {
            Api::Mastodon | Api::GoToSocial => {
                if r.token != self.servers[me].token {
                    return (401, r#"{"error":"The access token is invalid"}"#.to_owned());
                }
                self.mastodon(me, r)
            }
            Api::Misskey => {
                let body: serde_json::Value =
                    serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
                if r.method != "POST" || !r.path.starts_with("/api/") {
                    return (404, "{}".to_owned());
                }
                if body["i"].as_str() != Some(self.servers[me].token.as_str()) {
                    return (
                        401,
                        r#"{"error":{"code":"AUTHENTICATION_FAILED"}}"#.to_owned(),
                    );
                }
                self.misskey(me, &r.path["/api/".len()..], &body)
            }
        }
    }

    /// Mastodon's REST API, as GoToSocial speaks it too.
    fn mastodon(&mut self, me: usize, r: &Request) -> (u16, String) {
        use serde_json::json;
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| v.replace("%40", "@"))
            })
        };
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let ok = |v: serde_json::Value| (200, v.to_string());
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["api", "v2", "search"]) => {
                let q = param("q").unwrap_or_default();
                let found = q
                    .strip_prefix("labadmin@")
                    .and_then(|host| self.index(host));
                let accounts: Vec<_> = found
                    .map(|t| {
                        json!({"id": Self::id(t), "acct": self.acct(t),
                               "url": format!("https://{}/@labadmin", self.servers[t].host)})
                    })
                    .into_iter()
                    .collect();
                ok(json!({ "accounts": accounts }))
            }
            ("GET", ["api", "v1", "accounts", "relationships"]) => {
                let Some(t) = param("id[]").as_deref().and_then(Self::from_id) else {
                    return (400, "{}".to_owned());
                };
                ok(json!([{"id": Self::id(t),
                           "following": self.follows.contains(&(me, t)),
                           "requested": self.requests.contains(&(me, t))}]))
            }
            ("GET", ["api", "v1", "accounts", "verify_credentials"]) => {
                ok(json!({"id": Self::id(me), "acct": "labadmin"}))
            }
            ("GET", ["api", "v1", "accounts", id, "followers"]) if *id == Self::id(me) => {
                let list: Vec<_> = self
                    .follows
                    .iter()
                    .filter(|(_, t)| *t == me)
                    .map(|(f, _)| json!({"id": Self::id(*f), "acct": self.acct(*f)}))
                    .collect();
                ok(json!(list))
            }
            ("POST", ["api", "v1", "accounts", id, action]) => {
                let Some(t) = Self::from_id(id) else {
                    return (404, "{}".to_owned());
                };
                match *action {
                    "follow" => self.follow(me, t),
                    "unfollow" => self.unfollow(me, t),
                    _ => return (404, "{}".to_owned()),
                }
                ok(
                    json!({"id": id, "following": self.follows.contains(&(me, t)),
                          "requested": self.requests.contains(&(me, t))}),
                )
            }
            ("GET", ["api", "v1", "follow_requests"]) => {
                let list: Vec<_> = self
                    .requests
                    .iter()
                    .filter(|(_, t)| *t == me)
                    .map(|(f, _)| json!({"id": Self::id(*f), "acct": self.acct(*f)}))
                    .collect();
                ok(json!(list))
            }
            ("POST", ["api", "v1", "follow_requests", id, "authorize"]) => {
                match Self::from_id(id).filter(|f| self.approve(*f, me)) {
                    Some(_) => ok(json!({"id": id, "followed_by": true})),
                    None => (404, r#"{"error":"Record not found"}"#.to_owned()),
                }
            }
            ("POST", ["api", "v1", "statuses"]) => {
                let body: serde_json::Value =
                    serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
                let Some(text) = body["status"].as_str() else {
                    return (422, r#"{"error":"Validation failed"}"#.to_owned());
                };
                self.publish(me, &format!("<p>{text}</p>"));
                let host = &self.servers[me].host;
                ok(json!({"id": "1", "uri": format!("https://{host}/users/labadmin/statuses/1")}))
            }
            ("GET", ["api", "v1", "timelines", "home"]) => {
                let home = self.homes.get(&me).cloned().unwrap_or_default();
                let list: Vec<_> = home.iter().map(|c| json!({"content": c})).collect();
                ok(json!(list))
            }
            _ => (404, r#"{"error":"Record not found"}"#.to_owned()),
        }
    }

    /// Misskey's API: the endpoint's name, its JSON parameters.
    fn misskey(&mut self, me: usize, endpoint: &str, p: &serde_json::Value) -> (u16, String) {
        use serde_json::json;
        let ok = |v: serde_json::Value| (200, v.to_string());
        let user = |w: &World, i: usize| {
            json!({"id": Self::id(i), "username": "labadmin",
                   "host": if i == me { serde_json::Value::Null } else { json!(w.servers[i].host) }})
        };
        let target = p["userId"].as_str().and_then(Self::from_id);
        match (endpoint, target) {
            ("i", _) => ok(user(self, me)),
            ("users/show", _) => {
                let host = p["host"].as_str().unwrap_or_default();
                match self.index(host) {
                    Some(t) if p["username"] == "labadmin" => {
                        let mut u = user(self, t);
                        u["uri"] = json!(format!("https://{host}/users/labadmin"));
                        ok(u)
                    }
                    _ => (
                        500,
                        r#"{"error":{"code":"FAILED_TO_RESOLVE_REMOTE_USER"}}"#.to_owned(),
                    ),
                }
            }
            ("users/relation", Some(t)) => ok(json!({"id": Self::id(t),
                "isFollowing": self.follows.contains(&(me, t)),
                "hasPendingFollowRequestFromYou": self.requests.contains(&(me, t))})),
            ("following/create", Some(t)) => {
                if self.follows.contains(&(me, t)) {
                    return (400, r#"{"error":{"code":"ALREADY_FOLLOWING"}}"#.to_owned());
                }
                self.follow(me, t);
                ok(user(self, t))
            }
            ("following/delete", Some(t)) => {
                self.unfollow(me, t);
                ok(user(self, t))
            }
            ("users/followers", Some(t)) if t == me => {
                let list: Vec<_> = self
                    .follows
                    .iter()
                    .filter(|(_, t)| *t == me)
                    .map(|(f, _)| json!({"id": "f", "follower": user(self, *f)}))
                    .collect();
                ok(json!(list))
            }
            ("following/requests/list", _) => {
                let list: Vec<_> = self
                    .requests
                    .iter()
                    .filter(|(_, t)| *t == me)
                    .map(|(f, _)| json!({"id": "r", "follower": user(self, *f)}))
                    .collect();
                ok(json!(list))
            }
            ("following/requests/accept", Some(f)) => {
                if self.approve(f, me) {
                    (204, String::new())
                } else {
                    (
                        400,
                        r#"{"error":{"code":"NO_SUCH_FOLLOW_REQUEST"}}"#.to_owned(),
                    )
                }
            }
            ("notes/create", _) => {
                let Some(text) = p["text"].as_str() else {
                    return (400, r#"{"error":{"code":"CONTENT_REQUIRED"}}"#.to_owned());
                };
                self.publish(me, text);
                ok(json!({"createdNote": {"id": "n1", "text": text, "uri": null}}))
            }
            ("notes/timeline", _) => {
                let home = self.homes.get(&me).cloned().unwrap_or_default();
                let list: Vec<_> = home.iter().map(|t| json!({"id": "n", "text": t})).collect();
                ok(json!(list))
            }
            _ => (400, r#"{"error":{"code":"NO_SUCH_ENDPOINT"}}"#.to_owned()),
        }
    }
}

fn token_of(host: &str) -> String {
    format!("token-{host}")
}

/// The federation check of `spec`'s lab, its pod steps pointed at the
/// stand-in lab on `port` (tokens as literals, short waits).
fn federation_check(spec: &LabSpec, port: u16) -> Check {
    let mut check = plan(spec, &PlanInputs::new(None, "n0nce"))
        .checks
        .into_iter()
        .find(|c| c.id == CheckId::Federation)
        .expect("a federation check");
    check.steps.retain(|s| matches!(s.run, StepRun::Pod(_)));
    for step in &mut check.steps {
        let StepRun::Pod(pod) = &mut step.run else {
            continue;
        };
        let host = |var: &str| pod.env_value(var).map(str::to_owned).unwrap_or_default();
        let (from, to) = (host("FEDILAB_FROM_HOST"), host("FEDILAB_TO_HOST"));
        for var in &mut pod.env {
            let value = match var.name.as_str() {
                "FEDILAB_FROM_TOKEN" => token_of(&from),
                "FEDILAB_TO_TOKEN" => token_of(&to),
                "FEDILAB_WAIT" => "3".to_owned(),
                _ => continue,
            };
            var.from = EnvSource::Value { value };
        }
        point_at_stand_in(pod, port);
    }
    check
}

fn lab(counts: &[(InstanceKind, usize)]) -> LabSpec {
    LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(InstanceCounts::PerKind(counts.to_vec())),
            ..Overrides::default()
        },
    )
    .expect("valid")
}

fn serve_world(world: std::sync::Arc<std::sync::Mutex<World>>) -> u16 {
    serve(move |r| match world.lock() {
        Ok(mut w) => w.handle(r),
        Err(_) => (500, "{}".to_owned()),
    })
}

/// Issue 14: in a mixed lab, the round trip runs for every ordered pair of
/// kinds (and Mastodon to Mastodon), each side through its own API; a
/// locked GoToSocial admin approves the follow through its API; a rerun
/// undoes the earlier follows first and passes again.
#[test]
fn issue_14_federation_round_trip_for_each_pair_of_kinds() {
    if !ruby() {
        return;
    }
    let spec = lab(&[
        (InstanceKind::Mastodon, 2),
        (InstanceKind::Misskey, 1),
        (InstanceKind::Gotosocial, 1),
    ]);
    let world = std::sync::Arc::new(std::sync::Mutex::new(World::of(&spec)));
    let check = federation_check(&spec, serve_world(world.clone()));
    let ids: Vec<&str> = check.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "federation@mastodon1>mastodon2",
            "federation@mastodon1>misskey1",
            "federation@misskey1>mastodon1",
            "federation@mastodon1>gts1",
            "federation@gts1>mastodon1",
            "federation@misskey1>gts1",
            "federation@gts1>misskey1",
        ]
    );
    for round in ["first", "rerun"] {
        let outputs = run(&check);
        let result = evaluate(&check, &outputs);
        assert_eq!(
            result.outcome,
            Outcome::Pass,
            "{round}: {result:#?}\n{outputs:#?}"
        );
        for pair in [
            "mastodon1 -> misskey1",
            "misskey1 -> mastodon1",
            "gts1 -> misskey1",
        ] {
            assert!(
                result
                    .evidence
                    .iter()
                    .any(|e| e.starts_with(&format!("{pair}: ok delivered"))),
                "{round}: {pair} in {:#?}",
                result.evidence
            );
        }
    }
    let w = world.lock().expect("not poisoned");
    let g = w.index("gts1.fediverse.local").expect("gts1");
    let approved_by_gts = w.approvals.iter().filter(|(_, t)| *t == g).count();
    assert_eq!(approved_by_gts, 4, "two pairs towards gts1, twice");
    let m1 = w.index("mastodon1.fediverse.local").expect("mastodon1");
    let home = w.homes.get(&m1).cloned().unwrap_or_default();
    for nonce in [
        "n0nce-mastodon1-mastodon2",
        "n0nce-mastodon1-misskey1",
        "n0nce-mastodon1-gts1",
    ] {
        assert!(
            home.iter().any(|t| t.contains(nonce)),
            "{nonce} in {home:?}"
        );
    }
}

/// Issue 14: a lab of Misskey and GoToSocial only; when Misskey's Accept
/// never arrives, the pair towards Misskey fails and is named, the other
/// passes; a wrong Misskey token is named as such.
#[test]
fn issue_14_a_failing_pair_is_named() {
    if !ruby() {
        return;
    }
    let spec = lab(&[(InstanceKind::Misskey, 1), (InstanceKind::Gotosocial, 1)]);
    let mut world = World::of(&spec);
    let k = world.index("misskey1.fediverse.local").expect("misskey1");
    world.servers[k].accepts = false;
    let world = std::sync::Arc::new(std::sync::Mutex::new(world));
    let port = serve_world(world.clone());
    let check = federation_check(&spec, port);
    let result = evaluate(&check, &run(&check));
    assert_eq!(result.outcome, Outcome::Fail, "{result:#?}");
    let why = result.explanation.clone().unwrap_or_default();
    assert!(
        why.contains("gts1 -> misskey1: accepted: no Accept within 3"),
        "{why}"
    );
    assert!(why.contains("delivery queue"), "{why}");
    assert!(!why.contains("misskey1 -> gts1"), "{why}");
    assert!(
        result
            .evidence
            .iter()
            .any(|e| e.starts_with("misskey1 -> gts1: ok delivered")),
        "{:#?}",
        result.evidence
    );

    // Misskey checks `i`: a wrong token fails the pair from Misskey.
    if let Ok(mut w) = world.lock() {
        w.servers[k].accepts = true;
        w.servers[k].token = "wrong".to_owned();
    }
    let result = evaluate(&check, &run(&check));
    let why = result.explanation.clone().unwrap_or_default();
    assert!(why.contains("misskey1 -> gts1: resolve: HTTP 401"), "{why}");
    assert!(why.contains("token was rejected"), "{why}");
}

/// Issue 14: a locked Misskey admin (not Misskey's default) approves the
/// follow through Misskey's own API, as a GoToSocial admin does through
/// its Mastodon-compatible one.
#[test]
fn issue_14_a_locked_misskey_admin_approves_through_its_api() {
    if !ruby() {
        return;
    }
    let spec = lab(&[(InstanceKind::Misskey, 1), (InstanceKind::Gotosocial, 1)]);
    let mut world = World::of(&spec);
    let k = world.index("misskey1.fediverse.local").expect("misskey1");
    world.servers[k].locked = true;
    let world = std::sync::Arc::new(std::sync::Mutex::new(world));
    let check = federation_check(&spec, serve_world(world.clone()));
    let outputs = run(&check);
    let result = evaluate(&check, &outputs);
    assert_eq!(result.outcome, Outcome::Pass, "{result:#?}\n{outputs:#?}");
    assert!(
        result
            .evidence
            .iter()
            .any(|e| e.starts_with("gts1 -> misskey1: ok approve")),
        "{:#?}",
        result.evidence
    );
    let w = world.lock().expect("not poisoned");
    let g = w.index("gts1.fediverse.local").expect("gts1");
    assert_eq!(w.approvals, [(k, g), (g, k)]);
}

/// Points a federation pod's script at a stand-in on loopback `port`:
/// plain HTTP, fast polling.
fn point_at_stand_in(pod: &mut PodStep, port: u16) {
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
