//! What every command shares: the async runtime, the cluster connection,
//! durations and lab names as flags, and how `fedilab serve` is started
//! for a lab. Glue only.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fedilab_lab::Daemon;
use fedilab_orchestrator::Cluster;
use fedilab_profile::{DEFAULT_LAB_NAME, LabName};
use fedilab_serve::ServeCommand;
use fedilab_serve::daemon::Launch;

use crate::cli::KubeArgs;

/// Threads of a command's runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// One thread: the cluster commands, which mostly wait on the API.
    One,
    /// A worker per core: the servers (DNS, inspector, `serve`).
    PerCore,
}

/// The async runtime of one command.
///
/// # Errors
/// When the OS refuses the runtime's resources.
pub fn runtime(threads: Threads) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Connects with `--kubeconfig`/`--context` and checks that the API server
/// answers (one request), so a stopped cluster gets a message that says
/// what to do.
///
/// # Errors
/// When no kubeconfig can be used or the server does not answer.
pub async fn connect_checked(kube: &KubeArgs) -> anyhow::Result<Cluster> {
    let cluster = fedilab_orchestrator::connect(&kube.options()).await?;
    fedilab_orchestrator::reachable(&cluster).await?;
    Ok(cluster)
}

/// A duration such as `90s`, `10m`, `1h30m` or `45` (seconds).
///
/// # Errors
/// A message for clap when `text` is not one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 90s, 10m or 1h30m");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A lab name given as `--lab`.
///
/// # Errors
/// A message for clap when `text` is not a valid lab name.
pub fn parse_lab(text: &str) -> Result<LabName, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// `--lab NAME` of the commands that act on an existing lab.
#[derive(Debug, Clone, Args)]
pub struct LabSelect {
    /// The lab.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_LAB_NAME, value_parser = parse_lab)]
    pub lab: LabName,
}

/// How `up` and `attach` start the lab's `fedilab serve`: this executable
/// with `serve --lab LAB` and this data dir. `FEDILAB_SERVE_LAUNCH` set to
/// `systemd` or `process` forces a launcher; anything else (or nothing)
/// lets the daemon pick systemd when a user manager answers.
///
/// # Errors
/// When the running executable cannot be found.
pub fn serve_daemon(lab: &LabName, data_dir: &Path) -> anyhow::Result<Daemon> {
    let program = std::env::current_exe().context("cannot find the fedilab executable")?;
    let command = ServeCommand {
        program,
        args: ["serve", "--lab", lab.as_str()]
            .into_iter()
            .map(OsString::from)
            .collect(),
        env: vec![(
            OsString::from("FEDILAB_DATA_DIR"),
            data_dir.as_os_str().to_owned(),
        )],
    };
    let launch = match std::env::var("FEDILAB_SERVE_LAUNCH").as_deref() {
        Ok("systemd") => Launch::Systemd,
        Ok("process") => Launch::Process,
        _ => Launch::Auto,
    };
    Ok(Daemon { command, launch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn lab_names_are_checked_once_by_clap() {
        assert_eq!(
            parse_lab("exp").map(|l| l.to_string()),
            Ok("exp".to_owned())
        );
        assert!(parse_lab("UPPER").is_err());
    }
}
