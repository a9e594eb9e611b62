//! `fedilab attach` and `fedilab detach`: a server running on this host
//! becomes `NAME.DOMAIN` in a running lab (leaf certificate, Traefik route
//! through the inspector, host DNS, in-cluster name), and leaves it again.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fedilab_ca::{CaStore, HostName};
use fedilab_orchestrator::{
    AttachedServer, LabDir, LabState, StoredInstance, StoredKind, StoredUpstream,
};
use fedilab_profile::{Domain, ExternalUrl, InstanceName, InstanceSpec, LabName, LabSpec};

use crate::UsageError;
use crate::cli::KubeArgs;
use crate::cmd::creds::lab_name;
use crate::cmd::up::{connect_checked, runtime};

/// Arguments of `fedilab attach`.
#[derive(Debug, Args)]
#[command(after_help = "What it does:\n  \
1. issues a certificate for NAME.DOMAIN from the lab CA;\n  \
2. adds to the lab's namespace a TLS Secret, a Service and EndpointSlice that point at the\n     \
inspector on this host, and an Ingress, so Traefik serves https://NAME.DOMAIN/ and sends\n     \
the requests through the inspector (which records them) to --url;\n  \
3. tells `fedilab serve` (the lab's DNS and inspector) about it: the host resolves NAME.DOMAIN,\n     \
and the lab's pods already do (CoreDNS answers the whole lab domain).\n\n\
Your server sees plain HTTP with Host: NAME.DOMAIN and X-Forwarded-Proto: https; it reaches\n\
the lab's instances at https://mastodonN.DOMAIN/ once this host trusts the lab CA\n\
(`fedilab ca trust`) and resolves the lab domain (`fedilab dns install-resolver`).\n\n\
Examples:\n  \
fedilab attach mine --url http://127.0.0.1:3000\n  \
fedilab attach bridge --url http://127.0.0.1:8080 --lab exp\n  \
fedilab detach mine")]
pub struct AttachArgs {
    /// The server's name in the lab: a DNS label (letters, digits, `-`) of
    /// at most 40 characters; its host becomes NAME.DOMAIN.
    pub name: String,

    /// Where the server listens on this host: http://HOST:PORT (plain HTTP;
    /// Traefik terminates TLS).
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// The lab.
    #[arg(long, value_name = "NAME", default_value = fedilab_profile::DEFAULT_LAB_NAME)]
    pub lab: String,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Arguments of `fedilab detach`.
#[derive(Debug, Args)]
#[command(
    after_help = "Removes what `fedilab attach NAME` added: the Secret, Service, \
EndpointSlice and Ingress in the lab's namespace, the leaf certificate, the host DNS name and the \
inspector route. The server itself keeps running.\n\nExample:\n  fedilab detach mine"
)]
pub struct DetachArgs {
    /// The name given to `fedilab attach`.
    pub name: String,

    /// The lab.
    #[arg(long, value_name = "NAME", default_value = fedilab_profile::DEFAULT_LAB_NAME)]
    pub lab: String,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// The lab's saved state, or an error that says to run `up`.
fn lab_state(dir: &LabDir, lab: &LabName) -> anyhow::Result<LabState> {
    dir.load_state()?.ok_or_else(|| {
        UsageError(format!(
            "lab {lab} has no state on this host ({} is missing); run `fedilab up --lab {lab}` first",
            dir.path().join("lab.json").display()
        ))
        .into()
    })
}

/// Whether something accepts TCP connections where the server should be.
fn answers(url: &ExternalUrl) -> bool {
    let addrs: Vec<SocketAddr> = (url.host(), url.port())
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
}

/// Runs `fedilab attach`.
///
/// # Errors
/// A [`UsageError`] for a bad name or URL, a lab that is not up or runs
/// without the inspector, or a name already taken; otherwise what the CA,
/// the cluster or the state files failed with.
pub fn attach(args: &AttachArgs) -> anyhow::Result<ExitCode> {
    let lab = lab_name(&args.lab)?;
    let data_dir = crate::paths::data_dir()?;
    let dir = LabDir::new(&data_dir, &lab);
    let mut state = lab_state(&dir, &lab)?;
    let proxy = state.serve.as_ref().and_then(|s| s.proxy).ok_or_else(|| {
        UsageError(format!(
            "lab {lab} runs without the inspector (`fedilab up --no-inspector`), and an attached \
             server is reachable from the cluster only through it; run `fedilab up --lab {lab}` \
             (without --no-inspector), then attach"
        ))
    })?;
    let domain: Domain = state.domain.parse().map_err(|e| {
        anyhow::anyhow!("{}: the saved domain is damaged: {e}", dir.path().display())
    })?;
    let server = InstanceSpec::external(&args.name, &args.url, &domain).map_err(|e| {
        let problems: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        UsageError(problems.join("\n"))
    })?;
    if let Some(taken) = state.instance(server.name.as_str())
        && taken.kind != StoredKind::Attached
    {
        return Err(UsageError(format!(
            "{} is already an instance of lab {lab} ({}); pick another name",
            server.name, taken.url
        ))
        .into());
    }
    let spec = LabSpec {
        name: lab.clone(),
        domain,
        egress_cidrs: Vec::new(),
        instances: vec![server],
    };
    let server = &spec.instances[0];
    let tls = crate::tls::lab_tls(&spec, &data_dir)?;
    let leaf = tls
        .leaves
        .get(&server.name)
        .context("the lab CA issued no certificate for the server")?;
    let objects = fedilab_manifest::build_external(&spec, server, leaf, proxy)?;
    let fedilab_profile::InstanceSpecKind::External(external) = &server.kind else {
        unreachable!("InstanceSpec::external makes external instances")
    };
    let target = external.url.clone();
    let url = target.to_string();

    runtime()?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        fedilab_orchestrator::attach(&cluster, &spec, &objects).await?;
        anyhow::Ok(())
    })?;

    let mut attached = dir.attached()?;
    attached.retain(|a| a.name != server.name.as_str());
    attached.push(AttachedServer {
        name: server.name.to_string(),
        url: url.clone(),
    });
    dir.save_attached(&attached)?;
    state.instances.retain(|i| i.name != server.name.as_str());
    state.instances.push(StoredInstance {
        name: server.name.to_string(),
        host: server.host.to_string(),
        url: format!("https://{}/", server.host),
        kind: StoredKind::Attached,
        upstreams: vec![StoredUpstream {
            path_prefix: "/".to_owned(),
            url: url.clone(),
        }],
    });
    dir.save_state(&state)?;
    let serving = crate::host::refresh_serve(&dir, &lab, &data_dir)?;

    println!(
        "attached {url} to lab {lab} as https://{}/\n  \
         Traefik -> inspector {proxy} -> {url}; {} Secret, Service, EndpointSlice, Ingress in {}",
        server.host,
        objects.objects.len(),
        state.namespace
    );
    println!("  {serving}");
    if !answers(&target) {
        eprintln!(
            "warning: nothing answers at {url} yet; the lab gets 502 Bad Gateway for {} until it does",
            server.host
        );
    }
    println!("`fedilab detach {} --lab {lab}` removes it.", server.name);
    Ok(ExitCode::SUCCESS)
}

/// Runs `fedilab detach`.
///
/// # Errors
/// A [`UsageError`] for a name that is a profile instance; otherwise what
/// the cluster or the state files failed with.
pub fn detach(args: &DetachArgs) -> anyhow::Result<ExitCode> {
    let lab = lab_name(&args.lab)?;
    let name: InstanceName = args
        .name
        .parse()
        .map_err(|e| UsageError(format!("{:?}: {e}", args.name)))?;
    let data_dir = crate::paths::data_dir()?;
    let dir = LabDir::new(&data_dir, &lab);
    let mut state = lab_state(&dir, &lab)?;
    match state.instance(name.as_str()) {
        Some(i) if i.kind != StoredKind::Attached => {
            return Err(UsageError(format!(
                "{name} is an instance of lab {lab}'s profile, not an attached server; remove it \
                 from the profile and run `fedilab up`, or `fedilab down` the lab"
            ))
            .into());
        }
        _ => {}
    }
    let removed = runtime()?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        anyhow::Ok(fedilab_orchestrator::detach(&cluster, &lab, &name).await?)
    })?;

    let was_attached = state.instance(name.as_str()).is_some();
    let mut attached = dir.attached()?;
    attached.retain(|a| a.name != name.as_str());
    dir.save_attached(&attached)?;
    state.instances.retain(|i| i.name != name.as_str());
    dir.save_state(&state)?;
    let domain: Option<Domain> = state.domain.parse().ok();
    let mut leaf_removed = false;
    if let Some(domain) = &domain
        && let Ok(host) = HostName::new(&format!("{name}.{domain}"), domain)
    {
        leaf_removed = CaStore::new(&data_dir, domain)
            .remove_leaf(&host)
            .context("cannot remove the server's certificate")?;
    }
    let serving = if was_attached {
        Some(crate::host::refresh_serve(&dir, &lab, &data_dir)?)
    } else {
        None
    };

    if removed.is_empty() && !was_attached {
        println!("nothing is attached to lab {lab} as {name}; nothing to remove");
        return Ok(ExitCode::SUCCESS);
    }
    println!("detached {name} from lab {lab}:");
    for object in &removed {
        println!("  removed {object}");
    }
    if leaf_removed {
        println!("  removed its certificate");
    }
    if let Some(serving) = serving {
        println!("  {serving}");
    }
    Ok(ExitCode::SUCCESS)
}
