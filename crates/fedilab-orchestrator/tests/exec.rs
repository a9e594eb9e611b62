//! `fedilab_orchestrator::exec` against a loopback server that speaks the
//! real Kubernetes exec subprotocol (`exec_server`): it answers `/version`
//! and the pod list for the component's selector, and upgrades
//! `/api/v1/namespaces/NS/pods/NAME/exec` to a WebSocket with
//! `v5.channel.k8s.io` (or only `v4.channel.k8s.io`), channels 0 stdin,
//! 1 stdout, 2 stderr, 3 error (a v1 Status), 4 resize and v5's close
//! (255). What kube sends is checked on the server's side; every await
//! has a time limit.

mod exec_server;

use fedilab_orchestrator::exec::{ExecIo, ExecOptions, TerminalSize, exec, find_pod};
use fedilab_orchestrator::{Captured, ExecError, exec_capture};
use fedilab_profile::names::{self, Component};

use exec_server::*;

#[tokio::test]
async fn exit_codes_and_separate_stdout_and_stderr() {
    for code in [0, 3] {
        let s = server(Script::Exit(code)).await;
        let got = bounded(exec_capture(&s.cluster, &target(), &argv(&["true"]), None))
            .await
            .expect("exec");
        assert_eq!(
            got,
            Captured {
                code,
                stdout: b"out\n".to_vec(),
                stderr: b"err\n".to_vec(),
            }
        );
        let seen = s.seen.lock().expect("lock");
        assert_eq!(seen.protocols, [V5]);
    }
}

#[tokio::test]
async fn the_pod_is_found_by_the_component_selector_and_the_query_carries_container_and_argv() {
    let s = server(Script::Exit(0)).await;
    let command = argv(&["sh", "-c", "echo \"a b\" && exit 3", "ä&=+%", ""]);
    bounded(exec_capture(&s.cluster, &target(), &command, None))
        .await
        .expect("exec");
    let seen = s.seen.lock().expect("lock");
    let lab = "main".parse().expect("lab");
    let instance = "mastodon1".parse().expect("instance");
    let expected_selector = names::component_selector(&lab, &instance, Component::Web)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(seen.selectors, [expected_selector]);
    let (path, query) = &seen.execs[0];
    assert_eq!(
        path,
        "/api/v1/namespaces/fedilab-main/pods/mastodon1-web-abc/exec"
    );
    let values = |key: &str| -> Vec<&str> {
        query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("container"), ["web"]);
    assert_eq!(values("command"), command);
    assert_eq!(values("stdout"), ["true"]);
    assert_eq!(values("stderr"), ["true"]);
    assert!(values("stdin").is_empty(), "{query:?}");
    assert!(values("tty").is_empty(), "{query:?}");
}

#[tokio::test]
async fn stdin_is_streamed_to_the_command() {
    let s = server(Script::Echo).await;
    // More than every pipe buffer on the way, so nothing may wait on
    // anything else.
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let got = bounded(exec_capture(
        &s.cluster,
        &target(),
        &argv(&["cat"]),
        Some(&input),
    ))
    .await
    .expect("exec");
    assert_eq!(got.code, 0);
    assert!(got.stdout == input, "stdout is not stdin");
    assert!(got.stderr.is_empty());
    let seen = s.seen.lock().expect("lock");
    assert!(
        seen.execs[0]
            .1
            .contains(&("stdin".to_owned(), "true".to_owned())),
        "{:?}",
        seen.execs[0].1
    );
}

#[tokio::test]
async fn a_tty_is_requested_and_the_terminal_size_sent() {
    let s = server(Script::Tty).await;
    let pod = bounded(find_pod(&s.cluster, &target())).await.expect("pod");
    let mut stdout = Vec::new();
    let io = ExecIo {
        stdin: Some(Box::new(tokio::io::empty())),
        stdout: Box::new(&mut stdout),
        stderr: None,
        resize: Some(Box::pin(futures_util::stream::iter([TerminalSize {
            width: 120,
            height: 40,
        }]))),
    };
    let options = ExecOptions {
        command: argv(&["/bin/bash"]),
        tty: true,
    };
    let code = bounded(exec(&s.cluster, &pod, &options, io))
        .await
        .expect("exec");
    assert_eq!(code, 0);
    let size: serde_json::Value = serde_json::from_slice(&stdout).expect("the size as JSON");
    assert_eq!(size, serde_json::json!({"Width": 120, "Height": 40}));
    let seen = s.seen.lock().expect("lock");
    let query = &seen.execs[0].1;
    assert!(
        query.contains(&("tty".to_owned(), "true".to_owned())),
        "{query:?}"
    );
    // A terminal merges stderr into stdout: it is not asked for.
    assert!(!query.iter().any(|(k, _)| k == "stderr"), "{query:?}");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_an_error_not_a_hang() {
    let s = server(Script::Drop).await;
    let err = bounded(exec_capture(
        &s.cluster,
        &target(),
        &argv(&["sleep", "9"]),
        None,
    ))
    .await
    .expect_err("no exit status");
    assert!(matches!(err, ExecError::Stream { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("mastodon1-web-abc"), "{text}");
    assert!(text.contains("exit code is unknown"), "{text}");

    // Closed properly, but before the status.
    let s = server(Script::CloseEarly).await;
    let err = bounded(exec_capture(
        &s.cluster,
        &target(),
        &argv(&["sleep", "9"]),
        None,
    ))
    .await
    .expect_err("no exit status");
    assert!(matches!(err, ExecError::Closed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("closed before the command's exit status"),
        "{err}"
    );
}

#[tokio::test]
async fn a_command_that_cannot_start_is_an_error_with_the_api_servers_message() {
    let s = server(Script::NotFound).await;
    let err = bounded(exec_capture(&s.cluster, &target(), &argv(&["nope"]), None))
        .await
        .expect_err("not an exit code");
    assert!(
        err.to_string()
            .contains("InternalError: exec: \"nope\": executable file not found"),
        "{err}"
    );
}

#[tokio::test]
async fn v4_is_used_when_the_server_offers_only_v4() {
    let s = start(Config {
        pods: serde_json::json!([ready_web_pod("mastodon1-web-abc")]),
        protocols: &[V4],
        script: Script::Exit(3),
        objects: None,
    })
    .await;
    let got = bounded(exec_capture(&s.cluster, &target(), &argv(&["false"]), None))
        .await
        .expect("exec");
    assert_eq!(got.code, 3);
    assert_eq!(got.stdout, b"out\n");
    assert_eq!(s.seen.lock().expect("lock").protocols, [V4]);
}

#[tokio::test]
async fn no_ready_pod_names_the_instance_and_says_what_to_do() {
    let mut starting = ready_web_pod("mastodon1-web-new");
    starting["status"]["conditions"][0]["status"] = serde_json::json!("False");
    let s = start(Config {
        pods: serde_json::json!([starting]),
        protocols: &[V5, V4],
        script: Script::Exit(0),
        objects: None,
    })
    .await;
    let err = bounded(exec_capture(&s.cluster, &target(), &argv(&["true"]), None))
        .await
        .expect_err("no pod");
    let text = err.to_string();
    assert!(
        text.contains("web of instance mastodon1 in lab main"),
        "{text}"
    );
    assert!(text.contains("not Ready"), "{text}");
    assert!(text.contains("`fedilab status --lab main`"), "{text}");
    assert!(s.seen.lock().expect("lock").execs.is_empty());

    // A container that is not there.
    let s = server(Script::Exit(0)).await;
    let mut other = target();
    other.container = Some("sidecar".to_owned());
    let err = bounded(find_pod(&s.cluster, &other))
        .await
        .expect_err("no such container");
    assert_eq!(
        err.to_string(),
        "pod mastodon1-web-abc has no container sidecar; it has: web"
    );
}

#[tokio::test]
async fn a_real_process_streams_stdin_through_and_its_exit_code_comes_back() {
    let s = server(Script::Local(Local(std::sync::Arc::new(
        |argv: &[String]| {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        },
    ))))
    .await;
    let input: Vec<u8> = (0..500_000u32).map(|i| (i % 253) as u8).collect();
    let got = bounded(exec_capture(
        &s.cluster,
        &target(),
        &argv(&["sh", "-c", "cat; echo done >&2; exit 7"]),
        Some(&input),
    ))
    .await
    .expect("exec");
    assert_eq!(got.code, 7);
    assert!(got.stdout == input, "stdout is not stdin");
    assert_eq!(got.stderr, b"done\n");
}
