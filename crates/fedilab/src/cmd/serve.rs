//! `fedilab serve`: the lab's DNS and inspector in one foreground process,
//! from the lab state `up` wrote. The logic is `fedilab-serve`'s; this
//! module resolves the lab dir, runs it, and builds the command line that
//! `up` hands to `fedilab_serve::daemon::start`.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use fedilab_orchestrator::LabDir;
use fedilab_profile::{DEFAULT_LAB_NAME, LabName};
use fedilab_serve::ServeCommand;

use crate::UsageError;

/// The long help of `fedilab serve`.
pub const LONG_ABOUT: &str = "Run the lab's host side in the foreground: its authoritative DNS and the \
inspector (recording proxy, live UI and JSON API), in one process.\n\n\
It reads the lab state that `fedilab up` writes (<data dir>/labs/<lab>/lab.json) and \
listens where that state says: the DNS on loopback (UDP and TCP; systemd-resolved sends \
the lab domain there), the proxy on the node address (Traefik forwards each instance's \
traffic to it), the UI on loopback. Every lab name, attached servers included, answers \
with the node address.\n\n\
`fedilab up` starts it for you in the background (a systemd user unit \
fedilab-serve-<lab>, or a detached process logging to <lab dir>/serve.log) and \
`fedilab down` stops it; `fedilab status` shows whether it runs and where. Run it by \
hand to debug: the log goes to the terminal (FEDILAB_LOG=debug for more).\n\n\
While it runs, <lab dir>/serve.json holds its pid and the addresses it bound. SIGHUP \
re-reads lab.json and swaps the zone and the routes (recordings stay); SIGTERM or \
Ctrl-C stops it. Recordings persist in <lab dir>/exchanges.jsonl across restarts.";

/// Arguments of `fedilab serve`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
fedilab serve                        # lab main, in the foreground\n  \
fedilab serve --lab exp\n  \
journalctl --user -u fedilab-serve-main -f    # its log when up started it with systemd\n  \
tail -f ~/.local/share/fedilab/labs/main/serve.log   # ... as a detached process\n  \
kill -HUP $(jq .pid ~/.local/share/fedilab/labs/main/serve.json)   # reload")]
pub struct ServeArgs {
    /// The lab (default main).
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
}

/// The lab dir of `lab` (default `main`) under the data dir.
///
/// # Errors
/// A [`UsageError`] for an invalid lab name; others when there is no data
/// dir.
pub fn lab_dir(lab: Option<&str>) -> anyhow::Result<LabDir> {
    let name: LabName = lab
        .unwrap_or(DEFAULT_LAB_NAME)
        .parse()
        .map_err(|e| UsageError(format!("--lab: {e}")))?;
    Ok(LabDir::new(&crate::paths::data_dir()?, &name))
}

/// The command that runs `fedilab serve --lab LAB` with this executable and
/// this data dir: what `up` passes to `fedilab_serve::daemon::start`.
///
/// # Errors
/// When the running executable cannot be found.
pub fn serve_command(lab: &str, data_dir: &Path) -> anyhow::Result<ServeCommand> {
    let program = std::env::current_exe().context("cannot find the fedilab executable")?;
    Ok(ServeCommand {
        program,
        args: ["serve", "--lab", lab]
            .into_iter()
            .map(OsString::from)
            .collect(),
        env: vec![(
            OsString::from("FEDILAB_DATA_DIR"),
            data_dir.as_os_str().to_owned(),
        )],
    })
}

/// Runs the lab's DNS and inspector until SIGTERM or Ctrl-C.
///
/// # Errors
/// Whatever `fedilab_serve::run` fails with (no state, an address in use,
/// another serve running), with what to do next.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let dir = lab_dir(args.lab.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(fedilab_serve::run(&dir))?;
    Ok(ExitCode::SUCCESS)
}
