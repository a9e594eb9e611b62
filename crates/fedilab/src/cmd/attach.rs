//! `fedilab attach` and `fedilab detach`: flags in, `fedilab_lab::attach` /
//! `detach` called, what they did printed.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use fedilab_lab::{AttachPlan, AttachReport, AttachRequest, DetachPlan, DetachReport};
use fedilab_profile::LabName;

use crate::UsageError;
use crate::cli::KubeArgs;
use crate::common::{LabSelect, Threads, connect_checked, runtime, serve_daemon};
use crate::output::serve_line;

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

    #[command(flatten)]
    pub lab: LabSelect,

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

    #[command(flatten)]
    pub lab: LabSelect,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Runs `fedilab attach`.
///
/// # Errors
/// A [`UsageError`] for a bad name or URL, a lab that is not up or runs
/// without the inspector, or a name already taken; otherwise what the CA,
/// the cluster or the state files failed with.
pub fn attach(args: &AttachArgs) -> anyhow::Result<ExitCode> {
    let data_dir = crate::paths::data_dir()?;
    let lab = args.lab.lab.clone();
    let daemon = serve_daemon(&lab, &data_dir)?;
    let request = AttachRequest {
        data_dir,
        lab: lab.clone(),
        name: args.name.clone(),
        url: args.url.clone(),
    };
    let usage = |e: fedilab_lab::AttachError| -> anyhow::Error {
        if e.is_usage() {
            UsageError(e.to_string()).into()
        } else {
            e.into()
        }
    };
    let plan = AttachPlan::prepare(request).map_err(usage)?;
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        fedilab_lab::attach(&cluster, plan, &daemon)
            .await
            .map_err(usage)
    })?;
    print!("{}", attached_text(&report, &lab));
    if !report.answers {
        eprintln!(
            "warning: nothing answers at {} yet; the lab gets 502 Bad Gateway for {} until it does",
            report.url, report.host
        );
    }
    println!("`fedilab detach {} --lab {lab}` removes it.", report.name);
    Ok(ExitCode::SUCCESS)
}

fn attached_text(report: &AttachReport, lab: &LabName) -> String {
    let mut out = format!(
        "attached {url} to lab {lab} as https://{host}/\n  \
         Traefik -> inspector {proxy} -> {url}; {n} Secret, Service, EndpointSlice, Ingress in {ns}\n  \
         {serving}\n",
        url = report.url,
        host = report.host,
        proxy = report.proxy,
        n = report.objects,
        ns = report.namespace,
        serving = serve_line(&report.serve, lab),
    );
    if !report.allowed_on.is_empty() {
        let names: Vec<&str> = report.allowed_on.iter().map(|n| n.as_str()).collect();
        let _ = writeln!(
            out,
            "  allowed on {} (limited federation: a DomainAllow row each)",
            names.join(", ")
        );
    }
    out
}

/// Runs `fedilab detach`.
///
/// # Errors
/// A [`UsageError`] for a name that is a profile instance; otherwise what
/// the cluster or the state files failed with.
pub fn detach(args: &DetachArgs) -> anyhow::Result<ExitCode> {
    let data_dir = crate::paths::data_dir()?;
    let lab = args.lab.lab.clone();
    let daemon = serve_daemon(&lab, &data_dir)?;
    let usage = |e: fedilab_lab::DetachError| -> anyhow::Error {
        if e.is_usage() {
            UsageError(e.to_string()).into()
        } else {
            e.into()
        }
    };
    let plan = DetachPlan::prepare(data_dir, lab.clone(), &args.name).map_err(usage)?;
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        fedilab_lab::detach(&cluster, plan, &daemon)
            .await
            .map_err(usage)
    })?;
    print!("{}", detached_text(&report, &lab));
    Ok(ExitCode::SUCCESS)
}

fn detached_text(report: &DetachReport, lab: &LabName) -> String {
    let name = &report.name;
    if report.removed.is_empty() && !report.was_attached {
        return format!("nothing is attached to lab {lab} as {name}; nothing to remove\n");
    }
    let mut out = format!("detached {name} from lab {lab}:\n");
    for object in &report.removed {
        let _ = writeln!(out, "  removed {object}");
    }
    if report.leaf_removed {
        out.push_str("  removed its certificate\n");
    }
    if let Some(serve) = &report.serve {
        let _ = writeln!(out, "  {}", serve_line(serve, lab));
    }
    out
}

#[cfg(test)]
mod tests {
    use fedilab_orchestrator::RemovedObject;
    use fedilab_serve::daemon::ServeStatus;

    use super::*;

    #[test]
    fn attach_says_where_the_traffic_goes() {
        let lab: LabName = "main".parse().expect("lab");
        let report = AttachReport {
            name: "mine".parse().expect("name"),
            host: "mine.fediverse.local".to_owned(),
            url: "http://127.0.0.1:3000".parse().expect("url"),
            proxy: "192.0.2.10:8480".parse().expect("addr"),
            objects: 4,
            namespace: "fedilab-main".to_owned(),
            serve: ServeStatus::Stopped,
            answers: true,
            allowed_on: vec!["closed".parse().expect("name")],
        };
        let text = attached_text(&report, &lab);
        assert!(
            text.starts_with(
                "attached http://127.0.0.1:3000 to lab main as https://mine.fediverse.local/\n  \
             Traefik -> inspector 192.0.2.10:8480 -> http://127.0.0.1:3000; 4 Secret, Service, \
             EndpointSlice, Ingress in fedilab-main\n  fedilab serve is not running"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\n  allowed on closed (limited federation: a DomainAllow row each)\n"),
            "{text}"
        );
    }

    #[test]
    fn detach_lists_what_went_or_says_nothing_was_there() {
        let lab: LabName = "main".parse().expect("lab");
        let mut report = DetachReport {
            name: "mine".parse().expect("name"),
            removed: Vec::new(),
            was_attached: false,
            leaf_removed: false,
            serve: None,
        };
        assert_eq!(
            detached_text(&report, &lab),
            "nothing is attached to lab main as mine; nothing to remove\n"
        );
        report.removed.push(RemovedObject {
            kind: "Ingress".to_owned(),
            namespace: Some("fedilab-main".to_owned()),
            name: "mine".to_owned(),
        });
        report.was_attached = true;
        report.leaf_removed = true;
        assert_eq!(
            detached_text(&report, &lab),
            "detached mine from lab main:\n  removed Ingress/fedilab-main/mine\n  \
             removed its certificate\n"
        );
    }
}
