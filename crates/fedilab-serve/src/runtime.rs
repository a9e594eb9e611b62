//! The files a running `fedilab serve` leaves in the lab dir, and how to
//! tell whether a pid is that process:
//!
//! ```text
//! serve.json       0600  written by `serve` once it listens: pid, the bound
//!                        addresses, start time, reload generation; removed
//!                        when it stops
//! serve.pid        0600  written by `daemon::start` (detached process only)
//! serve.log        0600  stdout and stderr of the detached process
//! exchanges.jsonl  0600  the inspector's recordings, kept across restarts
//! ```
//!
//! Identity checks read `/proc/PID/cmdline` and `/proc/PID/stat` (Linux).

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `serve.json`.
pub const RUNTIME_FILE: &str = "serve.json";
/// `serve.pid`.
pub const PID_FILE: &str = "serve.pid";
/// `serve.log`.
pub const LOG_FILE: &str = "serve.log";
/// `exchanges.jsonl`.
pub const EXCHANGES_FILE: &str = "exchanges.jsonl";
/// The environment variable through which `daemon::start` tells a `serve`
/// started by systemd its unit name (recorded in `serve.json`).
pub const UNIT_ENV: &str = "FEDILAB_SERVE_UNIT";

/// What a running `fedilab serve` wrote to `serve.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// Its process id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (field 22 of
    /// `/proc/PID/stat`): with the pid, names the process even after the
    /// pid is reused.
    #[serde(default)]
    pub proc_start: Option<u64>,
    /// The lab.
    pub lab: String,
    /// The addresses it actually bound.
    pub addresses: ServeAddresses,
    /// When it started (RFC 3339).
    pub started: String,
    /// The systemd unit it runs in, when `daemon::start` used systemd.
    #[serde(default)]
    pub unit: Option<String>,
    /// How many SIGHUP reloads it has finished (successful or not).
    #[serde(default)]
    pub generation: u64,
    /// Why the last reload failed, if it did (the previous zone and routes
    /// stay in effect).
    #[serde(default)]
    pub last_reload_error: Option<String>,
}

/// Where a running `serve` listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeAddresses {
    /// The DNS, UDP and TCP.
    pub dns: SocketAddr,
    /// The inspector's proxy, if it runs.
    pub proxy: Option<SocketAddr>,
    /// The inspector's UI and API, if they run.
    pub ui: Option<SocketAddr>,
}

impl ServeAddresses {
    /// Whether these bound addresses are what `wanted` asks for (port 0
    /// asks for any). A reload keeps the sockets, so addresses that differ
    /// need a new process.
    pub fn satisfy(&self, wanted: &fedilab_state::ServeSettings) -> bool {
        let same = |bound: Option<SocketAddr>, want: Option<SocketAddr>| match (bound, want) {
            (Some(b), Some(w)) => b.ip() == w.ip() && (w.port() == 0 || b.port() == w.port()),
            (None, None) => true,
            _ => false,
        };
        same(Some(self.dns), Some(wanted.dns))
            && same(self.proxy, wanted.proxy)
            && same(self.ui, wanted.ui)
    }
}

/// Reads `serve.json`; `None` when absent or not what serve writes (a
/// half-written file cannot exist: writes are atomic).
pub(crate) fn read_runtime(dir: &Path) -> Option<RuntimeInfo> {
    let text = fs::read_to_string(dir.join(RUNTIME_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `serve.json` atomically (temp file, sync, rename), mode 0600.
pub(crate) fn write_runtime(dir: &Path, info: &RuntimeInfo) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(info).map_err(std::io::Error::other)?;
    text.push('\n');
    write_atomic(&dir.join(RUNTIME_FILE), text.as_bytes())
}

/// Writes `path` through a temp file in the same directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path`; absent is fine.
pub(crate) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads `serve.pid`: `None` when absent or not a pid.
pub(crate) fn read_pid_file(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// The lab's name: the lab dir's last component.
pub(crate) fn lab_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat` (start time in ticks), and whether the
/// process is a zombie; `None` when there is no such process.
pub(crate) fn proc_stat(pid: u32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(PathBuf::from(format!("/proc/{pid}/stat"))).ok()?;
    // "PID (COMM) STATE ..."; COMM may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    let start = fields.get(19)?.parse().ok()?;
    Some((start, zombie))
}

/// This process's start time (see [`RuntimeInfo::proc_start`]).
pub(crate) fn own_proc_start() -> Option<u64> {
    proc_stat(std::process::id()).map(|(start, _)| start)
}

/// Whether `pid` is a live (not zombie) `fedilab serve` for `lab`: its
/// program is called `fedilab*`, its subcommand is `serve` and its
/// `--lab` (default `main`) is `lab`. With `proc_start`, the start time
/// must match too (the pid may have been reused).
pub(crate) fn is_serve_process(pid: u32, lab: &str, proc_start: Option<u64>) -> bool {
    let Some((start, zombie)) = proc_stat(pid) else {
        return false;
    };
    if zombie || proc_start.is_some_and(|s| s != start) {
        return false;
    }
    let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    cmdline_is_serve(&args, lab)
}

/// See [`is_serve_process`].
pub(crate) fn cmdline_is_serve(args: &[String], lab: &str) -> bool {
    let Some(program) = args.first() else {
        return false;
    };
    let base = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // The subcommand is the first argument that is not a flag (only global
    // flags without values, -v, may come before it).
    let subcommand = args.iter().skip(1).find(|a| !a.starts_with('-'));
    if !base.starts_with("fedilab") || subcommand.map(String::as_str) != Some("serve") {
        return false;
    }
    let mut named = "main";
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--lab" {
            named = it.next().map_or("", String::as_str);
        } else if let Some(v) = a.strip_prefix("--lab=") {
            named = v;
        }
    }
    named == lab
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_addresses_satisfy_the_same_ips_and_ports_or_any_port() {
        let addr = |a: &str| a.parse::<SocketAddr>().expect("addr");
        let bound = ServeAddresses {
            dns: addr("127.0.0.1:5300"),
            proxy: Some(addr("192.0.2.10:8480")),
            ui: Some(addr("127.0.0.1:8481")),
        };
        let wanted = fedilab_state::ServeSettings {
            dns: addr("127.0.0.1:5300"),
            proxy: Some(addr("192.0.2.10:8480")),
            ui: Some(addr("127.0.0.1:0")),
        };
        assert!(bound.satisfy(&wanted));
        let moved = fedilab_state::ServeSettings {
            proxy: Some(addr("192.0.2.20:8480")),
            ..wanted.clone()
        };
        assert!(!bound.satisfy(&moved), "the node address changed");
        let direct = fedilab_state::ServeSettings {
            proxy: None,
            ui: None,
            ..wanted
        };
        assert!(!bound.satisfy(&direct), "the inspector was turned off");
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_cmdline_check_wants_fedilab_serve_for_this_lab() {
        assert!(cmdline_is_serve(
            &args(&["/usr/bin/fedilab", "serve", "--lab", "x"]),
            "x"
        ));
        assert!(cmdline_is_serve(
            &args(&["fedilab", "-v", "serve", "--lab=x"]),
            "x"
        ));
        assert!(cmdline_is_serve(&args(&["fedilab", "serve"]), "main"));
        assert!(!cmdline_is_serve(
            &args(&["fedilab", "serve", "--lab", "y"]),
            "x"
        ));
        assert!(!cmdline_is_serve(&args(&["sleep", "serve"]), "main"));
        assert!(!cmdline_is_serve(&args(&["fedilab", "dns", "serve"]), "x"));
        assert!(!cmdline_is_serve(&[], "main"));
    }

    #[test]
    fn this_process_has_a_start_time_and_is_not_serve() {
        let (start, zombie) = proc_stat(std::process::id()).expect("own stat");
        assert!(start > 0);
        assert!(!zombie);
        assert!(!is_serve_process(std::process::id(), "main", None));
    }
}
