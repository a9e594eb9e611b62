//! `fedilab serve`: the lab's DNS and inspector in one foreground process,
//! from the lab state `up` wrote. The logic is `fedilab-serve`'s; this
//! module resolves the lab dir and runs it (`crate::common::serve_start`
//! builds the command line `up` starts it with).

use std::process::ExitCode;

use clap::Args;
use fedilab_state::LabDir;

use crate::common::{LabSelect, Threads, runtime};

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
    #[command(flatten)]
    pub lab: LabSelect,
}

/// Runs the lab's DNS and inspector until SIGTERM or Ctrl-C.
///
/// # Errors
/// Whatever `fedilab_serve::run` fails with (no state, an address in use,
/// another serve running), with what to do next.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let dir = LabDir::new(&crate::paths::data_dir()?, &args.lab.lab);
    runtime(Threads::PerCore)?.block_on(fedilab_serve::run(&dir))?;
    Ok(ExitCode::SUCCESS)
}
