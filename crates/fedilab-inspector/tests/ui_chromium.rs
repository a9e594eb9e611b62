//! The UI in real headless Chromium, driven over the DevTools protocol:
//! open the page, wait until its event stream is live, send a signed
//! Create(Note) through the proxy, see the row appear, open it, see the
//! activity and the verdict; then the sequence view. The server bar lists
//! the routed hosts. Screenshots go to
//! `$FEDILAB_UI_SCREENSHOTS` (default: the system temp dir).
//!
//! Skipped, with a printed reason, when /usr/bin/chromium is absent
//! (Debian package `chromium`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Cdp {
    ws: Ws,
    next: u64,
    session: Option<String>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call_raw(method, params).await;
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// Sends one command and returns the whole reply, error or result.
    async fn call_raw(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        within(method, async {
            self.ws
                .send(Message::text(msg.to_string()))
                .await
                .expect("cdp send");
            loop {
                let m = self
                    .ws
                    .next()
                    .await
                    .expect("cdp open")
                    .expect("cdp message");
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t).expect("cdp json");
                if v["id"] == id {
                    return v;
                }
            }
        })
        .await
    }

    /// Evaluates an expression (awaiting a promise) and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let params = json!({ "expression": expr, "awaitPromise": true, "returnByValue": true });
        // The new tab starts on about:blank and then navigates to the UI; an
        // evaluation that lands in the blank page's context fails when the
        // navigation destroys it. Only that error is retried, a few times.
        for _ in 0..20 {
            let reply = self.call_raw("Runtime.evaluate", params.clone()).await;
            let error = reply["error"]["message"].as_str().unwrap_or_default();
            if error.contains("context") || error.contains("navigated") {
                continue;
            }
            assert!(reply.get("error").is_none(), "{expr}: {reply}");
            let r = &reply["result"];
            assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
            return r["result"]["value"].clone();
        }
        panic!("{expr}: the page's context kept being replaced");
    }

    /// Resolves with `probe`'s value once it is truthy (checked in the page
    /// on every animation frame; the Rust side has a timeout).
    async fn wait_for(&mut self, probe: &str) -> Value {
        let expr = format!(
            "new Promise((resolve) => {{ const f = () => {{ let v; try {{ v = ({probe}); }} catch (e) {{ v = null; }} if (v) resolve(v); else requestAnimationFrame(f); }}; f(); }})"
        );
        self.eval(&expr).await
    }

    async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = STANDARD
            .decode(shot["data"].as_str().expect("png data"))
            .expect("png base64");
        std::fs::write(path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
    }
}

async fn launch(profile: &Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,900",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().expect("stderr");
    let url = within("DevTools URL", async {
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = lines
                .next_line()
                .await
                .expect("chromium stderr")
                .expect("chromium exited before announcing DevTools");
            if let Some(i) = line.find("ws://") {
                let url = line[i..].trim().to_owned();
                // Keep draining stderr so chromium never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return url;
            }
        }
    })
    .await;
    (child, url)
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("FEDILAB_UI_SCREENSHOTS").map_or_else(std::env::temp_dir, PathBuf::from)
}

#[tokio::test]
async fn the_ui_shows_a_signed_create_note_live_with_its_verdict() {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIPPED: {CHROMIUM} is absent (Debian package `chromium`)");
        return;
    }
    let mut lab = lab(|_| {}).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let (mut child, ws_url) = launch(profile.path()).await;
    let (ws, _) = within(
        "CDP connect",
        tokio_tungstenite::connect_async(ws_url.as_str()),
    )
    .await
    .expect("CDP websocket");
    let mut cdp = Cdp {
        ws,
        next: 0,
        session: None,
    };
    let target = cdp
        .call(
            "Target.createTarget",
            json!({ "url": format!("http://{}/", lab.ui()) }),
        )
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    cdp.session = Some(attached["sessionId"].as_str().expect("session").to_owned());
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;

    // The page is open and its event stream is connected before anything
    // is sent: the row must arrive live, not with the first load.
    cdp.wait_for("document.body && document.body.dataset.live === '1'")
        .await;

    // The server bar lists every routed host with its kind.
    let servers = cdp
        .wait_for(
            "document.querySelectorAll('#servers .server').length === 3 \
             && document.getElementById('servers').innerText",
        )
        .await;
    let servers = servers.as_str().unwrap_or_default().to_owned();
    for host in [M1, M2, WS] {
        assert!(servers.contains(host), "{host} in {servers:?}");
    }
    assert!(servers.contains("instance"), "{servers:?}");
    assert_eq!(
        cdp.eval("document.querySelectorAll('tr.row').length").await,
        0
    );

    let id = lab.post_signed_create(ALICE_KEY, 42).await.exchange().id;
    // And one signed with the wrong key, for contrast in the screenshot.
    lab.post_signed_create(MALLORY_KEY, 43).await;

    let row = cdp
        .wait_for(&format!(
            "(document.querySelector('tr.row[data-id=\"{id}\"]') || {{}}).innerText"
        ))
        .await;
    let row = row.as_str().expect("row text");
    assert!(row.contains("Create(Note)"), "{row}");
    assert!(row.contains("valid"), "{row}");
    assert!(row.contains("mastodon1 → mastodon2"), "{row}");
    cdp.wait_for("document.querySelectorAll('tr.row').length === 2")
        .await;

    cdp.eval(&format!(
        "document.querySelector('tr.row[data-id=\"{id}\"]').click(); true"
    ))
    .await;
    let detail = cdp
        .wait_for(&format!(
            "document.querySelector('#detail[data-id=\"{id}\"] #verdict') && document.querySelector('#detail').innerText"
        ))
        .await;
    let detail = detail.as_str().expect("detail text");
    assert!(detail.contains("Create(Note)"), "{detail}");
    assert!(detail.contains("valid"), "{detail}");
    assert!(detail.contains("verified with rsa-sha256"), "{detail}");
    assert!(
        detail.contains("\"type\": \"Note\""),
        "pretty JSON body: {detail}"
    );
    assert!(detail.contains("Copy as curl"), "{detail}");
    let dir = screenshot_dir();
    cdp.screenshot(&dir.join("fedilab-inspector-ui.png")).await;

    // The invalid one names its reason.
    cdp.eval(&format!(
        "document.querySelector('tr.row[data-id=\"{}\"]').click(); true",
        id + 1
    ))
    .await;
    let bad = cdp
        .wait_for(&format!(
            "document.querySelector('#detail[data-id=\"{}\"] #verdict') && document.querySelector('#detail').innerText",
            id + 1
        ))
        .await;
    assert!(
        bad.as_str()
            .is_some_and(|t| t.contains("invalid") && t.contains("bad_signature")),
        "{bad}"
    );

    // A body changed after signing: the signature itself is good, and the
    // page says so instead of "invalid … verified with".
    let signed = create_note(44);
    let sent = String::from_utf8(signed.clone())
        .expect("utf8")
        .replace("Hello", "Hullo")
        .into_bytes();
    let headers = inbox_cavage(&key(ALICE_KEY), &signed).headers();
    lab.send("POST", M2, INBOX, &headers, sent).await;
    let tampered = lab.next_record().await.exchange().id;
    cdp.wait_for(&format!(
        "!!document.querySelector('tr.row[data-id=\"{tampered}\"]')"
    ))
    .await;
    cdp.eval(&format!(
        "document.querySelector('tr.row[data-id=\"{tampered}\"]').click(); true"
    ))
    .await;
    let changed = cdp
        .wait_for(&format!(
            "document.querySelector('#detail[data-id=\"{tampered}\"] #verdict') && document.querySelector('#verdict').innerText"
        ))
        .await;
    let changed = changed.as_str().expect("verdict text");
    assert!(
        changed.contains("signature valid, body changed after signing"),
        "{changed}"
    );
    assert!(!changed.contains("verified with"), "{changed}");

    // The sequence view draws the delivery between the two instances.
    cdp.eval("document.getElementById('b-view').click(); true")
        .await;
    let seq = cdp
        .wait_for(
            "document.querySelector('#seq svg') && document.querySelector('#seq svg').textContent",
        )
        .await;
    let seq = seq.as_str().expect("svg text");
    assert!(
        seq.contains(M1) && seq.contains(M2) && seq.contains("Create(Note)"),
        "{seq}"
    );
    cdp.screenshot(&dir.join("fedilab-inspector-sequence.png"))
        .await;

    // The Clear button's DELETE is same-origin: the guard lets the
    // browser's own Origin and Sec-Fetch-Site through.
    cdp.eval("window.confirm = () => true; document.getElementById('b-clear').click(); true")
        .await;
    let status = cdp
        .eval("fetch('api/exchanges', { method: 'DELETE' }).then((r) => r.status)")
        .await;
    assert_eq!(status, 204, "a DELETE from the page itself");
    assert!(lab.inspector.store().snapshot().is_empty(), "cleared");

    let _ = cdp.ws.close(None).await;
    let _ = child.kill().await;
}

/// Opens the UI of `lab` in a new headless Chromium at 1400 x 900 and
/// waits until its event stream is live.
async fn open_ui(lab: &Lab, profile: &Path) -> (tokio::process::Child, Cdp) {
    let (child, ws_url) = launch(profile).await;
    let (ws, _) = within(
        "CDP connect",
        tokio_tungstenite::connect_async(ws_url.as_str()),
    )
    .await
    .expect("CDP websocket");
    let mut cdp = Cdp {
        ws,
        next: 0,
        session: None,
    };
    let target = cdp
        .call(
            "Target.createTarget",
            json!({ "url": format!("http://{}/", lab.ui()) }),
        )
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    cdp.session = Some(attached["sessionId"].as_str().expect("session").to_owned());
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    cdp.wait_for("document.body && document.body.dataset.live === '1'")
        .await;
    (child, cdp)
}

/// Posts a signed Create(Note) to `host`'s inbox (signed for M2's: the
/// verdict does not matter here) with the lab's client; answers the status.
async fn post_create(
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    proxy: std::net::SocketAddr,
    host: &str,
    n: u32,
) -> u16 {
    let key = key(ALICE_KEY);
    let body = create_note(n);
    let mut req = http::Request::post(format!("http://{proxy}{INBOX}")).header("host", host);
    for (name, value) in inbox_cavage(&key, &body).headers() {
        req = req.header(name, value);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    client.request(req).await.expect("send").status().as_u16()
}

/// The index of the row of exchange `id` among the list's rows and markers.
fn row_index(id: u64) -> String {
    format!(
        "[...document.querySelectorAll('#rows tr')].findIndex((tr) => tr.dataset.id === '{id}')"
    )
}

/// Waits (after `ready`, a JavaScript condition ending in `&&`, or
/// nothing) until both rows are listed, then asserts `first` comes before
/// `second`.
async fn assert_listed_before(cdp: &mut Cdp, ready: &str, first: u64, second: u64, why: &str) {
    let (a, b) = (row_index(first), row_index(second));
    cdp.wait_for(&format!("{ready}{a} >= 0 && {b} >= 0")).await;
    assert_eq!(cdp.eval(&format!("{a} < {b}")).await, true, "{why}");
}

#[tokio::test]
async fn the_ui_adds_fault_rules_marks_what_they_touch_orders_by_start_and_replays() {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIPPED: {CHROMIUM} is absent (Debian package `chromium`)");
        return;
    }
    let mut lab = lab(|_| {}).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let (mut child, mut cdp) = open_ui(&lab, profile.path()).await;

    // A rule from the page's form: the first Create to mastodon2 gets 503.
    cdp.eval(
        "document.getElementById('b-faults').click(); \
         const f = document.getElementById('fault-form'); \
         f.elements.host.value = 'mastodon2'; f.elements.activity.value = 'Create'; \
         f.elements.count.value = '1'; f.elements.action.value = 'status'; \
         f.elements.value.value = '503'; f.elements.retry_after.value = '30'; \
         f.requestSubmit(); true",
    )
    .await;
    let marker = cdp
        .wait_for("(document.querySelector('#rows tr.marker') || {}).innerText")
        .await;
    let marker = marker.as_str().expect("marker text");
    assert!(
        marker.contains("rule 1 added") && marker.contains("answer 503"),
        "{marker}"
    );
    let rules = cdp
        .wait_for("document.querySelector('#rules li[data-rule=\"1\"]') && document.getElementById('rules').innerText")
        .await;
    assert!(
        rules.as_str().is_some_and(|t| t.contains("status 503")),
        "{rules}"
    );

    let reply = lab
        .send("POST", M2, INBOX, &signed_create_headers(1), create_note(1))
        .await;
    assert_eq!(reply.status, 503);
    let faulted = lab.next_record_id().await;
    let row = cdp
        .wait_for(&format!(
            "(document.querySelector('tr.row[data-id=\"{faulted}\"] .mark.fault') || {{}}).innerText"
        ))
        .await;
    assert_eq!(row.as_str(), Some("⚡1"));
    assert_eq!(
        cdp.eval(&format!(
            "{} > [...document.querySelectorAll('#rows tr')].findIndex((tr) => tr.classList.contains('marker'))",
            row_index(faulted)
        ))
        .await,
        true,
        "the rule's marker comes before the exchange it touched"
    );

    // Order by start: a delayed request to mastodon1 starts first and
    // completes after a quick one to mastodon2 (so it gets the higher id).
    let reply = lab
        .api_json(
            "POST",
            "/api/faults",
            r#"{"match": {"host": "mastodon1"}, "action": {"delay_ms": 300}}"#,
        )
        .await;
    assert_eq!(reply.status, 201);
    let slow = tokio::spawn(post_create(lab.client.clone(), lab.proxy(), M1, 2));
    within("the slow request to be held", async {
        loop {
            let faults = lab.api("GET", "/api/faults").await.json();
            if faults["rules"][1]["applied"] == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        post_create(lab.client.clone(), lab.proxy(), M2, 3).await,
        202
    );
    let quick = lab.next_record_id().await;
    assert_eq!(within("the slow request", slow).await.expect("task"), 202);
    let late = lab.next_record_id().await;
    assert!(late > quick);
    assert_listed_before(&mut cdp, "", late, quick, "listed by start, not by id").await;
    // A fresh page reads the rows from `GET /api/exchanges` (in start
    // order, as the events placed them) and shows the same order.
    cdp.eval("document.body.dataset.live = ''; location.reload(); true")
        .await;
    assert_listed_before(
        &mut cdp,
        "document.body.dataset.live === '1' && ",
        late,
        quick,
        "listed by start after a reload too",
    )
    .await;

    // A long activity name is clipped, the verdict stays in view.
    let tombstone = br#"{"type":"Delete","actor":"https://mastodon1.fediverse.local/users/alice","object":{"type":"Tombstone","id":"https://mastodon1.fediverse.local/users/alice/statuses/1"}}"#;
    lab.send(
        "POST",
        M2,
        INBOX,
        &[("content-type".into(), "application/activity+json".into())],
        tombstone.to_vec(),
    )
    .await;
    let deleted = lab.next_record_id().await;
    let fits = cdp
        .wait_for(&format!(
            "(() => {{ const tr = document.querySelector('tr.row[data-id=\"{deleted}\"]'); if (!tr) return null; \
             const left = document.getElementById('left').getBoundingClientRect(); \
             const v = tr.querySelector('td.verdict').getBoundingClientRect(); \
             return JSON.stringify({{ right: v.right, width: v.width, panel: left.right, text: tr.innerText }}); }})()"
        ))
        .await;
    let fits: Value = serde_json::from_str(fits.as_str().expect("json")).expect("json");
    assert!(
        fits["right"].as_f64() <= fits["panel"].as_f64() && fits["width"].as_f64() > Some(40.0),
        "{fits}"
    );
    assert!(
        fits["text"]
            .as_str()
            .is_some_and(|t| t.contains("unsigned")),
        "{fits}"
    );

    // Replay the quick delivery from its detail, then an edited copy.
    cdp.eval(&format!(
        "document.querySelector('tr.row[data-id=\"{quick}\"]').click(); true"
    ))
    .await;
    cdp.wait_for(&format!(
        "document.querySelector('#detail[data-id=\"{quick}\"] #b-replay')"
    ))
    .await;
    cdp.eval("document.getElementById('b-replay').click(); true")
        .await;
    let replayed = cdp
        .wait_for("document.body.dataset.replayed")
        .await
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .expect("replayed id");
    let d = cdp
        .wait_for(&format!(
            "document.querySelector('#detail[data-id=\"{replayed}\"] #d-replay') && document.querySelector('#detail').innerText"
        ))
        .await;
    let d = d.as_str().expect("detail");
    assert!(
        d.contains(&format!("replay of #{quick}")) && d.contains("(unchanged)"),
        "{d}"
    );
    assert!(d.contains("valid"), "{d}");
    cdp.wait_for(&format!(
        "document.querySelector('tr.row[data-id=\"{replayed}\"] .mark.replay')"
    ))
    .await;

    cdp.eval(&format!(
        "document.querySelector('tr.row[data-id=\"{quick}\"]').click(); true"
    ))
    .await;
    cdp.wait_for(&format!(
        "document.querySelector('#detail[data-id=\"{quick}\"] #b-edit')"
    ))
    .await;
    cdp.eval(
        "document.getElementById('b-edit').click(); \
         const t = document.getElementById('e-body'); t.value = t.value.replace('Hello', 'Edited'); \
         document.getElementById('e-headers').value = '{\"x-lab-note\": \"by hand\"}'; \
         document.getElementById('b-send-edit').click(); true",
    )
    .await;
    let edited = cdp
        .wait_for(&format!(
            "document.body.dataset.replayed !== '{replayed}' && document.body.dataset.replayed"
        ))
        .await
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .expect("edited id");
    let d = cdp
        .wait_for(&format!(
            "document.querySelector('#detail[data-id=\"{edited}\"] #d-replay') && document.querySelector('#detail').innerText"
        ))
        .await;
    let d = d.as_str().expect("detail");
    assert!(d.contains("(edited") && d.contains("invalid"), "{d}");
    assert!(d.contains("x-lab-note"), "{d}");
    let entry = lab.inspector.store().get(edited).expect("stored");
    assert!(String::from_utf8_lossy(&entry.exchange().request.body.captured).contains("Edited"));
    assert_eq!(entry.marks.replay_of, Some(quick));
    let dir = screenshot_dir();
    cdp.screenshot(&dir.join("fedilab-inspector-faults.png"))
        .await;

    // Removing a rule from the page leaves a marker too.
    cdp.eval("document.querySelector('#rules button[data-remove=\"2\"]').click(); true")
        .await;
    cdp.wait_for(
        "[...document.querySelectorAll('#rows tr.marker')].some((tr) => tr.innerText.includes('rule 2 removed'))",
    )
    .await;
    assert_eq!(lab.inspector.faults().list().len(), 1);
    cdp.eval("document.getElementById('b-view').click(); true")
        .await;
    let seq = cdp
        .wait_for("document.querySelector('#seq svg g.marker') && document.querySelector('#seq svg').textContent")
        .await;
    assert!(
        seq.as_str().is_some_and(|t| t.contains("rule 1 added")),
        "{seq}"
    );
    cdp.screenshot(&dir.join("fedilab-inspector-faults-sequence.png"))
        .await;

    let _ = cdp.ws.close(None).await;
    let _ = child.kill().await;
}

/// Alice's draft-cavage headers for Create(Note) `n` to Bob's inbox.
fn signed_create_headers(n: u32) -> Vec<(String, String)> {
    let key = key(ALICE_KEY);
    inbox_cavage(&key, &create_note(n)).headers()
}
