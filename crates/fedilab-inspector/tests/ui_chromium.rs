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

    let id = lab.post_signed_create(ALICE_KEY, 42).await.exchange.id;
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
    let tampered = lab.next_record().await.exchange.id;
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
