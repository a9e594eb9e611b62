//! `fedilab backup`, `fedilab restore` and `fedilab import`: flags in, the
//! `fedilab_lab` sequence called with a progress bar (bytes and rate), its
//! report printed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::Args;
use fedilab_lab::{
    BackupReport, BackupRequest, ImportRequest, RestoreReport, RestoreRequest, TransferError,
    TransferEvent, TransferProgress,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::UsageError;
use crate::cli::KubeArgs;
use crate::common::{LabSelect, Threads, connect_checked, runtime};
use crate::output::credentials_text;

/// Arguments of `fedilab backup`.
#[derive(Debug, Args)]
#[command(
    after_help = "Writes one file (a tar: manifest.json, secrets.json, database.pgdump from \
`pg_dump -Fc`, media.tar) with each member's sha256 in the manifest. It holds the instance's \
secrets and its admin's password: keep it like a password. `tar tvf FILE` lists it.\n\n\
Examples:\n  \
fedilab backup mastodon1 -o mastodon1.fedilab\n  \
fedilab backup mastodon2 --lab exp -o /srv/keep/exp-mastodon2.fedilab"
)]
pub struct BackupArgs {
    /// The instance (such as mastodon1).
    #[arg(value_name = "INSTANCE")]
    pub instance: String,

    #[command(flatten)]
    pub lab: LabSelect,

    /// The archive to write (replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Arguments of `fedilab restore`.
#[derive(Debug, Args)]
#[command(
    after_help = "Restores an archive of `fedilab backup` into an instance of the same \
kind whose server release is the archive's or newer (it refuses others and says why). The \
members are checked first; the database is loaded beside the live one and swapped in, so a \
failure before the swap leaves the instance as it was. Then the archive's secrets replace the \
instance's (host state and Secrets), Redis is flushed, the pods restart and the setup Job \
migrates the data. The admin's password and token become the archive's: the command prints \
them and says whether they changed.\n\n\
Examples:\n  \
fedilab restore mastodon1 mastodon1.fedilab\n  \
fedilab restore mastodon2 --lab exp mastodon1.fedilab     # another instance, another lab"
)]
pub struct RestoreArgs {
    /// The instance to restore into.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,

    /// The archive.
    #[arg(value_name = "FILE")]
    pub archive: PathBuf,

    #[command(flatten)]
    pub lab: LabSelect,

    /// Time for the setup Job after the restore (migrations).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::common::parse_duration)]
    pub timeout_setup: Duration,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Arguments of `fedilab import`.
#[derive(Debug, Args)]
#[command(
    after_help = "Brings a real Mastodon's data into a lab instance: the secrets of its \
env file (SECRET_KEY_BASE, OTP_SECRET, the three ACTIVE_RECORD_ENCRYPTION_* keys, the VAPID \
pair; every other key is ignored and listed), its database dump (`pg_dump -Fc` or plain SQL) \
and optionally its media (its public/system directory, or a tar of it). The instance keeps \
the lab's domain: see README, \"Bring a real instance's data\". The lab's admin is created in \
the imported data with the lab's password and token.\n\n\
Examples:\n  \
fedilab import mastodon1 --env-file .env.production --dump mastodon.dump\n  \
fedilab import mastodon1 --env-file .env.production --dump db.sql --media public/system"
)]
pub struct ImportArgs {
    /// The instance to import into.
    #[arg(value_name = "INSTANCE")]
    pub instance: String,

    #[command(flatten)]
    pub lab: LabSelect,

    /// The real instance's `.env.production`.
    #[arg(long, value_name = "FILE")]
    pub env_file: PathBuf,

    /// Its database dump: `pg_dump -Fc` output or plain SQL.
    #[arg(long, value_name = "FILE")]
    pub dump: PathBuf,

    /// Its media: the `public/system` directory or a tar of it.
    #[arg(long, value_name = "DIR|TAR")]
    pub media: Option<PathBuf>,

    /// Time for the setup Job after the import (migrations).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::common::parse_duration)]
    pub timeout_setup: Duration,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Runs `fedilab backup`.
///
/// # Errors
/// A [`UsageError`] for an unknown lab or instance; what the cluster or
/// the file failed with otherwise.
pub fn backup(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let request = BackupRequest {
        data_dir: crate::paths::data_dir()?,
        lab: args.lab.lab.clone(),
        instance: args.instance.clone(),
        output: args.output.clone(),
        fedilab_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    fedilab_lab::check_instance(&request.data_dir, &request.lab, &request.instance)
        .map_err(usage_or)?;
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let progress = Bars::default();
        let outcome = fedilab_lab::backup(&cluster, &request, &progress).await;
        progress.finish();
        outcome.map_err(usage_or)
    })?;
    print!("{}", backup_text(&report));
    Ok(ExitCode::SUCCESS)
}

/// Runs `fedilab restore`.
///
/// # Errors
/// A [`UsageError`] for a refused archive or an unknown instance.
pub fn restore(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let request = RestoreRequest {
        data_dir: crate::paths::data_dir()?,
        lab: args.lab.lab.clone(),
        instance: args.instance.clone(),
        archive: args.archive.clone(),
        setup_budget: args.timeout_setup,
    };
    fedilab_lab::check_instance(&request.data_dir, &request.lab, &request.instance)
        .map_err(usage_or)?;
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let progress = Bars::default();
        let outcome = fedilab_lab::restore(&cluster, &request, &progress).await;
        progress.finish();
        outcome.map_err(usage_or)
    })?;
    print!("{}", restore_text(&report));
    Ok(ExitCode::SUCCESS)
}

/// Runs `fedilab import`.
///
/// # Errors
/// A [`UsageError`] for unusable files or an unknown instance.
pub fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let request = ImportRequest {
        data_dir: crate::paths::data_dir()?,
        lab: args.lab.lab.clone(),
        instance: args.instance.clone(),
        env_file: args.env_file.clone(),
        dump: args.dump.clone(),
        media: args.media.clone(),
        setup_budget: args.timeout_setup,
    };
    fedilab_lab::check_instance(&request.data_dir, &request.lab, &request.instance)
        .map_err(usage_or)?;
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let progress = Bars::default();
        let outcome = fedilab_lab::import(&cluster, &request, &progress).await;
        progress.finish();
        outcome.map_err(usage_or)
    })?;
    print!("{}", restore_text(&report));
    Ok(ExitCode::SUCCESS)
}

/// A usage error (exit 2) when the input is at fault, else the error.
fn usage_or(e: TransferError) -> anyhow::Error {
    if e.is_usage() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

/// One bar per step: bytes, rate and (when known) the total.
#[derive(Default)]
struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn finish(&self) {
        if let Ok(mut current) = self.current.lock()
            && let Some(bar) = current.take()
        {
            bar.finish();
        }
    }
}

impl TransferProgress for Bars {
    fn event(&self, event: &TransferEvent<'_>) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        match event {
            TransferEvent::Step(what) => {
                if let Some(bar) = current.take() {
                    bar.finish();
                }
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg:<48} {bytes:>10} {binary_bytes_per_sec:>12} [{elapsed}]",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message((*what).to_owned());
                bar.enable_steady_tick(Duration::from_millis(200));
                *current = Some(bar);
            }
            TransferEvent::Bytes { done, total, .. } => {
                if let Some(bar) = current.as_ref() {
                    if let Some(total) = total
                        && bar.length() != Some(*total)
                    {
                        bar.set_length(*total);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{spinner} {msg:<48} {bytes:>10}/{total_bytes:<10} \
                                 {binary_bytes_per_sec:>12} [{elapsed}]",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                    }
                    bar.set_position(*done);
                }
            }
            TransferEvent::Warning(text) => match current.as_ref() {
                Some(bar) => bar.println(format!("warning: {text}")),
                None => eprintln!("warning: {text}"),
            },
        }
    }
}

/// What `backup` prints.
fn backup_text(report: &BackupReport) -> String {
    let m = &report.manifest;
    let mut out = format!(
        "wrote {} ({}): {} {} {} of lab {} ({})\n",
        report.path.display(),
        human_bytes(report.size),
        m.kind,
        m.server_version,
        m.instance,
        m.lab,
        m.host
    );
    for member in &m.members {
        let _ = writeln!(
            out,
            "  {:<16} {:>10}  sha256 {}",
            member.name,
            human_bytes(member.size),
            member.sha256
        );
    }
    let _ = writeln!(
        out,
        "It holds the instance's secrets and admin password: keep it like a password. \
         `fedilab restore {} {}` brings it back.",
        m.instance,
        report.path.display()
    );
    out
}

/// What `restore` and `import` print.
fn restore_text(report: &RestoreReport) -> String {
    let mut out = String::new();
    match (&report.manifest, &report.env) {
        (Some(m), _) => {
            let _ = writeln!(
                out,
                "restored {} {} of lab {} ({}), taken by fedilab {}, into {}{}",
                m.kind,
                m.server_version,
                m.lab,
                m.host,
                m.fedilab_version,
                report.credentials.instance,
                if report.media { ", media included" } else { "" }
            );
        }
        (None, Some(env)) => {
            let _ = writeln!(
                out,
                "imported a {} dump{} into {}",
                match report.format {
                    fedilab_data::import::DumpFormat::Custom => "custom-format",
                    fedilab_data::import::DumpFormat::Plain => "plain SQL",
                },
                if report.media { " and media" } else { "" },
                report.credentials.instance
            );
            let _ = writeln!(
                out,
                "secrets taken from the env file: {}",
                list(&report.secrets_replaced)
            );
            if !env.missing.is_empty() {
                let _ = writeln!(
                    out,
                    "not in the env file (the lab's own kept): {}",
                    list(&env.missing)
                );
            }
            let ignored: Vec<&str> = env.ignored.iter().map(String::as_str).collect();
            let _ = writeln!(out, "ignored: {}", list(&ignored));
        }
        (None, None) => {}
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    let _ = writeln!(
        out,
        "{}",
        if report.credentials_changed {
            "The admin's password and API token changed (they are the archive's now):"
        } else {
            "The admin's password and API token are unchanged:"
        }
    );
    out.push_str(&credentials_text(std::slice::from_ref(&report.credentials)));
    let _ = writeln!(
        out,
        "Home timelines were flushed with Redis: `fedilab tootctl {} feeds build` rebuilds them.",
        report.credentials.instance
    );
    out
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedilab_data::archive::{Manifest, MemberInfo};
    use fedilab_orchestrator::InstanceCredentials;

    fn manifest() -> Manifest {
        Manifest {
            format: 1,
            kind: "mastodon".to_owned(),
            server_version: "v4.4.8".to_owned(),
            lab: "main".to_owned(),
            domain: "fediverse.local".to_owned(),
            instance: "mastodon1".to_owned(),
            host: "mastodon1.fediverse.local".to_owned(),
            fedilab_version: "0.1.0".to_owned(),
            created_unix: 0,
            members: vec![MemberInfo {
                name: "database.pgdump".to_owned(),
                size: 2048,
                sha256: "ab".repeat(32),
            }],
        }
    }

    fn creds() -> InstanceCredentials {
        InstanceCredentials {
            instance: "mastodon1".to_owned(),
            url: "https://mastodon1.fediverse.local/".to_owned(),
            username: "labadmin".to_owned(),
            password: "pw".to_owned(),
            api_token: "tok".to_owned(),
        }
    }

    #[test]
    fn the_backup_report_names_the_file_members_and_how_to_restore() {
        let text = backup_text(&BackupReport {
            path: "m1.fedilab".into(),
            manifest: manifest(),
            size: 4096,
        });
        assert!(
            text.starts_with(
                "wrote m1.fedilab (4.00 KiB): mastodon v4.4.8 mastodon1 of lab main \
                 (mastodon1.fediverse.local)\n  database.pgdump"
            ),
            "{text}"
        );
        assert!(
            text.contains("`fedilab restore mastodon1 m1.fedilab`"),
            "{text}"
        );
    }

    #[test]
    fn the_restore_report_says_whether_the_credentials_changed() {
        let mut report = RestoreReport {
            manifest: Some(manifest()),
            env: None,
            format: fedilab_data::import::DumpFormat::Custom,
            media: true,
            credentials: creds(),
            credentials_changed: true,
            secrets_replaced: vec![],
            warnings: vec!["from elsewhere".to_owned()],
        };
        let text = restore_text(&report);
        assert!(text.contains("media included"), "{text}");
        assert!(text.contains("warning: from elsewhere"), "{text}");
        assert!(
            text.contains("changed (they are the archive's now)"),
            "{text}"
        );
        assert!(text.contains("tok"), "{text}");
        report.credentials_changed = false;
        assert!(restore_text(&report).contains("are unchanged"));
    }

    #[test]
    fn the_import_report_lists_taken_missing_and_ignored_keys() {
        let env = fedilab_data::import::parse_env(
            "SECRET_KEY_BASE=k\nLOCAL_DOMAIN=example.social\nDB_PASS=x\n",
        )
        .expect("env");
        let report = RestoreReport {
            manifest: None,
            secrets_replaced: vec!["SECRET_KEY_BASE"],
            env: Some(env),
            format: fedilab_data::import::DumpFormat::Plain,
            media: false,
            credentials: creds(),
            credentials_changed: false,
            warnings: vec![],
        };
        let text = restore_text(&report);
        assert!(
            text.starts_with("imported a plain SQL dump into mastodon1\n"),
            "{text}"
        );
        assert!(
            text.contains("secrets taken from the env file: SECRET_KEY_BASE\n"),
            "{text}"
        );
        assert!(text.contains("ignored: DB_PASS, LOCAL_DOMAIN\n"), "{text}");
        assert!(
            text.contains(
                "not in the env file (the lab's own kept): OTP_SECRET, VAPID_PRIVATE_KEY"
            ),
            "{text}"
        );
        assert!(!text.contains("=x"), "no values: {text}");
    }
}
