//! `fedilab dns`: serve the lab's zone on this host, print it, and hook it
//! into systemd-resolved.
//!
//! The zone and the server are `fedilab-dns`'s; binding, serving and the
//! signals (SIGHUP reloads, SIGINT/SIGTERM stop) are `fedilab serve`'s DNS
//! half (`fedilab_serve::dns`); the resolver plan is
//! `fedilab_dns::resolver`'s, run by `fedilab_steps::run`. This module reads
//! the profile, prints status on stderr and holds no DNS logic.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use fedilab_ca::trust;
use fedilab_dns::{ServerOptions, Zone, ZoneError, resolver};
use fedilab_profile::{Domain, LabSpec};
use fedilab_serve::dns::{DnsBindError, DnsServing, SHUTDOWN_LIMIT, Signals, Wake, bind_dns};
use fedilab_state::{LabDir, LabState};
use fedilab_steps::Step;

use crate::UsageError;
use crate::cli::LabArgs;

/// Where `fedilab dns serve` listens unless told otherwise, and where the
/// resolver drop-in sends the lab domain.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5300";

/// Arguments of `fedilab dns`.
#[derive(Debug, Args)]
#[command(
    long_about = "The lab's DNS on this host.\n\n\
Inside the cluster, CoreDNS resolves the lab's names. On this host, for your browser, \
curl or a server you are developing, `fedilab dns serve` answers them: an authoritative \
server for the lab domain only. Every name under the domain (mastodon1.fediverse.local, \
and any other through a wildcard) answers with the address you give, the node where \
Traefik listens. Names outside the lab domain are REFUSED: it is never an open resolver \
and never recurses.\n\n\
`fedilab dns install-resolver` then tells systemd-resolved to send the lab domain, and \
only it, to that server.\n\n\
About .local: names ending in .local belong to multicast DNS (RFC 6762), so resolvers \
send them to mDNS, not to a DNS server, unless a routing domain (Domains=~fediverse.local) \
claims them; and hosts with nss-mdns (`mdns4_minimal [NOTFOUND=return]` in \
/etc/nsswitch.conf) answer them before DNS is even asked. `--domain fediverse.test` \
(.test is reserved for testing, RFC 6761) avoids all of that.",
    after_help = "Examples:\n  \
fedilab dns serve --instances 2 --answer 10.0.0.1\n  \
dig @127.0.0.1 -p 5300 mastodon2.fediverse.local\n  \
fedilab dns zone --answer 10.0.0.1          # the zone file it serves\n  \
fedilab dns install-resolver --dry-run      # what would change in systemd-resolved"
)]
pub struct DnsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DnsCommand,
}

/// The `fedilab dns` subcommands.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Serve the lab's zone over UDP and TCP until stopped.
    #[command(
        long_about = "Serve the lab's zone over UDP and TCP on --listen until SIGINT \
(Ctrl-C) or SIGTERM, then print what it answered. SIGHUP re-reads the profile and \
swaps the zone without dropping a query.\n\n\
The zone: SOA and NS at the lab domain; A (AAAA for an IPv6 --answer) for the domain, \
ns.<domain>, every instance host and the wildcard *.<domain>. Wildcard names answer \
NOERROR with no data for other types (RFC 4592), never NXDOMAIN. Names outside the \
domain and zone transfers are REFUSED.",
        after_help = "Examples:\n  \
fedilab dns serve --instances 2 --answer 10.0.0.1\n  \
fedilab dns serve --profile lab-profiles/mastodon-trio.yaml --answer 192.168.1.20 --listen 127.0.0.1:5300\n  \
kill -HUP <pid>      # after editing the profile"
    )]
    Serve(ServeArgs),

    /// Print the zone that `serve` would answer from, as a zone file.
    #[command(
        long_about = "Print the zone that `fedilab dns serve` answers from, as an RFC 1035 \
zone file: to read what the lab's names resolve to, or to load the same zone into \
another DNS server."
    )]
    Zone(ZoneArgs),

    /// Send the lab domain to `fedilab dns serve` (systemd-resolved).
    #[command(
        name = "install-resolver",
        long_about = "Make this host's resolver, systemd-resolved, send queries for the lab \
domain and names under it to `fedilab dns serve`, and nothing else. Writes \
/etc/systemd/resolved.conf.d/fedilab-<domain>.conf with DNS=<listen> and \
Domains=~<domain> (a routing domain: it routes the domain without adding a search \
suffix), then restarts systemd-resolved. Uses sudo when not run as root. Needs \
systemd 246 or later for a DNS server with a port.\n\n\
The routing domain is what makes .local work: without it, resolved sends .local \
names to multicast DNS (RFC 6762). With --domain fediverse.test the question does \
not arise.\n\n\
--dry-run prints the steps as a shell script and changes nothing.",
        after_help = "Examples:\n  \
fedilab dns install-resolver --dry-run\n  \
fedilab dns install-resolver --domain fediverse.test --listen 127.0.0.1:5300\n  \
resolvectl query mastodon1.fediverse.local      # check it"
    )]
    InstallResolver(ResolverArgs),

    /// Undo `install-resolver`: remove the drop-in, restart resolved.
    #[command(
        name = "uninstall-resolver",
        long_about = "Remove the systemd-resolved drop-in that `fedilab dns \
install-resolver` wrote for the lab domain and restart systemd-resolved. --dry-run \
prints the steps and changes nothing."
    )]
    UninstallResolver(ResolverArgs),
}

/// Arguments of `fedilab dns serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub lab: LabArgs,

    #[command(flatten)]
    pub answer: AnswerArgs,

    /// Where to listen, UDP and TCP. Port 0 picks a free port (printed).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Tasks receiving UDP queries (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub udp_workers: Option<usize>,
}

/// Arguments of `fedilab dns zone`.
#[derive(Debug, Args)]
pub struct ZoneArgs {
    #[command(flatten)]
    pub lab: LabArgs,

    #[command(flatten)]
    pub answer: AnswerArgs,
}

/// The addresses the lab's names resolve to.
#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// The address every lab name resolves to: the node where Traefik
    /// listens. Repeat for several (IPv6 gives AAAA records). Required until
    /// `fedilab up` records the node address.
    #[arg(long = "answer", value_name = "IP")]
    pub answer: Vec<IpAddr>,
}

/// Arguments of `fedilab dns install-resolver` and `uninstall-resolver`.
#[derive(Debug, Args)]
pub struct ResolverArgs {
    #[command(flatten)]
    pub lab: LabArgs,

    /// Where the lab's DNS listens. Default: where `fedilab up` put the
    /// lab's `fedilab serve`, else 127.0.0.1:5300.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Print the steps as a shell script; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `fedilab dns`.
///
/// # Errors
/// A [`UsageError`] for a bad profile or a missing `--answer`; otherwise
/// whatever binding, serving or changing the resolver failed with.
pub fn run(args: &DnsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        DnsCommand::Serve(args) => serve(args),
        DnsCommand::Zone(args) => print_zone(args),
        DnsCommand::InstallResolver(args) => resolver(args, true),
        DnsCommand::UninstallResolver(args) => resolver(args, false),
    }
}

/// The lab's saved state on this host, if `fedilab up` wrote one.
fn saved_state(spec: &LabSpec) -> anyhow::Result<Option<LabState>> {
    Ok(LabDir::new(&crate::paths::data_dir()?, &spec.name).load_state()?)
}

impl AnswerArgs {
    /// `--answer`, else the node address `fedilab up` saved for the lab.
    fn require(&self, spec: &LabSpec) -> anyhow::Result<Vec<IpAddr>> {
        if !self.answer.is_empty() {
            return Ok(self.answer.clone());
        }
        let saved = saved_state(spec)?.and_then(|s| s.node_address);
        saved.map(|a| vec![a]).ok_or_else(|| {
            UsageError(format!(
                "--answer IP is required: lab {} has no node address saved by `fedilab up` \
                 on this host.\n\
                 Give the address where Traefik listens, the k3s node's IP \
                 (`kubectl get nodes -o wide`, INTERNAL-IP), e.g. --answer 10.0.0.1",
                spec.name
            ))
            .into()
        })
    }
}

fn build_zone(lab: &LabArgs, answer: &AnswerArgs) -> anyhow::Result<(LabSpec, Zone, Vec<IpAddr>)> {
    let spec = lab.load()?;
    let answer = answer.require(&spec)?;
    let answer = answer.as_slice();
    let zone = fedilab_dns::zone(&spec, answer).map_err(|e| match e {
        ZoneError::NoAddress | ZoneError::TooLarge { .. } => UsageError(e.to_string()).into(),
        other => anyhow::Error::new(other).context("cannot build the lab zone"),
    })?;
    let answer = answer.to_vec();
    Ok((spec, zone, answer))
}

fn print_zone(args: &ZoneArgs) -> anyhow::Result<ExitCode> {
    let (_, zone, _) = build_zone(&args.lab, &args.answer)?;
    print!("{}", zone.to_zone_file());
    Ok(ExitCode::SUCCESS)
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let (spec, zone, answer) = build_zone(&args.lab, &args.answer)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_until_signalled(args, &answer, &spec, zone))
}

/// `fedilab serve`'s DNS half alone: the same bind, server and signals,
/// with the zone from the profile, reported on stderr.
async fn serve_until_signalled(
    args: &ServeArgs,
    answer: &[IpAddr],
    spec: &LabSpec,
    zone: Zone,
) -> anyhow::Result<ExitCode> {
    // Signals first: a SIGTERM that arrives once we said "serving" must
    // find its handler installed.
    let mut signals = Signals::install()?;
    let (udp, tcp) = bind_dns(args.listen).await.map_err(bind_error)?;
    let mut serial = zone.serial();
    let mut options = ServerOptions::default();
    if let Some(workers) = args.udp_workers {
        options.udp_workers = workers;
    }
    let mut dns = DnsServing::start(udp, tcp, zone, options)
        .context("cannot read the UDP socket's address")?;
    print_serving(spec, answer, serial, dns.addr());
    let signal_name = loop {
        match signals.next(dns.task()).await {
            Wake::Reload => serial = reload(args, &dns, serial),
            Wake::Stop(signal_name) => break signal_name,
            Wake::Ended(ended) => {
                // The server only returns on its own when it failed.
                let stats = ended.context("the DNS server task failed")??;
                anyhow::bail!("the DNS server stopped unexpectedly after {stats}");
            }
        }
    };
    let stats = dns
        .stop()
        .await?
        .with_context(|| format!("the DNS server did not stop within {SHUTDOWN_LIMIT:?}"))?;
    eprintln!("stopped on {signal_name}: {stats}");
    Ok(ExitCode::SUCCESS)
}

fn print_serving(spec: &LabSpec, answer: &[IpAddr], serial: u32, addr: SocketAddr) {
    let answer_list = answer
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "serving {domain} ({n} instances, serial {serial}) on {addr} over UDP and TCP, \
         answering {answer_list}\n\
         try: dig @{ip} -p {port} {first}\n\
         SIGHUP re-reads the profile; Ctrl-C or SIGTERM stops",
        domain = spec.domain,
        n = spec.instances.len(),
        ip = addr.ip(),
        port = addr.port(),
        first = spec
            .instances
            .first()
            .map_or_else(|| spec.domain.to_string(), |i| i.host.to_string()),
    );
}

/// Re-reads the profile and swaps the zone; a profile that fails keeps the
/// previous zone. Returns the serial now served.
fn reload(args: &ServeArgs, dns: &DnsServing, serial: u32) -> u32 {
    match build_zone(&args.lab, &args.answer) {
        Ok((spec, zone, _)) => {
            let new_serial = zone.serial();
            dns.replace(zone);
            eprintln!(
                "reloaded: {} ({} instances), serial {serial} -> {new_serial}",
                spec.domain,
                spec.instances.len()
            );
            new_serial
        }
        Err(e) => {
            eprintln!("reload failed, still serving the previous zone: {e:#}");
            serial
        }
    }
}

fn bind_error(e: DnsBindError) -> anyhow::Error {
    let DnsBindError {
        proto,
        addr,
        source,
    } = e;
    let hint = match source.kind() {
        std::io::ErrorKind::AddrInUse if addr.port() == 5353 => {
            "; 5353 is also the mDNS port, and avahi-daemon or systemd-resolved may hold it: \
             try --listen 127.0.0.1:5300 (and the same --listen for install-resolver)"
        }
        std::io::ErrorKind::AddrInUse => "; another server listens there: pick another --listen",
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            "; ports below 1024 need root: use a higher port with install-resolver"
        }
        _ => "",
    };
    anyhow::anyhow!("cannot listen on {addr} ({proto}): {source}{hint}")
}

// ---------------------------------------------------------------------------
// systemd-resolved.

fn resolver(args: &ResolverArgs, install: bool) -> anyhow::Result<ExitCode> {
    let spec = args.lab.load()?;
    let listen = match args.listen {
        Some(listen) => listen,
        None => saved_state(&spec)?
            .and_then(|s| s.serve)
            .map_or_else(|| DEFAULT_LISTEN.parse(), |s| Ok(s.dns))
            .context("the default DNS address")?,
    };
    let domain = &spec.domain;
    let root = trust::running_as_root();
    let steps = if install {
        resolver::install_steps(domain, listen, root)
    } else {
        let path = resolver::drop_in_path(domain);
        if !args.dry_run && !path.exists() {
            println!("{} does not exist: nothing to remove", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        resolver::uninstall_steps(domain, root)
    };
    let resolved_running = std::path::Path::new("/run/systemd/resolve").is_dir();
    if args.dry_run {
        print_dry_run(install, domain, resolved_running, &steps);
        return Ok(ExitCode::SUCCESS);
    }
    if !resolved_running {
        anyhow::bail!(
            "systemd-resolved does not run on this host (no /run/systemd/resolve): \
             send {domain} to {listen} in your resolver instead (dnsmasq: \
             server=/{domain}/{ip}#{port})",
            listen = listen,
            ip = listen.ip(),
            port = listen.port(),
        );
    }
    if !root && trust::find_program("sudo").is_none() {
        anyhow::bail!("changing systemd-resolved needs root and sudo is missing: run this as root");
    }
    fedilab_steps::run(&steps, &mut std::io::stderr())?;
    if install {
        println!(
            "{domain} now resolves through {listen}: `fedilab up` starts the lab's DNS there \
             (or run `fedilab dns serve --answer IP --listen {listen}`), then \
             `resolvectl query {first}`",
            first = spec
                .instances
                .first()
                .map_or_else(|| domain.to_string(), |i| i.host.to_string()),
        );
    } else {
        println!("{domain} no longer goes to fedilab's DNS");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_dry_run(install: bool, domain: &Domain, resolved_running: bool, steps: &[Step]) {
    let verb = if install {
        "install-resolver"
    } else {
        "uninstall-resolver"
    };
    println!("# fedilab dns {verb} --domain {domain} would run (dry run: nothing changed):");
    if !resolved_running {
        println!("# note: systemd-resolved does not seem to run on this host");
    }
    for step in steps {
        println!("{step}");
    }
}
