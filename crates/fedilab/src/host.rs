//! Glue between the lab commands and the lab's host side (`fedilab serve`,
//! run by `fedilab_serve::daemon`): start it or make it re-read the lab
//! state, and say where it listens.

use std::path::Path;

use fedilab_orchestrator::LabDir;
use fedilab_profile::LabName;
use fedilab_serve::daemon::{self, DaemonError, Launch, ServeStatus};

/// How `up` and `attach` start `serve`: `FEDILAB_SERVE_LAUNCH` set to
/// `systemd` or `process` forces one; anything else (or nothing) lets the
/// daemon pick systemd when a user manager answers.
pub fn launch() -> Launch {
    match std::env::var("FEDILAB_SERVE_LAUNCH").as_deref() {
        Ok("systemd") => Launch::Systemd,
        Ok("process") => Launch::Process,
        _ => Launch::Auto,
    }
}

/// Makes the lab's `serve` run with the saved state: reloads it when it
/// runs, starts it otherwise (also after a stale pid file). Returns a line
/// that says where it listens.
///
/// # Errors
/// When it cannot be started or refuses the new state (the error carries
/// the end of its log).
pub fn refresh_serve(dir: &LabDir, lab: &LabName, data_dir: &Path) -> anyhow::Result<String> {
    let wanted = dir.load_state()?.and_then(|s| s.serve);
    let status = match daemon::status(dir) {
        // A reload keeps the sockets; new addresses need a new process.
        ServeStatus::Running { addresses, .. }
            if wanted.as_ref().is_some_and(|w| !addresses.satisfy(w)) =>
        {
            daemon::stop(dir)?;
            start(dir, lab, data_dir)?
        }
        ServeStatus::Running { .. } | ServeStatus::Starting { .. } => match daemon::reload(dir) {
            Ok(_) => daemon::status(dir),
            Err(DaemonError::NotRunning) => start(dir, lab, data_dir)?,
            Err(e) => return Err(e.into()),
        },
        ServeStatus::Stopped | ServeStatus::Stale { .. } => start(dir, lab, data_dir)?,
    };
    Ok(describe(&status, lab))
}

fn start(dir: &LabDir, lab: &LabName, data_dir: &Path) -> anyhow::Result<ServeStatus> {
    let command = crate::cmd::serve::serve_command(lab.as_str(), data_dir)?;
    Ok(daemon::start(dir, &command, launch())?)
}

/// One line on the lab's `serve`: how it runs and where it listens, or
/// that it does not run and what to do.
pub fn describe(status: &ServeStatus, lab: &LabName) -> String {
    match status {
        ServeStatus::Running {
            pid,
            addresses,
            how,
            ..
        } => {
            let mut line = format!(
                "fedilab serve runs ({how}, pid {pid}): DNS {}",
                addresses.dns
            );
            if let Some(proxy) = addresses.proxy {
                line.push_str(&format!(", proxy {proxy}"));
            }
            if let Some(ui) = addresses.ui {
                line.push_str(&format!(", inspector UI http://{ui}/"));
            }
            line
        }
        ServeStatus::Starting { pid } => format!("fedilab serve is starting (pid {pid})"),
        ServeStatus::Stopped => format!(
            "fedilab serve is not running: host DNS and the inspector are down; \
             `fedilab up --lab {lab}` starts it, `fedilab serve --lab {lab}` runs it in a terminal"
        ),
        ServeStatus::Stale { pid } => format!(
            "fedilab serve is not running (it was pid {pid}): host DNS and the inspector are down; \
             `fedilab up --lab {lab}` starts it again"
        ),
    }
}
