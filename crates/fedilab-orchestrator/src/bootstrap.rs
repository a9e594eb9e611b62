//! `fedilab bootstrap`: k3s on a fresh VM. [`plan`] is pure (what would be
//! done, printed by `--dry-run`); [`install_k3s`] runs k3s's official
//! install script and [`wait_node_ready`] waits for the node.
//!
//! k3s is installed with its defaults, which fedilab relies on: Traefik,
//! CoreDNS importing `coredns-custom`, local-path storage, and NetworkPolicy
//! enforcement (never `--disable-network-policy`: it is what keeps the lab
//! off the internet). Its cluster-admin kubeconfig stays 0600 and root's;
//! the invoking user (`SUDO_USER` when run through sudo) gets a 0600 copy
//! of their own in `~/.kube/config` ([`handover`], pure), never one that
//! clobbers a kubeconfig they already have.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

use crate::cluster::{ConnectOptions, connect};
use crate::kubeconfig::K3S_KUBECONFIG;
use crate::readiness::is_node_ready;

/// The flags k3s is installed with: none. Its defaults are what fedilab
/// needs, and they keep the kubeconfig readable by root only.
pub const K3S_EXEC: &str = "";

/// k3s's official install command.
pub const K3S_INSTALL_COMMAND: &str = "curl -sfL https://get.k3s.io | sh -";

/// Who ran `fedilab bootstrap`: the user who gets a copy of the kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker {
    /// Login name (`SUDO_USER` under sudo, else the current user).
    pub user: String,
    /// Their primary group.
    pub group: String,
    /// Their home directory.
    pub home: PathBuf,
}

/// Where the invoking user's copy of k3s's kubeconfig goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// Copy k3s's kubeconfig to `to`, mode 0600, owned by `owner:group`.
    Copy {
        /// The copy.
        to: PathBuf,
        /// Its owner.
        owner: String,
        /// Its group.
        group: String,
        /// Set when the user's `~/.kube/config` exists and is left alone:
        /// the copy is written next to it, and the user points at it.
        beside_existing: Option<PathBuf>,
    },
    /// Root without sudo: k3s's own file is readable, nothing to copy.
    None,
}

impl std::fmt::Display for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handover::None => write!(f, "root reads {K3S_KUBECONFIG} itself: no copy"),
            Handover::Copy {
                to,
                owner,
                group,
                beside_existing,
            } => {
                write!(
                    f,
                    "copy {K3S_KUBECONFIG} (kept 0600, root's) to {} (0600, {owner}:{group})",
                    to.display()
                )?;
                if let Some(existing) = beside_existing {
                    write!(
                        f,
                        "; {} exists and is left alone: use --kubeconfig {} or KUBECONFIG",
                        existing.display(),
                        to.display()
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Where the invoking user's kubeconfig copy goes: `~/.kube/config`, or,
/// when that exists (another cluster's, or an earlier copy that differs),
/// `~/.kube/k3s.yaml` beside it. `None` for root without sudo. Pure.
pub fn handover(invoker: Option<&Invoker>, user_config_exists: bool) -> Handover {
    let Some(invoker) = invoker else {
        return Handover::None;
    };
    let kube = invoker.home.join(".kube");
    let config = kube.join("config");
    let (to, beside_existing) = if user_config_exists {
        (kube.join("k3s.yaml"), Some(config))
    } else {
        (config, None)
    };
    Handover::Copy {
        to,
        owner: invoker.user.clone(),
        group: invoker.group.clone(),
        beside_existing,
    }
}

/// The command that makes the copy: `install` creates `~/.kube` and sets
/// mode and owner in one step (through sudo unless already root).
pub fn handover_command(handover: &Handover, as_root: bool) -> Option<Vec<String>> {
    let Handover::Copy {
        to, owner, group, ..
    } = handover
    else {
        return None;
    };
    let mut command: Vec<String> = Vec::new();
    if !as_root {
        command.push("sudo".to_owned());
    }
    command.extend(
        [
            "install",
            "-D",
            "-m",
            "600",
            "-o",
            owner,
            "-g",
            group,
            K3S_KUBECONFIG,
        ]
        .map(str::to_owned),
    );
    command.push(to.display().to_string());
    Some(command)
}

/// One step of the bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// k3s is already there: nothing to install.
    AlreadyInstalled {
        /// Its kubeconfig.
        kubeconfig: PathBuf,
    },
    /// Run the install script (asks for sudo when not root).
    Install {
        /// The shell command.
        command: String,
    },
    /// Give the invoking user a 0600 copy of the kubeconfig
    /// ([`hand_over_kubeconfig`]); k3s's own file stays root's.
    HandOver,
    /// Wait for the node to report Ready.
    WaitNodeReady {
        /// The kubeconfig to use.
        kubeconfig: PathBuf,
        /// How long at most.
        timeout: Duration,
    },
    /// Tell the user what to run next.
    Next {
        /// The command.
        command: String,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::AlreadyInstalled { kubeconfig } => write!(
                f,
                "k3s is already installed ({} exists): skip the installation",
                kubeconfig.display()
            ),
            Step::Install { command } => write!(f, "install k3s: {command}"),
            Step::HandOver => write!(
                f,
                "give you a copy of {K3S_KUBECONFIG} (mode 0600, yours; k3s's stays root's)"
            ),
            Step::WaitNodeReady {
                kubeconfig,
                timeout,
            } => write!(
                f,
                "wait up to {}s for the node to be Ready (kubeconfig {})",
                timeout.as_secs(),
                kubeconfig.display()
            ),
            Step::Next { command } => write!(f, "next: {command}"),
        }
    }
}

/// The steps, given whether k3s's kubeconfig already exists.
pub fn plan(k3s_installed: bool, node_timeout: Duration) -> Vec<Step> {
    let kubeconfig = PathBuf::from(K3S_KUBECONFIG);
    let mut steps = Vec::new();
    if k3s_installed {
        steps.push(Step::AlreadyInstalled {
            kubeconfig: kubeconfig.clone(),
        });
    } else {
        steps.push(Step::Install {
            command: K3S_INSTALL_COMMAND.to_owned(),
        });
    }
    steps.push(Step::HandOver);
    steps.push(Step::WaitNodeReady {
        kubeconfig,
        timeout: node_timeout,
    });
    steps.push(Step::Next {
        command: "fedilab up --instances 2".to_owned(),
    });
    steps
}

/// Why the bootstrap stopped.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The install script could not run or failed.
    #[error("the k3s install script {what}.\nRun it by hand to see why: {K3S_INSTALL_COMMAND}")]
    Install {
        /// What went wrong.
        what: String,
    },
    /// The kubeconfig could not be copied to the invoking user.
    #[error(
        "could not give you a copy of k3s's kubeconfig: `{command}` {what}.\n\
         Copy it by hand: sudo install -D -m 600 -o \"$USER\" {K3S_KUBECONFIG} ~/.kube/config"
    )]
    Handover {
        /// The command run.
        command: String,
        /// What went wrong.
        what: String,
    },
    /// The node did not become Ready in time.
    #[error(
        "the k3s node is not Ready after {}s ({last}).\n\
         `sudo systemctl status k3s` and `sudo journalctl -u k3s` show why",
        waited.as_secs()
    )]
    NodeNotReady {
        /// How long it waited.
        waited: Duration,
        /// The last thing seen.
        last: String,
    },
}

/// Runs the install script through `sh -c`, inheriting stdio ([`plan`]'s
/// next step hands the kubeconfig over, [`hand_over_kubeconfig`]).
///
/// # Errors
/// [`BootstrapError::Install`] when it cannot start or exits non-zero.
pub fn install_k3s() -> Result<(), BootstrapError> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(K3S_INSTALL_COMMAND)
        .status()
        .map_err(|e| BootstrapError::Install {
            what: format!("could not start: {e}"),
        })?;
    if !status.success() {
        return Err(BootstrapError::Install {
            what: format!("failed ({status})"),
        });
    }
    Ok(())
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Whether this process runs as root, and who invoked it: `SUDO_USER`
/// when set (and not root), else the current user when not root; `None`
/// for root itself. Reads the environment and runs `id` and `getent`.
pub fn invoker() -> (bool, Option<Invoker>) {
    let as_root = command_output("id", &["-u"]).as_deref() == Some("0");
    let user = match std::env::var("SUDO_USER") {
        Ok(u) if as_root && !u.is_empty() && u != "root" => Some(u),
        _ if as_root => None,
        _ => command_output("id", &["-un"]),
    };
    let invoker = user.and_then(|user| {
        let group = command_output("id", &["-gn", &user])?;
        let entry = command_output("getent", &["passwd", &user])?;
        let home = entry.split(':').nth(5).filter(|h| !h.is_empty())?;
        Some(Invoker {
            user,
            group,
            home: PathBuf::from(home),
        })
    });
    (as_root, invoker)
}

/// Copies k3s's kubeconfig to the invoking user ([`handover`]); k3s's own
/// file stays 0600. Returns what was done.
///
/// # Errors
/// [`BootstrapError::Handover`] when the copy command fails.
pub fn hand_over_kubeconfig() -> Result<Handover, BootstrapError> {
    let (as_root, invoker) = invoker();
    let exists = invoker
        .as_ref()
        .is_some_and(|i| i.home.join(".kube").join("config").exists());
    let plan = handover(invoker.as_ref(), exists);
    let Some(command) = handover_command(&plan, as_root) else {
        return Ok(plan);
    };
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .map_err(|e| BootstrapError::Handover {
            command: command.join(" "),
            what: format!("could not start: {e}"),
        })?;
    if status.success() {
        Ok(plan)
    } else {
        Err(BootstrapError::Handover {
            command: command.join(" "),
            what: format!("failed ({status})"),
        })
    }
}

/// Waits until a node reachable through `kubeconfig` is Ready, retrying
/// while the file or the API server is not there yet. When this process
/// may not read `kubeconfig` (k3s's own, 0600 root), it connects through
/// the kubeconfig found like kubectl finds it: the user's copy.
///
/// # Errors
/// [`BootstrapError::NodeNotReady`] after `timeout`.
///
/// # Caveats
/// Polls every 2 s; bounded by `timeout`.
pub async fn wait_node_ready(
    kubeconfig: &Path,
    timeout: Duration,
) -> Result<String, BootstrapError> {
    let mut last = String::from("nothing checked yet");
    // k3s keeps its file root's: a user reads the copy they were given,
    // found as kubectl finds it (KUBECONFIG, ~/.kube/config).
    let readable = std::fs::File::open(kubeconfig)
        .map(|_| true)
        .unwrap_or_else(|e| e.kind() != std::io::ErrorKind::PermissionDenied);
    let options = ConnectOptions {
        kubeconfig: readable.then(|| kubeconfig.to_owned()),
        context: None,
    };
    let polling = async {
        loop {
            match connect(&options).await {
                Err(e) => last = e.to_string(),
                Ok(cluster) => match Api::<Node>::all(cluster.client.clone())
                    .list(&ListParams::default())
                    .await
                {
                    Err(e) => last = format!("API server: {e}"),
                    Ok(list) => {
                        if let Some(node) = list.items.iter().find(|n| is_node_ready(Some(n))) {
                            return node.metadata.name.clone().unwrap_or_default();
                        }
                        last = format!("{} node(s), none Ready", list.items.len());
                    }
                },
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    match tokio::time::timeout(timeout, polling).await {
        Ok(node) => Ok(node),
        Err(_) => Err(BootstrapError::NodeNotReady {
            waited: timeout,
            last,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_vm_plan_installs_with_network_policy_on() {
        let steps = plan(false, Duration::from_secs(180));
        assert_eq!(steps.len(), 4);
        let Step::Install { command } = &steps[0] else {
            panic!("first step installs: {steps:?}");
        };
        assert_eq!(command, "curl -sfL https://get.k3s.io | sh -");
        assert!(!command.contains("disable-network-policy"));
        assert_eq!(steps[1], Step::HandOver);
        assert_eq!(steps[3].to_string(), "next: fedilab up --instances 2");
    }

    /// Issue 12: the cluster-admin kubeconfig must not become readable by
    /// every local user.
    #[test]
    fn issue_12_kubeconfig_stays_private() {
        for step in plan(false, Duration::from_secs(1)) {
            let text = step.to_string();
            assert!(!text.contains("write-kubeconfig-mode"), "{text}");
            assert!(!text.contains("644"), "{text}");
        }
        assert!(K3S_EXEC.is_empty());
    }

    fn alice() -> Invoker {
        Invoker {
            user: "alice".into(),
            group: "staff".into(),
            home: PathBuf::from("/home/alice"),
        }
    }

    #[test]
    fn the_invoking_user_gets_a_private_copy() {
        let h = handover(Some(&alice()), false);
        assert_eq!(
            h,
            Handover::Copy {
                to: PathBuf::from("/home/alice/.kube/config"),
                owner: "alice".into(),
                group: "staff".into(),
                beside_existing: None,
            }
        );
        let command = handover_command(&h, false).expect("a copy");
        assert_eq!(
            command.join(" "),
            "sudo install -D -m 600 -o alice -g staff /etc/rancher/k3s/k3s.yaml \
             /home/alice/.kube/config"
        );
        // Under sudo, root runs install itself, for SUDO_USER.
        let command = handover_command(&h, true).expect("a copy");
        assert_eq!(command[0], "install");
    }

    #[test]
    fn an_existing_user_kubeconfig_is_left_alone() {
        let h = handover(Some(&alice()), true);
        let Handover::Copy {
            to,
            beside_existing,
            ..
        } = &h
        else {
            panic!("a copy: {h:?}");
        };
        assert_eq!(to, &PathBuf::from("/home/alice/.kube/k3s.yaml"));
        assert_eq!(
            beside_existing.as_deref(),
            Some(Path::new("/home/alice/.kube/config"))
        );
        assert!(h.to_string().contains("left alone"), "{h}");
    }

    #[test]
    fn root_without_sudo_needs_no_copy() {
        assert_eq!(handover(None, false), Handover::None);
        assert_eq!(handover_command(&Handover::None, true), None);
    }

    #[test]
    fn installed_k3s_is_not_reinstalled() {
        let steps = plan(true, Duration::from_secs(180));
        assert!(matches!(steps[0], Step::AlreadyInstalled { .. }));
        assert!(!steps.iter().any(|s| matches!(s, Step::Install { .. })));
        // The copy is made on an installed k3s too (a VM bootstrapped by
        // an older fedilab, or by hand).
        assert_eq!(steps[1], Step::HandOver);
    }
}
