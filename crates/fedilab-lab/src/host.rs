//! The lab's host side (`fedilab serve`): what the life cycle asks of it
//! ([`HostSide`]: run with the saved state, stop), and the real one,
//! [`Daemon`], run by `fedilab_serve::daemon`. Tests of the life cycle
//! give their own [`HostSide`] and see when it is asked and with which
//! saved state.

use fedilab_serve::ServeCommand;
use fedilab_serve::daemon::{self, DaemonError, Launch, ServeStatus, StopOutcome};
use fedilab_state::LabDir;

/// The host side of a lab, as the life cycle drives it.
pub trait HostSide: Sync {
    /// Makes it run with the state saved in `dir` (start, reload or
    /// restart) and says how it runs.
    ///
    /// # Errors
    /// [`DaemonError`] when it cannot be started or refuses the state.
    fn refresh(&self, dir: &LabDir) -> Result<ServeStatus, DaemonError>;

    /// Stops it.
    ///
    /// # Errors
    /// [`DaemonError`] when it cannot be stopped.
    fn stop(&self, dir: &LabDir) -> Result<StopOutcome, DaemonError>;
}

/// `fedilab serve` as a background process or systemd user unit.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// The command that runs `serve` for this lab (the caller's own
    /// executable, which knows its flags).
    pub command: ServeCommand,
    /// systemd user unit, detached process, or whichever works.
    pub launch: Launch,
}

impl HostSide for Daemon {
    /// Reloads it when it runs, restarts it when the wanted addresses
    /// changed (a reload keeps the sockets), starts it otherwise (also
    /// after a stale pid file).
    fn refresh(&self, dir: &LabDir) -> Result<ServeStatus, DaemonError> {
        let wanted = dir.load_state().ok().flatten().and_then(|s| s.serve);
        let launch = || daemon::start(dir, &self.command, self.launch);
        match daemon::status(dir) {
            ServeStatus::Running { addresses, .. }
                if wanted.as_ref().is_some_and(|w| !addresses.satisfy(w)) =>
            {
                daemon::stop(dir)?;
                launch()
            }
            ServeStatus::Running { .. } | ServeStatus::Starting { .. } => {
                match daemon::reload(dir) {
                    Ok(_) => Ok(daemon::status(dir)),
                    Err(DaemonError::NotRunning) => launch(),
                    Err(e) => Err(e),
                }
            }
            ServeStatus::Stopped | ServeStatus::Stale { .. } => launch(),
        }
    }

    fn stop(&self, dir: &LabDir) -> Result<StopOutcome, DaemonError> {
        daemon::stop(dir)
    }
}
