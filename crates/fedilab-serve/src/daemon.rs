//! `fedilab serve` in the background, for `up`, `status`, `down` and
//! `attach`: [`start`] (a transient systemd user unit, or a detached
//! process with a pid file and a log file), [`status`], [`stop`] and
//! [`reload`].
//!
//! A pid is only ever signalled after `/proc/PID/cmdline` shows it is a
//! `fedilab serve` for this lab (and, where `serve.json` recorded it, its
//! start time matches): a stale pid file naming a reused pid never harms
//! the unrelated process. Linux only (`/proc`).
//!
//! Synchronous: every wait is bounded and polls files every 50 ms.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fedilab_state::LabDir;
use rustix::process::{Pid, Signal, kill_process};

use crate::runtime::{
    self, LOG_FILE, PID_FILE, RUNTIME_FILE, RuntimeInfo, ServeAddresses, UNIT_ENV,
};

/// How long [`start`] waits for `serve.json`, and [`stop`] for the process
/// to exit after SIGTERM (then SIGKILL).
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
/// The log is moved to `serve.log.1` at start when larger than this.
const LOG_ROTATE_BYTES: u64 = 4 * 1024 * 1024;
/// Lines of the log an error shows.
const LOG_TAIL_LINES: usize = 20;

/// How [`start`] runs `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Launch {
    /// A systemd user unit when `systemd-run --user` can reach a user
    /// manager, else a detached process.
    #[default]
    Auto,
    /// A transient systemd user unit, `fedilab-serve-<lab>`.
    Systemd,
    /// A detached process (own process group, stdin null, output appended
    /// to `serve.log`, pid in `serve.pid`).
    Process,
}

/// The command that runs `fedilab serve` for a lab: program, arguments and
/// extra environment (the data dir, when it is not the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeCommand {
    /// The `fedilab` executable.
    pub program: PathBuf,
    /// `serve --lab NAME`, plus any global flags.
    pub args: Vec<OsString>,
    /// Variables to set (systemd's user manager does not inherit the
    /// caller's environment).
    pub env: Vec<(OsString, OsString)>,
}

/// How a running `serve` was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// In a systemd user unit.
    Systemd {
        /// The unit, `fedilab-serve-<lab>`.
        unit: String,
    },
    /// As a detached process ([`Launch::Process`]).
    Process,
    /// By hand, in a terminal (no pid file, no unit).
    Foreground,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Systemd { unit } => write!(f, "systemd user unit {unit}"),
            How::Process => f.write_str("detached process"),
            How::Foreground => f.write_str("foreground process"),
        }
    }
}

/// Whether a lab's `serve` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeStatus {
    /// It runs and listens on `addresses`.
    Running {
        /// Its pid.
        pid: u32,
        /// Where it listens.
        addresses: ServeAddresses,
        /// How it was started.
        how: How,
        /// The whole `serve.json`.
        info: Box<RuntimeInfo>,
    },
    /// Its process runs (pid file) but has not written `serve.json` yet.
    Starting {
        /// Its pid.
        pid: u32,
    },
    /// Nothing runs and no file says otherwise.
    Stopped,
    /// `serve.pid` or `serve.json` names a pid that is dead or not a
    /// `fedilab serve` for this lab; [`stop`] and [`start`] remove the
    /// files (and never signal that pid).
    Stale {
        /// The pid the files name.
        pid: u32,
    },
}

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Stopped the process `pid`.
    Stopped {
        /// Its pid.
        pid: u32,
        /// Whether it took SIGKILL.
        killed: bool,
    },
    /// Nothing ran.
    NotRunning,
    /// Removed files naming `pid`, which was not a running `serve`.
    RemovedStale {
        /// The pid.
        pid: u32,
    },
}

/// Why a daemon operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The lab has no state directory.
    #[error("no lab state in {0}; run `fedilab up` first")]
    NoLab(PathBuf),
    /// `serve` already runs for the lab.
    #[error("fedilab serve already runs for this lab (pid {pid})")]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
    },
    /// `serve` does not run, so there is nothing to reload.
    #[error("fedilab serve does not run for this lab; `fedilab up` starts it")]
    NotRunning,
    /// [`Launch::Systemd`] without a reachable user manager.
    #[error(
        "no systemd user manager is reachable (`systemctl --user` fails); \
         start it as a detached process instead"
    )]
    NoSystemd,
    /// A file in the lab dir could not be used.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be run.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `systemd-run` failed.
    #[error("systemd-run could not start {unit}: {message}")]
    Systemd {
        /// The unit.
        unit: String,
        /// Its stderr.
        message: String,
    },
    /// `serve` exited (or its unit failed) before it was serving.
    #[error("fedilab serve stopped before it was serving ({why}){log}")]
    Exited {
        /// Its exit status or unit state.
        why: String,
        /// The end of its log, or where to find it.
        log: String,
    },
    /// `serve` did not write `serve.json` in time (it was stopped).
    #[error("fedilab serve did not start serving within {limit:?}{log}")]
    Timeout {
        /// The limit.
        limit: Duration,
        /// The end of its log, or where to find it.
        log: String,
    },
    /// A signal could not be sent.
    #[error("cannot signal pid {pid}")]
    Signal {
        /// The pid.
        pid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The process outlived SIGTERM and SIGKILL.
    #[error("fedilab serve (pid {pid}) does not stop, even after SIGKILL")]
    StillRunning {
        /// The pid.
        pid: u32,
    },
    /// The reload ran and failed; the previous zone and routes stay.
    #[error("fedilab serve could not reload, and still serves the previous state: {0}")]
    ReloadFailed(String),
    /// The reload did not finish in time.
    #[error("fedilab serve (pid {pid}) did not finish reloading within {limit:?}")]
    ReloadTimeout {
        /// The pid.
        pid: u32,
        /// The limit.
        limit: Duration,
    },
}

/// The systemd unit of a lab's `serve`: `fedilab-serve-<lab>`.
pub fn unit_name(lab: &str) -> String {
    format!("fedilab-serve-{lab}")
}

/// Whether a systemd user manager answers (`systemctl --user
/// show-environment` succeeds) and `systemd-run` exists.
pub fn systemd_available() -> bool {
    let quiet = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    quiet("systemctl", &["--user", "show-environment"]) && quiet("systemd-run", &["--version"])
}

/// The state of the lab's `serve`, from `serve.json`, `serve.pid` and
/// `/proc`. Never signals anything.
pub fn status(lab_dir: &LabDir) -> ServeStatus {
    let dir = lab_dir.path();
    let lab = runtime::lab_of(dir);
    let info = runtime::read_runtime(dir);
    let pid_file = runtime::read_pid_file(dir);
    if let Some(info) = &info
        && runtime::is_serve_process(info.pid, &lab, info.proc_start)
    {
        let how = match (&info.unit, pid_file) {
            (Some(unit), _) => How::Systemd { unit: unit.clone() },
            (None, Some(p)) if p == info.pid => How::Process,
            (None, _) => How::Foreground,
        };
        return ServeStatus::Running {
            pid: info.pid,
            addresses: info.addresses,
            how,
            info: Box::new(info.clone()),
        };
    }
    if let Some(pid) = pid_file {
        if runtime::is_serve_process(pid, &lab, None) {
            return ServeStatus::Starting { pid };
        }
        return ServeStatus::Stale { pid };
    }
    match info {
        Some(info) => ServeStatus::Stale { pid: info.pid },
        None => ServeStatus::Stopped,
    }
}

/// Starts `command` (normally `fedilab serve --lab <lab>`) in the
/// background and waits until it serves (`serve.json` names its pid).
/// Stale pid and runtime files are removed first, without signalling the
/// pid they name.
///
/// # Errors
/// [`DaemonError::AlreadyRunning`] when `serve` runs for the lab (reload
/// it instead); [`DaemonError::Exited`] or [`DaemonError::Timeout`] with
/// the end of `serve.log` (or a `journalctl` command for systemd) when it
/// does not come up within [`WAIT_LIMIT`]; others when the files or the
/// program cannot be used.
///
/// # Caveats
/// Blocks for up to [`WAIT_LIMIT`].
pub fn start(
    lab_dir: &LabDir,
    command: &ServeCommand,
    launch: Launch,
) -> Result<ServeStatus, DaemonError> {
    let dir = lab_dir.path();
    if !dir.is_dir() {
        return Err(DaemonError::NoLab(dir.to_owned()));
    }
    match status(lab_dir) {
        ServeStatus::Running { pid, .. } | ServeStatus::Starting { pid } => {
            return Err(DaemonError::AlreadyRunning { pid });
        }
        ServeStatus::Stale { pid } => {
            tracing::info!(
                pid,
                "removing stale serve files (pid {pid} is not a serve of this lab)"
            );
        }
        ServeStatus::Stopped => {}
    }
    remove_files(dir)?;
    let systemd = match launch {
        Launch::Process => false,
        Launch::Systemd => {
            if !systemd_available() {
                return Err(DaemonError::NoSystemd);
            }
            true
        }
        Launch::Auto => systemd_available(),
    };
    if systemd {
        start_systemd(lab_dir, command)
    } else {
        start_process(lab_dir, command)
    }
}

fn start_process(lab_dir: &LabDir, command: &ServeCommand) -> Result<ServeStatus, DaemonError> {
    let dir = lab_dir.path();
    let log_path = dir.join(LOG_FILE);
    rotate_log(&log_path);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io_error("open", &log_path))?;
    let log_err = log.try_clone().map_err(io_error("open", &log_path))?;
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .env("NO_COLOR", "1")
        .env_remove(UNIT_ENV)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: Ctrl-C in the caller's terminal does not
        // reach it, and it outlives the caller.
        .process_group(0)
        .spawn()
        .map_err(|source| DaemonError::Spawn {
            program: command.program.display().to_string(),
            source,
        })?;
    let pid = child.id();
    let pid_path = dir.join(PID_FILE);
    if let Err(source) = runtime::write_atomic(&pid_path, format!("{pid}\n").as_bytes()) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(DaemonError::Io {
            action: "write",
            path: pid_path,
            source,
        });
    }
    // Reap it when it exits, so it never lingers as a zombie of a
    // long-lived caller; the channel tells the wait below it has exited.
    let (exited_tx, exited) = mpsc::channel::<std::io::Result<ExitStatus>>();
    std::thread::spawn(move || {
        let _ = exited_tx.send(child.wait());
    });

    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(info) = runtime::read_runtime(dir)
            && info.pid == pid
        {
            return Ok(status(lab_dir));
        }
        if let Ok(result) = exited.try_recv() {
            let _ = runtime::remove_if_present(&pid_path);
            return Err(DaemonError::Exited {
                why: match result {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                },
                log: log_tail(&log_path),
            });
        }
        if Instant::now() >= deadline {
            let _ = send(pid, Signal::KILL);
            let _ = exited.recv_timeout(WAIT_LIMIT);
            let _ = remove_files(dir);
            return Err(DaemonError::Timeout {
                limit: WAIT_LIMIT,
                log: log_tail(&log_path),
            });
        }
        std::thread::sleep(POLL);
    }
}

fn start_systemd(lab_dir: &LabDir, command: &ServeCommand) -> Result<ServeStatus, DaemonError> {
    let dir = lab_dir.path();
    let unit = unit_name(&runtime::lab_of(dir));
    // A unit left over from a serve that is not healthy (status said so).
    for verb in ["stop", "reset-failed"] {
        let _ = Command::new("systemctl")
            .args(["--user", verb, &unit])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let mut run = Command::new("systemd-run");
    run.args(["--user", "--quiet", "--collect"])
        .arg(format!("--unit={unit}"))
        .arg(format!(
            "--description=fedilab serve: DNS and inspector of lab {}",
            runtime::lab_of(dir)
        ))
        .args([
            "--property=Type=exec",
            "--property=Restart=on-failure",
            "--property=RestartSec=2s",
            "--property=KillSignal=SIGTERM",
            "--property=TimeoutStopSec=10s",
        ])
        .arg(format!("--setenv={UNIT_ENV}={unit}"))
        .arg("--setenv=NO_COLOR=1");
    for (k, v) in &command.env {
        let mut set = OsString::from("--setenv=");
        set.push(k);
        set.push("=");
        set.push(v);
        run.arg(set);
    }
    run.arg("--").arg(&command.program).args(&command.args);
    let out = run
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DaemonError::Spawn {
            program: "systemd-run".to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(DaemonError::Systemd {
            unit,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let hint = format!("\nsee its log: journalctl --user -u {unit} -n 50");
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut checked = Instant::now();
    loop {
        if let ServeStatus::Running { .. } = status(lab_dir)
            && runtime::read_runtime(dir).is_some_and(|i| i.unit.as_deref() == Some(&unit))
        {
            return Ok(status(lab_dir));
        }
        if checked.elapsed() >= Duration::from_millis(500) {
            checked = Instant::now();
            let state = unit_state(&unit);
            if matches!(state.as_str(), "failed" | "inactive") {
                return Err(DaemonError::Exited {
                    why: format!("unit {unit} is {state}"),
                    log: hint,
                });
            }
        }
        if Instant::now() >= deadline {
            let _ = Command::new("systemctl")
                .args(["--user", "stop", &unit])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            return Err(DaemonError::Timeout {
                limit: WAIT_LIMIT,
                log: hint,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// `systemctl --user is-active UNIT`'s answer.
fn unit_state(unit: &str) -> String {
    Command::new("systemctl")
        .args(["--user", "is-active", unit])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Stops the lab's `serve`: `systemctl --user stop` for a unit, else
/// SIGTERM, then SIGKILL after [`WAIT_LIMIT`]; removes `serve.pid` and
/// `serve.json`. Stale files are removed without signalling their pid.
///
/// # Errors
/// [`DaemonError::Signal`] or [`DaemonError::StillRunning`] when the
/// process cannot be stopped, [`DaemonError::Io`] when the files cannot be
/// removed.
///
/// # Caveats
/// Blocks for up to twice [`WAIT_LIMIT`].
pub fn stop(lab_dir: &LabDir) -> Result<StopOutcome, DaemonError> {
    let dir = lab_dir.path();
    let lab = runtime::lab_of(dir);
    let (pid, how, proc_start) = match status(lab_dir) {
        ServeStatus::Stopped => return Ok(StopOutcome::NotRunning),
        ServeStatus::Stale { pid } => {
            remove_files(dir)?;
            return Ok(StopOutcome::RemovedStale { pid });
        }
        ServeStatus::Starting { pid } => (pid, How::Process, None),
        ServeStatus::Running { pid, how, info, .. } => (pid, how, info.proc_start),
    };
    let alive = || runtime::is_serve_process(pid, &lab, proc_start);
    let mut signalled = false;
    if let How::Systemd { unit } = &how {
        // Waits for the unit to stop (TimeoutStopSec, then SIGKILL).
        signalled = Command::new("systemctl")
            .args(["--user", "stop", unit])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    }
    if !signalled && alive() {
        send(pid, Signal::TERM)?;
    }
    let mut killed = false;
    if !wait_until(WAIT_LIMIT, || !alive()) {
        if alive() {
            send(pid, Signal::KILL)?;
            killed = true;
        }
        if !wait_until(WAIT_LIMIT, || !alive()) {
            return Err(DaemonError::StillRunning { pid });
        }
    }
    remove_files(dir)?;
    Ok(StopOutcome::Stopped { pid, killed })
}

/// Makes the running `serve` re-read `lab.json` (SIGHUP) and waits until it
/// has: its DNS answers the new names and its proxy routes the new
/// upstreams when this returns.
///
/// # Errors
/// [`DaemonError::NotRunning`]; [`DaemonError::ReloadFailed`] with serve's
/// reason (the old zone and routes stay); [`DaemonError::ReloadTimeout`].
///
/// # Caveats
/// Blocks for up to [`WAIT_LIMIT`].
pub fn reload(lab_dir: &LabDir) -> Result<RuntimeInfo, DaemonError> {
    let ServeStatus::Running { pid, info, .. } = status(lab_dir) else {
        return Err(DaemonError::NotRunning);
    };
    send(pid, Signal::HUP)?;
    let dir = lab_dir.path();
    let mut after = None;
    let done = wait_until(WAIT_LIMIT, || {
        after =
            runtime::read_runtime(dir).filter(|i| i.pid == pid && i.generation > info.generation);
        after.is_some()
    });
    match after {
        Some(info) if done => match &info.last_reload_error {
            Some(e) => Err(DaemonError::ReloadFailed(e.clone())),
            None => Ok(info),
        },
        _ => Err(DaemonError::ReloadTimeout {
            pid,
            limit: WAIT_LIMIT,
        }),
    }
}

fn send(pid: u32, signal: Signal) -> Result<(), DaemonError> {
    let raw = i32::try_from(pid).ok().and_then(Pid::from_raw);
    let Some(p) = raw else {
        return Err(DaemonError::Signal {
            pid,
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    };
    match kill_process(p, signal) {
        Ok(()) => Ok(()),
        // Gone already: what we wanted.
        Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
        Err(e) => Err(DaemonError::Signal {
            pid,
            source: e.into(),
        }),
    }
}

/// Polls `done` every 50 ms for up to `limit`; whether it became true.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

fn remove_files(dir: &Path) -> Result<(), DaemonError> {
    for name in [PID_FILE, RUNTIME_FILE] {
        let path = dir.join(name);
        runtime::remove_if_present(&path).map_err(io_error("remove", &path))?;
    }
    Ok(())
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_owned();
    move |source| DaemonError::Io {
        action,
        path,
        source,
    }
}

fn rotate_log(path: &Path) {
    if fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        let _ = fs::rename(path, PathBuf::from(old));
    }
}

/// The last lines of the log, as "\n--- end of PATH ---\n...".
fn log_tail(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("\n(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    format!("\n--- last lines of {} ---\n{tail}", path.display())
}
