//! `fedilab creds`: each instance's URL, admin login, password and API
//! token, from the lab's saved state, else from its Secrets on the cluster.

use std::process::ExitCode;

use clap::Args;
use fedilab_orchestrator::{
    LabDir, credentials_from_cluster, credentials_from_state, select_instance,
};
use fedilab_profile::{DEFAULT_LAB_NAME, LabName};

use crate::UsageError;
use crate::cli::KubeArgs;
use crate::cmd::up::{CredsFormat, connect_checked, print_credentials, runtime};

/// Arguments of `fedilab creds`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
fedilab creds                       # every instance of lab main\n  \
fedilab creds mastodon2 -o json | jq -r '.[0].api_token'\n  \
curl -H \"Authorization: Bearer $TOKEN\" https://mastodon1.fediverse.local/api/v1/accounts/verify_credentials\n\n\
Read from the lab's state on this host (no cluster needed); for a lab made elsewhere, from its\n\
admin Secrets on the cluster.")]
pub struct CredsArgs {
    /// Only this instance (such as mastodon1).
    #[arg(value_name = "INSTANCE")]
    pub instance: Option<String>,

    /// The lab.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_LAB_NAME)]
    pub lab: String,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: CredsFormat,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Parses `--lab`.
///
/// # Errors
/// A [`UsageError`] for an invalid name.
pub fn lab_name(text: &str) -> anyhow::Result<LabName> {
    text.parse()
        .map_err(|e| UsageError(format!("--lab {text:?}: {e}")).into())
}

/// Runs `fedilab creds`.
///
/// # Errors
/// An unknown lab or instance, or an unreadable state or cluster.
pub fn run(args: &CredsArgs) -> anyhow::Result<ExitCode> {
    let lab = lab_name(&args.lab)?;
    let dir = LabDir::new(&crate::paths::data_dir()?, &lab);
    let all = match credentials_from_state(&dir)? {
        Some((_, creds)) if !creds.is_empty() => creds,
        _ => runtime()?.block_on(async {
            let cluster = connect_checked(&args.kube).await?;
            anyhow::Ok(credentials_from_cluster(&cluster, &lab).await?)
        })?,
    };
    if all.is_empty() {
        return Err(UsageError(format!(
            "no lab {lab} here or on the cluster; `fedilab up --lab {lab}` creates it"
        ))
        .into());
    }
    let picked = select_instance(lab.as_str(), all, args.instance.as_deref())
        .map_err(|e| UsageError(e.to_string()))?;
    print_credentials(&picked, args.output)?;
    Ok(ExitCode::SUCCESS)
}
