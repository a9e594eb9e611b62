//! `fedilab exec` and `fedilab tootctl`: the instance looked up in the
//! lab's state, `fedilab_orchestrator::exec` called with this terminal's
//! streams, the remote exit code passed through. Raw mode and window
//! size of the local terminal live here; the exec protocol does not.

use std::io::IsTerminal as _;
use std::pin::Pin;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use fedilab_orchestrator::ExecTarget;
use fedilab_orchestrator::exec::{ExecIo, ExecOptions, TerminalSize, exec as run_exec, find_pod};
use fedilab_profile::names::Component;
use fedilab_profile::{InstanceName, LabName};
use fedilab_state::{LabDir, LabState, StoredKind};
use futures_util::Stream;

use crate::UsageError;
use crate::cli::KubeArgs;
use crate::common::{LabSelect, Threads, connect_checked, runtime};

/// The components `fedilab exec` can run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecComponent {
    /// Puma (Rails): `bin/rails`, `tootctl`.
    Web,
    /// Sidekiq.
    Sidekiq,
    /// The streaming server (Node).
    Streaming,
    /// PostgreSQL: `psql -U mastodon`.
    Postgres,
    /// Redis: `redis-cli`.
    Redis,
}

impl From<ExecComponent> for Component {
    fn from(c: ExecComponent) -> Component {
        match c {
            ExecComponent::Web => Component::Web,
            ExecComponent::Sidekiq => Component::Sidekiq,
            ExecComponent::Streaming => Component::Streaming,
            ExecComponent::Postgres => Component::Postgres,
            ExecComponent::Redis => Component::Redis,
        }
    }
}

/// Arguments of `fedilab exec`.
#[derive(Debug, Args)]
#[command(
    after_help = "Runs CMD in the Ready pod of the instance's component, like `kubectl exec`, \
with a terminal when stdin and stdout are terminals (Ctrl-C then goes to the command). \
Without CMD: a shell (/bin/bash; /bin/sh for postgres, redis and GoToSocial). The command's exit code \
becomes fedilab's (1 and 2 are also fedilab's own errors).\n\n\
Examples:\n  \
fedilab exec mastodon1                                  # a shell in mastodon1's web pod\n  \
fedilab exec mastodon1 -- bin/rails runner 'puts Account.count'\n  \
fedilab exec mastodon2 --component postgres -- psql -U mastodon mastodon\n  \
fedilab exec mastodon1 --component redis -- redis-cli info memory\n  \
echo 'ls /opt/mastodon' | fedilab exec mastodon1        # stdin is the shell's script"
)]
pub struct ExecArgs {
    /// The instance (such as mastodon1).
    #[arg(value_name = "INSTANCE")]
    pub instance: String,

    #[command(flatten)]
    pub lab: LabSelect,

    /// The component whose pod runs the command.
    #[arg(long, value_enum, default_value_t = ExecComponent::Web)]
    pub component: ExecComponent,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// The command and its arguments, after `--` (no shell involved).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Arguments of `fedilab tootctl`.
#[derive(Debug, Args)]
#[command(after_help = "Runs Mastodon's admin tool in the instance's web pod: \
`fedilab tootctl I ARGS` is `fedilab exec I -- tootctl ARGS`. Give --lab before ARGS; \
everything from the first of ARGS on goes to tootctl (`... tootctl mastodon1 accounts --help`).\n\n\
Examples:\n  \
fedilab tootctl mastodon1 accounts create alice --email alice@example.org --confirmed --approve\n  \
fedilab tootctl mastodon1 accounts modify alice --role Moderator\n  \
fedilab tootctl --lab exp mastodon2 domains purge spam.example\n  \
fedilab tootctl mastodon1 cache clear")]
pub struct TootctlArgs {
    /// The instance (a Mastodon instance of the lab).
    #[arg(value_name = "INSTANCE")]
    pub instance: String,

    #[command(flatten)]
    pub lab: LabSelect,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// tootctl's arguments (such as `accounts list`).
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    pub args: Vec<String>,
}

/// Runs `fedilab exec`.
///
/// # Errors
/// A [`UsageError`] for a lab without state here, an unknown instance or
/// one that is not in the cluster; otherwise what the cluster or the
/// connection failed with.
pub fn exec(args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let component = Component::from(args.component);
    let (target, kind) = target(&args.lab.lab, &args.instance, component, "fedilab exec")?;
    let command = if args.command.is_empty() {
        vec![default_shell(component, kind).to_owned()]
    } else {
        args.command.clone()
    };
    run_in_pod(&args.kube, &target, command)
}

/// Runs `fedilab tootctl`.
///
/// # Errors
/// As [`exec`].
pub fn tootctl(args: &TootctlArgs) -> anyhow::Result<ExitCode> {
    let (target, _) = target(&args.lab.lab, &args.instance, Component::Web, TOOTCTL)?;
    let command = std::iter::once("tootctl".to_owned())
        .chain(args.args.iter().cloned())
        .collect();
    run_in_pod(&args.kube, &target, command)
}

/// The shell when no command is given: the Mastodon and Misskey images
/// have bash; the Alpine-based PostgreSQL, Redis and GoToSocial images
/// only sh.
fn default_shell(component: Component, kind: StoredKind) -> &'static str {
    match (component, kind) {
        (Component::Postgres | Component::Redis, _) | (_, StoredKind::GoToSocial) => "/bin/sh",
        _ => "/bin/bash",
    }
}

/// What the tootctl shorthand calls itself in messages.
const TOOTCTL: &str = "tootctl";

/// The pod to run in, from the lab's state: only the instances fedilab
/// runs have pods.
fn target(
    lab: &LabName,
    instance: &str,
    component: Component,
    what: &str,
) -> anyhow::Result<(ExecTarget, StoredKind)> {
    let dir = LabDir::new(&crate::paths::data_dir()?, lab);
    let Some(state) = dir.load_state()? else {
        return Err(UsageError(format!(
            "lab {lab} has no state on this host ({} is missing); run `fedilab up --lab {lab}` first",
            dir.path().join("lab.json").display()
        ))
        .into());
    };
    let instance = pick_instance(&state, instance, what).map_err(UsageError)?;
    let kind = state
        .instance(instance.as_str())
        .map_or(StoredKind::Mastodon, |i| i.kind);
    let target = ExecTarget {
        lab: lab.clone(),
        instance,
        component,
        container: None,
    };
    Ok((target, kind))
}

/// `instance` when it runs in the cluster (and, for tootctl, is a
/// Mastodon), else what to say.
fn pick_instance(state: &LabState, instance: &str, what: &str) -> Result<InstanceName, String> {
    let lab = &state.lab;
    let Some(stored) = state.instance(instance) else {
        let known = state
            .instances
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "lab {lab} has no instance {instance:?}; it has: {known}"
        ));
    };
    let at = stored
        .upstreams
        .first()
        .map(|u| format!(", at {}", u.url))
        .unwrap_or_default();
    match stored.kind {
        StoredKind::Mastodon => Ok(stored.name.clone()),
        StoredKind::Misskey | StoredKind::GoToSocial if what != TOOTCTL => Ok(stored.name.clone()),
        StoredKind::Misskey | StoredKind::GoToSocial => Err(format!(
            "{instance} runs {}, not Mastodon: tootctl is Mastodon's; use `fedilab exec \
             {instance} -- COMMAND` for the server's own tools",
            stored.kind.as_str()
        )),
        StoredKind::External => Err(format!(
            "{instance} is an external server of lab {lab} (`kind: external`{at}), not a pod \
             in the cluster: {what} runs only in the instances fedilab runs; run the command \
             where that server runs"
        )),
        StoredKind::Attached => Err(format!(
            "{instance} is a server on this host attached to lab {lab} (`fedilab attach`{at}), \
             not a pod in the cluster: {what} runs only in the instances fedilab runs; run \
             the command where that server runs"
        )),
    }
}

/// Connects, finds the pod and runs `command` with this process's
/// streams; a terminal when stdin and stdout are both terminals.
fn run_in_pod(
    kube: &KubeArgs,
    target: &ExecTarget,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let rt = runtime(Threads::One)?;
    let result = rt.block_on(async {
        let cluster = connect_checked(kube).await?;
        let pod = find_pod(&cluster, target).await?;
        tracing::info!("exec in pod {} (container {})", pod.name, pod.container);
        // Restored when this block ends, before any error is printed.
        let _raw = if tty { Some(RawMode::enter()?) } else { None };
        let io = ExecIo {
            stdin: Some(Box::new(tokio::io::stdin())),
            stdout: Box::new(tokio::io::stdout()),
            stderr: Some(Box::new(tokio::io::stderr())),
            resize: if tty { window_sizes() } else { None },
        };
        let options = ExecOptions { command, tty };
        anyhow::Ok(run_exec(&cluster, &pod, &options, io).await?)
    });
    // A read of this terminal may still block in its thread: do not wait.
    rt.shutdown_background();
    let code = result?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// This terminal in raw mode (keys go to the remote terminal as typed,
/// Ctrl-C included) until dropped.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> std::io::Result<RawMode> {
        use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// This terminal's size now, then after each SIGWINCH.
fn window_sizes() -> Option<Pin<Box<dyn Stream<Item = TerminalSize> + Send>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = signal(SignalKind::window_change()).ok()?;
    let size = || {
        rustix::termios::tcgetwinsize(std::io::stdout())
            .ok()
            .map(|w| TerminalSize {
                width: w.ws_col,
                height: w.ws_row,
            })
    };
    let sizes =
        futures_util::stream::unfold((signals, true), move |(mut signals, first)| async move {
            if !first {
                signals.recv().await?;
            }
            let current = size().unwrap_or(TerminalSize {
                width: 80,
                height: 24,
            });
            Some((current, (signals, false)))
        });
    Some(Box::pin(sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LabState {
        serde_json::from_str(
            r#"{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
                "instances":[
                  {"name":"mastodon1","host":"mastodon1.fediverse.local",
                   "url":"https://mastodon1.fediverse.local/"},
                  {"name":"gts","host":"gts.fediverse.local","url":"https://gts.fediverse.local/",
                   "kind":"external","upstreams":[{"path_prefix":"/","url":"http://10.0.0.5:8080/"}]},
                  {"name":"mine","host":"mine.fediverse.local","url":"https://mine.fediverse.local/",
                   "kind":"attached","upstreams":[{"path_prefix":"/","url":"http://127.0.0.1:3000/"}]}]}"#,
        )
        .expect("state")
    }

    #[test]
    fn only_mastodon_instances_have_pods() {
        let state = state();
        assert_eq!(
            pick_instance(&state, "mastodon1", "tootctl").map(|n| n.to_string()),
            Ok("mastodon1".to_owned())
        );
        let err = pick_instance(&state, "gts", "tootctl").expect_err("external");
        assert!(err.contains("external server of lab main"), "{err}");
        assert!(
            err.contains("(`kind: external`, at http://10.0.0.5:8080)"),
            "{err}"
        );
        let err = pick_instance(&state, "mine", "fedilab exec").expect_err("attached");
        assert!(
            err.contains("attached to lab main (`fedilab attach`"),
            "{err}"
        );
        let err = pick_instance(&state, "mastodon9", "tootctl").expect_err("unknown");
        assert_eq!(
            err,
            "lab main has no instance \"mastodon9\"; it has: mastodon1, gts, mine"
        );
    }

    #[test]
    fn the_default_shell_fits_the_image() {
        assert_eq!(
            default_shell(Component::Web, StoredKind::Mastodon),
            "/bin/bash"
        );
        assert_eq!(
            default_shell(Component::Web, StoredKind::GoToSocial),
            "/bin/sh"
        );
        assert_eq!(
            default_shell(Component::Redis, StoredKind::Mastodon),
            "/bin/sh"
        );
    }
}
