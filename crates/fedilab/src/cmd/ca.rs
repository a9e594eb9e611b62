//! `fedilab ca`: the lab's own certificate authority, from the command line.
//!
//! Issuance, storage and the trust-store plan live in `fedilab-ca`; this
//! module parses arguments, prints results and runs the trust commands. It
//! never prints a private key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, Subcommand};
use fedilab_ca::trust::{self, Probe};
use fedilab_ca::{
    Ca, CaStore, CertInfo, HostName, Init, LeafAction, LoadError, format_time, local_host_name,
};
use fedilab_profile::{DEFAULT_DOMAIN, Domain};

use crate::UsageError;

/// The long help of `fedilab ca` (set on its `Command` variant, whose doc
/// comment would otherwise replace it).
pub const LONG_ABOUT: &str = "The lab's own certificate authority.\n\n\
Every lab domain gets one root CA, made on this host. It carries critical X.509 \
name constraints: it can only vouch for the lab domain and names under it \
(mastodon1.fediverse.local), never for any other site, and no IP address. \
So trusting it on your host, for your browser, curl or the server you are \
testing, cannot let it impersonate example.com.\n\n\
`fedilab render` and `fedilab up` issue one certificate per instance from it, \
and reuse each one while it is valid for more than 30 days.\n\n\
Files: <data dir>/ca/<domain>/ (mode 0700): ca.pem, ca.key (0600), and \
<host>.pem, <host>.key per certificate. The data dir is $FEDILAB_DATA_DIR, \
else $XDG_DATA_HOME/fedilab, else ~/.local/share/fedilab.";

/// Arguments of `fedilab ca`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
fedilab ca init                  # make the CA for fediverse.local\n  \
fedilab ca show                  # what it is, what it may sign, when it expires\n  \
fedilab ca trust --dry-run       # the commands that would trust it on this host\n  \
fedilab ca trust                 # run them (sudo when not root)\n  \
fedilab ca export --out lab-ca.pem   # the certificate, for another machine")]
pub struct CaArgs {
    /// The lab domain whose CA to use. One CA per domain.
    #[arg(
        long,
        global = true,
        value_name = "DOMAIN",
        default_value = DEFAULT_DOMAIN,
        value_parser = parse_domain
    )]
    pub domain: Domain,

    /// What to do with it.
    #[command(subcommand)]
    pub command: CaCommand,
}

/// The `fedilab ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the lab CA for the domain (nothing changes if it exists).
    #[command(
        long_about = "Create the lab CA for the domain: an ECDSA P-256 root, valid for 10 \
years, that may only sign certificates for the domain and names under it. Its subject \
names the domain and this host. If the CA exists, nothing changes: its files are \
only checked (a key file that group or others may read is refused)."
    )]
    Init,

    /// Describe the CA and every certificate it issued.
    #[command(
        long_about = "Describe the CA and every certificate it issued: subject, SHA-256 \
fingerprint (compare it with what a browser shows), name constraints, and validity. \
Certificates with 30 days or less left are renewed by the next `fedilab render`."
    )]
    Show,

    /// Issue a certificate for each HOST (creates the CA if needed).
    #[command(
        long_about = "Issue a certificate for each HOST and print the files written, for \
a server of your own under test, for instance. HOST must be the lab domain or a name \
under it; a bare label such as `myserver` means myserver.<domain>. A stored \
certificate that is still valid for more than 30 days is kept unless --force is \
given. Creates the CA if there is none.",
        after_help = "Examples:\n  \
fedilab ca issue myserver                  # myserver.fediverse.local\n  \
fedilab ca issue gts.fediverse.local --force"
    )]
    Issue(IssueArgs),

    /// Write the CA certificate (never its key) to stdout or a file.
    #[command(
        long_about = "Write the CA certificate, never its key, to stdout or to FILE: to \
trust the lab on another machine or in a container (SSL_CERT_FILE, \
NODE_EXTRA_CA_CERTS, curl --cacert)."
    )]
    Export(ExportArgs),

    /// Make this host trust the CA (system store, and NSS databases).
    #[command(
        long_about = "Make this host trust the lab CA. Debian/Ubuntu: copies it to \
/usr/local/share/ca-certificates/ and runs update-ca-certificates. Fedora/RHEL: copies \
it to /etc/pki/ca-trust/source/anchors/ and runs update-ca-trust extract. When NSS's \
certutil is installed, also adds it to your NSS databases (~/.pki/nssdb for Chromium, \
Firefox profiles). System steps use sudo when not run as root. The name constraints \
keep this safe: the CA cannot vouch for names outside the lab domain.\n\n\
--dry-run prints the commands, as a shell script, and changes nothing."
    )]
    Trust(TrustArgs),

    /// Undo `fedilab ca trust`.
    #[command(
        long_about = "Remove the lab CA from this host's trust stores: the system store \
and the NSS databases `fedilab ca trust` added it to. The CA files stay; \
--dry-run prints the commands and changes nothing."
    )]
    Untrust(TrustArgs),
}

/// Arguments of `fedilab ca issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Host names, in the lab domain or as bare labels.
    #[arg(required = true, value_name = "HOST")]
    pub hosts: Vec<String>,

    /// Issue new certificates even when the stored ones are still good.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `fedilab ca export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `fedilab ca trust` and `untrust`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Print each command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_domain(s: &str) -> Result<Domain, fedilab_profile::NameError> {
    s.parse()
}

/// Runs `fedilab ca …`.
///
/// # Errors
/// Bad host names ([`UsageError`]), a missing or unusable CA, failed writes
/// or trust commands.
pub fn run(args: &CaArgs) -> anyhow::Result<ExitCode> {
    let store = CaStore::new(&crate::paths::data_dir()?, &args.domain);
    match &args.command {
        CaCommand::Init => init(&store),
        CaCommand::Show => show(&store),
        CaCommand::Issue(issue_args) => issue(&store, issue_args),
        CaCommand::Export(export_args) => export(&store, export_args),
        CaCommand::Trust(trust_args) => apply_trust(&store, trust_args, true),
        CaCommand::Untrust(trust_args) => apply_trust(&store, trust_args, false),
    }
}

/// Loads the CA, or says how to make one.
fn load(store: &CaStore) -> anyhow::Result<Ca> {
    store.load().map_err(|e| match e {
        LoadError::NotInitialized { domain, dir } => anyhow::anyhow!(
            "there is no lab CA for {domain} yet (looked in {}); create it with \
             `fedilab ca init --domain {domain}`",
            dir.display()
        ),
        other => other.into(),
    })
}

fn init(store: &CaStore) -> anyhow::Result<ExitCode> {
    let (_, init) = store.load_or_init(&local_host_name(), SystemTime::now())?;
    let domain = store.domain();
    match init {
        Init::Created => println!("created the lab CA for {domain}"),
        Init::Existing => println!("the lab CA for {domain} already exists; nothing changed"),
    }
    println!("  certificate  {}", store.cert_path().display());
    println!(
        "  key          {} (mode 0600, stays on this host)",
        store.key_path().display()
    );
    println!("next: `fedilab ca show` describes it, `fedilab ca trust` makes this host trust it");
    Ok(ExitCode::SUCCESS)
}

fn show(store: &CaStore) -> anyhow::Result<ExitCode> {
    let ca = load(store)?;
    let now = SystemTime::now();
    let info = CertInfo::from_pem(ca.cert_pem())
        .with_context(|| format!("reading {}", store.cert_path().display()))?;
    println!("lab CA for {}", store.domain());
    println!("  file         {}", store.cert_path().display());
    print_common(&info, now);
    match &info.name_constraints {
        Some(nc) => {
            let critical = if nc.critical {
                "critical"
            } else {
                "NOT critical"
            };
            println!(
                "  constraints  {critical}; permitted: {} (and every name under it)",
                nc.permitted.join(", ")
            );
            if !nc.excluded.is_empty() {
                println!("               excluded: {}", nc.excluded.join(", "));
            }
        }
        None => println!("  constraints  NONE: this CA may vouch for any site"),
    }
    if let Some(path_len) = info.ca {
        match path_len {
            Some(n) => println!("  path length  {n} (it signs server certificates only)"),
            None => println!("  path length  unlimited"),
        }
    }

    show_leaves(store, &info, now)
}

/// The stored leaves of `store`, each with its files and validity.
fn show_leaves(store: &CaStore, ca: &CertInfo, now: SystemTime) -> anyhow::Result<ExitCode> {
    let leaves = store.leaves()?;
    if leaves.is_empty() {
        println!();
        println!(
            "no certificates yet: `fedilab render` issues one per instance, \
             `fedilab ca issue HOST` one for HOST"
        );
    }
    for paths in leaves {
        println!();
        let text = match std::fs::read_to_string(&paths.cert) {
            Ok(text) => text,
            Err(e) => {
                println!("certificate {}: cannot read it: {e}", paths.cert.display());
                continue;
            }
        };
        match CertInfo::from_pem(&text) {
            Ok(leaf) => {
                println!("certificate for {}", leaf.dns_names.join(", "));
                println!("  file         {}", paths.cert.display());
                println!("  key          {}", paths.key.display());
                print_common(&leaf, now);
                if leaf.issuer != ca.subject {
                    println!(
                        "  issuer       {} (not this CA: reissued on next use)",
                        leaf.issuer
                    );
                }
            }
            Err(e) => println!("certificate {}: {e}", paths.cert.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_common(info: &CertInfo, now: SystemTime) {
    println!("  subject      {}", info.subject);
    println!("  sha256       {}", info.sha256_fingerprint);
    let days = info.days_left(now);
    let left = match days {
        d if d < 0 => "EXPIRED".to_owned(),
        d if d <= fedilab_ca::RENEW_BEFORE.whole_days() && info.ca.is_none() => {
            format!("{d} days left; renewed on next use")
        }
        d => format!("{d} days left"),
    };
    println!(
        "  valid        {} to {} ({left})",
        format_time(info.not_before),
        format_time(info.not_after)
    );
}

fn issue(store: &CaStore, args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let domain = store.domain();
    let hosts = args
        .hosts
        .iter()
        .map(|h| {
            let full = if h.contains('.') {
                h.clone()
            } else {
                format!("{h}.{domain}")
            };
            HostName::new(&full, domain).map_err(|e| UsageError(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = SystemTime::now();
    let (ca, init) = store.load_or_init(&local_host_name(), now)?;
    if init == Init::Created {
        eprintln!(
            "note: created the lab CA for {domain} in {}",
            store.dir().display()
        );
    }
    for host in hosts {
        let names = [host];
        let stored = if args.force {
            store.reissue_leaf(&ca, &names, now)?
        } else {
            store.ensure_leaf(&ca, &names, now)?
        };
        let host = &names[0];
        match &stored.action {
            LeafAction::Reused => {
                let until = CertInfo::from_pem(&stored.leaf.cert_pem)
                    .map(|i| format_time(i.not_after))
                    .unwrap_or_default();
                println!("kept {host}: still valid until {until} (--force issues a new one)");
            }
            LeafAction::Issued(why) => println!("issued {host} (previous: {why})"),
            LeafAction::Forced => println!("issued {host} (forced)"),
        }
        println!("  certificate  {}", stored.paths.cert.display());
        println!("  key          {}", stored.paths.key.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn export(store: &CaStore, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let ca = load(store)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, ca.cert_pem())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote the lab CA certificate for {} to {}",
                store.domain(),
                path.display()
            );
        }
        None => print!("{}", ca.cert_pem()),
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_trust(store: &CaStore, args: &TrustArgs, add: bool) -> anyhow::Result<ExitCode> {
    // Loading checks the files (and the key's mode) before anything trusts
    // them.
    load(store)?;
    let probe = Probe::detect();
    let domain = store.domain();
    let ca_pem = store.cert_path();
    let steps = if add {
        trust::trust_steps(&probe, domain, &ca_pem)?
    } else {
        trust::untrust_steps(&probe, domain, &ca_pem)?
    };
    let verb = if add { "trust" } else { "untrust" };
    if args.dry_run {
        println!("# fedilab ca {verb} --domain {domain} would run (dry run: nothing changed):");
        let mut purpose = "";
        for step in &steps {
            if step.purpose != purpose {
                purpose = &step.purpose;
                println!("# {purpose}");
            }
            println!("{step}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    fedilab_steps::run(&steps, &mut std::io::stderr())?;
    if add {
        println!("this host now trusts the lab CA for {domain}; restart browsers to pick it up");
    } else {
        println!("this host no longer trusts the lab CA for {domain}");
    }
    Ok(ExitCode::SUCCESS)
}
