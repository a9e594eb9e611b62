//! Runs a command in an instance's pod through the Kubernetes exec API
//! (kube's `ws` feature: a WebSocket speaking `v5.channel.k8s.io`, or
//! `v4.channel.k8s.io` with older API servers).
//!
//! ```text
//! find_pod(&Cluster, &ExecTarget)                 a Ready, non-terminating pod -> ExecPod
//! find_running_pod(&Cluster, &ExecTarget)         Running, Ready or not (state commands)
//! exec(&Cluster, &ExecPod, &ExecOptions, ExecIo)  streams stdin/stdout/stderr -> exit code
//! exec_capture(&Cluster, &ExecTarget, argv, stdin) collected output -> Captured
//! exit_code(&Status)                              the error channel's Status -> exit code (pure)
//! ```
//!
//! The remote exit code comes from the `Status` the API server sends on
//! the error channel: `Success` is 0, `NonZeroExitCode` carries the code in
//! its `ExitCode` cause; anything else is an [`ExecError`]. This module
//! never prints and never touches the local terminal (raw mode, window
//! size and signals belong to the CLI).

use std::pin::Pin;

use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceName, LabName};
use futures_util::future::FutureExt as _;
use futures_util::sink::{Sink, SinkExt as _};
use futures_util::stream::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess, ListParams};
use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, SimplexStream,
    WriteHalf,
};

use crate::Cluster;
use crate::readiness::is_pod_ready;

pub use kube::api::TerminalSize;

/// The size of each in-memory pipe between the WebSocket and the caller's
/// streams (kube's default is 1 KiB, which makes bulk output slow).
const PIPE_BUF: usize = 64 * 1024;

/// Which pod: a component of an instance of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    /// The lab.
    pub lab: LabName,
    /// The instance.
    pub instance: InstanceName,
    /// The component whose pod runs the command.
    pub component: Component,
    /// The container; `None` picks the one named after the component, else
    /// the pod's first container.
    pub container: Option<String>,
}

/// The pod (and container) [`find_pod`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPod {
    /// The lab's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The container the command runs in.
    pub container: String,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments (no shell involved).
    pub command: Vec<String>,
    /// Allocate a terminal: stderr then arrives merged into stdout, and
    /// [`ExecIo::resize`] is forwarded.
    pub tty: bool,
}

/// The caller's end of the streams of [`exec`].
pub struct ExecIo<'a> {
    /// Sent to the command's stdin until it ends (then the command sees
    /// end of file); `None`: the command gets no stdin.
    pub stdin: Option<Box<dyn AsyncRead + Unpin + Send + 'a>>,
    /// Receives the command's stdout (and with a TTY its stderr).
    pub stdout: Box<dyn AsyncWrite + Unpin + Send + 'a>,
    /// Receives the command's stderr (unused with a TTY); `None` discards it.
    pub stderr: Option<Box<dyn AsyncWrite + Unpin + Send + 'a>>,
    /// Terminal sizes to send (TTY only): the first one right away, then
    /// one per change.
    pub resize: Option<Pin<Box<dyn Stream<Item = TerminalSize> + Send + 'a>>>,
}

impl std::fmt::Debug for ExecIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecIo")
            .field("stdin", &self.stdin.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// A command's result, collected by [`exec_capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The remote exit code.
    pub code: i32,
    /// Everything the command wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the command wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Why a command could not be run, or ended without an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The pods could not be listed.
    #[error("cannot list the pods of {target} in namespace {namespace}")]
    ListPods {
        /// `component of instance I in lab L`.
        target: String,
        /// The lab's namespace.
        namespace: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// No pod to run the command in.
    #[error(
        "no Ready pod for {target} in namespace {namespace} ({}); \
         `fedilab status --lab {lab}` shows the instance's state, \
         `fedilab up --lab {lab}` (re)starts it",
        found_text(*found)
    )]
    NoPod {
        /// `component of instance I in lab L`.
        target: String,
        /// The lab (for the commands in the message).
        lab: LabName,
        /// The lab's namespace.
        namespace: String,
        /// Pods that matched but are not Ready or are terminating.
        found: usize,
    },
    /// The pod has no container by that name (or none at all).
    #[error("pod {pod} has no container {container}{}", if known.is_empty() { String::new() } else { format!("; it has: {known}") })]
    NoContainer {
        /// The pod.
        pod: String,
        /// The container asked for.
        container: String,
        /// Its containers, comma-separated.
        known: String,
    },
    /// The exec request was refused or the WebSocket could not be opened.
    #[error("cannot run {command} in pod {pod} (container {container})")]
    Start {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
        /// The command, for the message.
        command: String,
        /// kube's error (the API server's answer, such as 403 or 404).
        #[source]
        source: kube::Error,
    },
    /// The WebSocket broke while the command ran.
    #[error("the connection to pod {pod} broke while the command ran; its exit code is unknown")]
    Stream {
        /// The pod.
        pod: String,
        /// kube's error (its type is private to kube).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The WebSocket closed without the exit status.
    #[error(
        "the connection to pod {pod} closed before the command's exit status arrived \
         (the pod may have restarted; with an API server older than Kubernetes 1.30, \
         stdin's end also closes the connection)"
    )]
    Closed {
        /// The pod.
        pod: String,
    },
    /// The command could not run, or the status was not an exit code.
    #[error("the command in pod {pod} failed: {reason}: {message}")]
    Failed {
        /// The pod.
        pod: String,
        /// The Status's reason (`InternalError`, ...), or `Failure`.
        reason: String,
        /// The Status's message (such as "executable file not found").
        message: String,
    },
    /// The caller's stdout or stderr could not be written.
    #[error("cannot write the command's {stream} here")]
    Output {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn found_text(found: usize) -> String {
    match found {
        0 => "no pod matches".to_owned(),
        1 => "1 pod matches, not Ready or terminating".to_owned(),
        n => format!("{n} pods match, none Ready and running"),
    }
}

/// Why a Status is not an exit code: `(reason, message)`.
pub type StatusFailure = (String, String);

/// The remote exit code a Status from the error channel carries: 0 for
/// `Success`, the `ExitCode` cause of a `NonZeroExitCode` failure.
///
/// # Errors
/// `(reason, message)` for any other Status (the command could not start,
/// the container is gone) and for a `NonZeroExitCode` without a readable
/// code.
pub fn exit_code(status: &Status) -> Result<i32, StatusFailure> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let reason = status
        .reason
        .clone()
        .unwrap_or_else(|| "Failure".to_owned());
    let message = status.message.clone().unwrap_or_default();
    if reason == "NonZeroExitCode" {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.trim().parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err((reason, message))
}

fn describe(target: &ExecTarget) -> String {
    format!(
        "{} of instance {} in lab {}",
        target.component.as_str(),
        target.instance,
        target.lab
    )
}

/// The pod to run in: Ready, not terminating, the newest first (a rollout
/// leaves its new pod); the number of pods that matched otherwise.
pub fn pick_pod(mut pods: Vec<Pod>) -> Result<Pod, usize> {
    let found = pods.len();
    pods.retain(|p| p.metadata.deletion_timestamp.is_none() && is_pod_ready(Some(p)));
    pods.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    pods.into_iter().next().ok_or(found)
}

/// The pod to run in when readiness does not matter (a worker that is
/// still booting, or fails its probe): Running and not terminating, Ready
/// ones first, then the newest; the number of pods that matched otherwise.
pub fn pick_running_pod(mut pods: Vec<Pod>) -> Result<Pod, usize> {
    let found = pods.len();
    pods.retain(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    });
    pods.sort_by(|a, b| {
        is_pod_ready(Some(b))
            .cmp(&is_pod_ready(Some(a)))
            .then_with(|| {
                b.metadata
                    .creation_timestamp
                    .cmp(&a.metadata.creation_timestamp)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    pods.into_iter().next().ok_or(found)
}

/// Finds the pod of `target`'s component by its labels
/// ([`names::component_selector`]) and picks its container.
///
/// # Errors
/// [`ExecError::ListPods`] when the API refuses, [`ExecError::NoPod`] when
/// no pod is Ready, [`ExecError::NoContainer`] when the container asked
/// for does not exist.
pub async fn find_pod(cluster: &Cluster, target: &ExecTarget) -> Result<ExecPod, ExecError> {
    find_pod_with(cluster, target, pick_pod).await
}

/// As [`find_pod`], with a Running pod that is not Ready accepted too
/// ([`pick_running_pod`]).
///
/// # Errors
/// As [`find_pod`].
pub async fn find_running_pod(
    cluster: &Cluster,
    target: &ExecTarget,
) -> Result<ExecPod, ExecError> {
    find_pod_with(cluster, target, pick_running_pod).await
}

async fn find_pod_with(
    cluster: &Cluster,
    target: &ExecTarget,
    pick: fn(Vec<Pod>) -> Result<Pod, usize>,
) -> Result<ExecPod, ExecError> {
    let namespace = names::namespace(&target.lab);
    let selector = names::component_selector(&target.lab, &target.instance, target.component)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| ExecError::ListPods {
            target: describe(target),
            namespace: namespace.clone(),
            source,
        })?
        .items;
    let pod = pick(pods).map_err(|found| ExecError::NoPod {
        target: describe(target),
        lab: target.lab.clone(),
        namespace: namespace.clone(),
        found,
    })?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers: Vec<String> = pod
        .spec
        .map(|s| s.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    let container = match &target.container {
        Some(wanted) => containers.iter().find(|c| *c == wanted).cloned(),
        None => containers
            .iter()
            .find(|c| c.as_str() == target.component.as_str())
            .or_else(|| containers.first())
            .cloned(),
    };
    let container = container.ok_or_else(|| ExecError::NoContainer {
        pod: name.clone(),
        container: target
            .container
            .clone()
            .unwrap_or_else(|| target.component.as_str().to_owned()),
        known: containers.join(", "),
    })?;
    Ok(ExecPod {
        namespace,
        name,
        container,
    })
}

/// Runs `options.command` in `pod` and streams `io` until the command
/// exits; returns its exit code.
///
/// # Errors
/// [`ExecError::Start`] when the API server refuses the exec (or the
/// WebSocket cannot be opened), [`ExecError::Stream`] or
/// [`ExecError::Closed`] when the connection ends without an exit status,
/// [`ExecError::Failed`] when the command cannot run, [`ExecError::Output`]
/// when `io.stdout` or `io.stderr` cannot be written (the command's output
/// is then read to its end and dropped, so the command still finishes).
///
/// # Caveats
/// No time limit: an interactive shell runs as long as the user wants;
/// wrap the call in `tokio::time::timeout` for a budget. The connection
/// itself is kept alive by kube's pings. A local stdin that never ends
/// (a terminal) does not hold the call: it returns when the command exits.
pub async fn exec(
    cluster: &Cluster,
    pod: &ExecPod,
    options: &ExecOptions,
    io: ExecIo<'_>,
) -> Result<i32, ExecError> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &pod.namespace);
    let params = AttachParams {
        container: Some(pod.container.clone()),
        stdin: io.stdin.is_some(),
        stdout: true,
        stderr: !options.tty,
        tty: options.tty,
        max_stdin_buf_size: Some(PIPE_BUF),
        max_stdout_buf_size: Some(PIPE_BUF),
        max_stderr_buf_size: Some(PIPE_BUF),
    };
    let mut process = api
        .exec(&pod.name, options.command.clone(), &params)
        .await
        .map_err(|source| ExecError::Start {
            pod: pod.name.clone(),
            container: pod.container.clone(),
            command: options.command.join(" "),
            source,
        })?;
    let (status, out, err) = stream(&mut process, io).await;
    if let Err(source) = process.join().await {
        return Err(ExecError::Stream {
            pod: pod.name.clone(),
            source: Box::new(source),
        });
    }
    let status = status.ok_or_else(|| ExecError::Closed {
        pod: pod.name.clone(),
    })?;
    let code = exit_code(&status).map_err(|(reason, message)| ExecError::Failed {
        pod: pod.name.clone(),
        reason,
        message,
    })?;
    out?;
    err?;
    Ok(code)
}

/// Connects `io` to the process's pipes until the message loop is over;
/// the Status (if one came) and how writing stdout and stderr went.
async fn stream(
    process: &mut AttachedProcess,
    io: ExecIo<'_>,
) -> (Option<Status>, Result<(), ExecError>, Result<(), ExecError>) {
    let status = process.take_status();
    let ExecIo {
        stdin,
        stdout,
        stderr,
        resize,
    } = io;
    // `ended` turns true when the message loop is over (the status came,
    // or the loop stopped without one); the pumps then read what is left
    // and stop, even when kube dropped its pipe ends without closing them.
    let (ended_tx, ended_rx) = tokio::sync::watch::channel(false);
    let status_watch = async move {
        let status = match status {
            Some(fut) => fut.await,
            None => None,
        };
        let _ = ended_tx.send(true);
        status
    };
    let out = pump(process.stdout(), Some(stdout), ended_rx.clone(), "stdout");
    let err = pump(process.stderr(), stderr, ended_rx, "stderr");
    let input = feed(stdin, process.stdin(), resize, process.terminal_size());
    let input = async move {
        input.await;
        std::future::pending::<std::convert::Infallible>().await
    };
    tokio::select! {
        r = async { tokio::join!(status_watch, out, err) } => r,
        never = input => match never {},
    }
}

/// Sends `stdin` (then its end) and the terminal sizes; returns when both
/// are done, which may be never (a terminal's stdin).
async fn feed(
    stdin: Option<Box<dyn AsyncRead + Unpin + Send + '_>>,
    remote_stdin: Option<WriteHalf<SimplexStream>>,
    resize: Option<Pin<Box<dyn Stream<Item = TerminalSize> + Send + '_>>>,
    resize_tx: Option<impl Sink<TerminalSize> + Unpin>,
) {
    let send_stdin = async move {
        if let (Some(mut local), Some(mut remote)) = (stdin, remote_stdin) {
            if let Err(e) = tokio::io::copy(&mut local, &mut remote).await {
                tracing::debug!("exec stdin ended: {e}");
            }
            let _ = remote.shutdown().await;
        }
    };
    let send_sizes = async move {
        if let (Some(mut sizes), Some(mut tx)) = (resize, resize_tx) {
            while let Some(size) = sizes.next().await {
                if tx.send(size).await.is_err() {
                    break;
                }
            }
        }
    };
    tokio::join!(send_stdin, send_sizes);
}

/// Copies `remote` into `local` until end of file, or until `ended` and
/// nothing more is buffered. A write error is returned at the end; the
/// rest is read and dropped so the remote side never blocks on us.
async fn pump<'a>(
    remote: Option<ReadHalf<SimplexStream>>,
    mut local: Option<Box<dyn AsyncWrite + Unpin + Send + 'a>>,
    mut ended: tokio::sync::watch::Receiver<bool>,
    stream: &'static str,
) -> Result<(), ExecError> {
    let Some(mut remote) = remote else {
        return Ok(());
    };
    let mut failed: Option<std::io::Error> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut is_ended = false;
    loop {
        let n = if is_ended {
            // Only what is already buffered: kube may have dropped its end
            // without closing it.
            match remote.read(&mut buf).now_or_never() {
                Some(Ok(n)) => n,
                Some(Err(_)) | None => 0,
            }
        } else {
            tokio::select! {
                biased;
                r = remote.read(&mut buf) => r.unwrap_or(0),
                _ = ended.wait_for(|e| *e) => {
                    is_ended = true;
                    continue;
                }
            }
        };
        if n == 0 {
            break;
        }
        if failed.is_none()
            && let Some(local) = local.as_mut()
            && let Err(e) = write_flush(local, &buf[..n]).await
        {
            failed = Some(e);
        }
    }
    match failed {
        Some(source) => Err(ExecError::Output { stream, source }),
        None => Ok(()),
    }
}

async fn write_flush(
    local: &mut (dyn AsyncWrite + Unpin + Send + '_),
    data: &[u8],
) -> std::io::Result<()> {
    local.write_all(data).await?;
    local.flush().await
}

/// Runs `argv` in `target`'s pod without a terminal, feeds it `stdin`
/// (when given; then closes it) and collects its output.
///
/// # Errors
/// What [`find_pod`] and [`exec`] return.
///
/// # Caveats
/// No time limit (wrap it in `tokio::time::timeout`); the output is held in
/// memory. With `stdin` given, an API server older than Kubernetes 1.30
/// (exec protocol v4) closes the connection at stdin's end, before the
/// exit status: [`ExecError::Closed`].
pub async fn exec_capture(
    cluster: &Cluster,
    target: &ExecTarget,
    argv: &[String],
    stdin: Option<&[u8]>,
) -> Result<Captured, ExecError> {
    let pod = find_pod(cluster, target).await?;
    capture_in(cluster, &pod, argv, stdin).await
}

/// As [`exec_capture`], in a pod already found.
///
/// # Errors
/// What [`exec`] returns.
///
/// # Caveats
/// As [`exec_capture`].
pub async fn capture_in(
    cluster: &Cluster,
    pod: &ExecPod,
    argv: &[String],
    stdin: Option<&[u8]>,
) -> Result<Captured, ExecError> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let io = ExecIo {
        stdin: stdin.map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
        stdout: Box::new(&mut stdout),
        stderr: Some(Box::new(&mut stderr)),
        resize: None,
    };
    let options = ExecOptions {
        command: argv.to_vec(),
        tty: false,
    };
    let code = exec(cluster, pod, &options, io).await?;
    Ok(Captured {
        code,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    use super::*;

    fn status(json: &str) -> Status {
        serde_json::from_str(json).expect("a Status")
    }

    #[test]
    fn success_is_zero_and_non_zero_exit_code_carries_the_code() {
        assert_eq!(exit_code(&status(r#"{"status":"Success"}"#)), Ok(0));
        let failed = Status {
            status: Some("Failure".to_owned()),
            reason: Some("NonZeroExitCode".to_owned()),
            message: Some("command terminated with non-zero exit code".to_owned()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".to_owned()),
                    message: Some("42".to_owned()),
                    field: None,
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        };
        assert_eq!(exit_code(&failed), Ok(42));
    }

    #[test]
    fn other_failures_keep_reason_and_message() {
        let s = status(
            r#"{"status":"Failure","reason":"InternalError","message":"executable file not found"}"#,
        );
        assert_eq!(
            exit_code(&s),
            Err((
                "InternalError".to_owned(),
                "executable file not found".to_owned()
            ))
        );
        // A NonZeroExitCode whose cause cannot be read is not an exit code.
        let s = status(r#"{"status":"Failure","reason":"NonZeroExitCode","message":"m"}"#);
        assert_eq!(
            exit_code(&s),
            Err(("NonZeroExitCode".to_owned(), "m".to_owned()))
        );
    }

    fn pod(name: &str, created: &str, ready: bool, terminating: bool) -> Pod {
        let mut json = serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if terminating {
            json["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:09Z");
        }
        serde_json::from_value(json).expect("a Pod")
    }

    #[test]
    fn picks_the_newest_ready_pod_that_is_not_terminating() {
        let pods = vec![
            pod("old", "2026-01-01T00:00:01Z", true, false),
            pod("gone", "2026-01-01T00:00:05Z", true, true),
            pod("new", "2026-01-01T00:00:03Z", true, false),
            pod("starting", "2026-01-01T00:00:04Z", false, false),
        ];
        let picked = pick_pod(pods).expect("a pod");
        assert_eq!(picked.metadata.name.as_deref(), Some("new"));
        let none = vec![
            pod("gone", "2026-01-01T00:00:05Z", true, true),
            pod("starting", "2026-01-01T00:00:04Z", false, false),
        ];
        assert_eq!(pick_pod(none).map(|p| p.metadata.name), Err(2));
    }

    #[test]
    fn a_running_pod_does_for_state_commands_ready_ones_first() {
        let running = |name: &str, created: &str, ready: bool, terminating: bool| {
            let mut p = pod(name, created, ready, terminating);
            if let Some(status) = p.status.as_mut() {
                status.phase = Some("Running".to_owned());
            }
            p
        };
        let booting = running("booting", "2026-01-01T00:00:05Z", false, false);
        let pending = pod("pending", "2026-01-01T00:00:06Z", false, false);
        let picked = pick_running_pod(vec![pending.clone(), booting.clone()]).expect("a pod");
        assert_eq!(picked.metadata.name.as_deref(), Some("booting"));
        let ready = running("ready", "2026-01-01T00:00:01Z", true, false);
        let gone = running("gone", "2026-01-01T00:00:09Z", true, true);
        let picked = pick_running_pod(vec![booting, gone.clone(), ready]).expect("a pod");
        assert_eq!(picked.metadata.name.as_deref(), Some("ready"));
        assert_eq!(
            pick_running_pod(vec![pending, gone]).map(|p| p.metadata.name),
            Err(2)
        );
    }
}
