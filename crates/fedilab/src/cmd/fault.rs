//! `fedilab fault add|list|remove|clear`: the fault rules of a running
//! inspector, through its API (`fedilab_inspector::client`). By default the
//! inspector of the lab's `fedilab serve` (found in its `serve.json`, as
//! `fedilab status` finds it); `--ui ADDR` names any other, such as a
//! `fedilab inspect`. Glue only: rules are the inspector's.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fedilab_inspector::RuleSpec;
use fedilab_inspector::client;
use fedilab_serve::daemon::{self, ServeStatus};
use fedilab_state::LabDir;

use crate::UsageError;
use crate::common::{LabSelect, Threads, runtime};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The long help of `fedilab fault`.
pub const LONG_ABOUT: &str = "Make the inspector misbehave on purpose: delay matching requests, \
answer them with a status of its choice (with Retry-After), reset the connection, corrupt the \
body or the signature on the way, or deliver them twice. Every exchange a rule touches is marked \
with it in the UI, the API and HAR.\n\n\
A RULE is JSON ({\"match\": {...}, \"action\": {...}}, as POST /api/faults takes it) or \
comma-separated key=value pairs of the same fields. Match fields: host, from, method, \
path_prefix, activity (Create matches Create(Note)), probability (0 to 1), seed, count, \
for_seconds. Exactly one action: delay_ms=N, status=N (with body=TEXT, retry_after=S), reset, \
corrupt=body|signature, duplicate.";

/// Arguments of `fedilab fault`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
fedilab fault add 'host=mastodon2,activity=Accept(Follow),status=503,for_seconds=60'\n  \
fedilab fault add 'from=mastodon1,activity=Create,corrupt=signature,count=1'\n  \
fedilab fault add '{\"match\": {\"host\": \"mastodon2\"}, \"action\": {\"delay_ms\": 2000}}'\n  \
fedilab fault list\n  \
fedilab fault remove 3\n  \
fedilab fault clear --ui 127.0.0.1:8081     # a `fedilab inspect` instead of a lab")]
pub struct FaultArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FaultCommand,
}

/// The `fault` subcommands.
#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Add a rule; prints its id.
    Add(Box<AddArgs>),
    /// Print the rules: id, state, requests affected, what it does.
    List(Target),
    /// Remove one rule.
    Remove(RemoveArgs),
    /// Remove every rule.
    Clear(Target),
}

/// Which inspector.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    pub lab: LabSelect,

    /// The inspector's UI/API address (`fedilab inspect --ui`), instead of
    /// the lab's `fedilab serve`.
    #[arg(long, value_name = "ADDR")]
    pub ui: Option<SocketAddr>,
}

/// Arguments of `fedilab fault add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The rule: JSON, or key=value pairs such as
    /// host=mastodon2,activity=Create,status=503.
    #[arg(value_name = "RULE")]
    pub rule: RuleSpec,

    #[command(flatten)]
    pub target: Target,
}

/// Arguments of `fedilab fault remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The rule's id (`fedilab fault list`).
    #[arg(value_name = "ID")]
    pub id: u64,

    #[command(flatten)]
    pub target: Target,
}

/// The API address of the inspector `target` names.
fn api_addr(target: &Target) -> anyhow::Result<SocketAddr> {
    if let Some(ui) = target.ui {
        return Ok(ui);
    }
    let lab = &target.lab.lab;
    let dir = LabDir::new(&crate::paths::data_dir()?, lab);
    match daemon::status(&dir) {
        ServeStatus::Running { addresses, .. } => addresses.ui.ok_or_else(|| {
            UsageError(format!(
                "fedilab serve for lab {lab} runs without an inspector UI; nothing to add rules to"
            ))
            .into()
        }),
        _ => Err(UsageError(format!(
            "fedilab serve is not running for lab {lab} (start it with `fedilab up` or \
             `fedilab serve --lab {lab}`); for a `fedilab inspect`, pass --ui ADDR"
        ))
        .into()),
    }
}

/// Runs `fedilab fault`.
///
/// # Errors
/// A [`UsageError`] when no inspector runs; other errors when its API
/// cannot be reached or refuses the request (with its reason).
pub fn run(args: &FaultArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime(Threads::One)?;
    match &args.command {
        FaultCommand::Add(a) => {
            let api = api_addr(&a.target)?;
            let rule = rt
                .block_on(client::add_fault(api, &a.rule, TIMEOUT))
                .with_context(|| format!("the inspector at {api} did not add the rule"))?;
            println!("rule {} added: {}", rule.id, a.rule.describe());
        }
        FaultCommand::List(t) => {
            let api = api_addr(t)?;
            let list = rt
                .block_on(client::faults(api, TIMEOUT))
                .with_context(|| format!("cannot read the rules of the inspector at {api}"))?;
            if list.rules.is_empty() {
                println!("no fault rules: every request is forwarded untouched");
            }
            for r in &list.rules {
                let spec = RuleSpec {
                    matcher: r.matcher.clone(),
                    action: r.action.clone(),
                };
                println!(
                    "{:>4}  {:<8}  applied {:<5}  {}",
                    r.id,
                    if r.active { "active" } else { "spent" },
                    r.applied,
                    spec.describe()
                );
            }
        }
        FaultCommand::Remove(a) => {
            let api = api_addr(&a.target)?;
            rt.block_on(client::remove_fault(api, a.id, TIMEOUT))
                .with_context(|| format!("the inspector at {api} did not remove rule {}", a.id))?;
            println!("rule {} removed", a.id);
        }
        FaultCommand::Clear(t) => {
            let api = api_addr(t)?;
            rt.block_on(client::clear_faults(api, TIMEOUT))
                .with_context(|| format!("the inspector at {api} did not remove its rules"))?;
            println!("every fault rule removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
