//! `fedilab bootstrap`: k3s on a fresh VM. [`plan`] is pure (what would be
//! done, printed by `--dry-run`); [`install_k3s`] runs k3s's official
//! install script and [`wait_node_ready`] waits for the node.
//!
//! k3s is installed with its defaults, which fedilab relies on: Traefik,
//! CoreDNS importing `coredns-custom`, local-path storage, and NetworkPolicy
//! enforcement (never `--disable-network-policy`: it is what keeps the lab
//! off the internet). Only the kubeconfig mode changes, so the user's
//! fedilab can read it without sudo.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

use crate::cluster::{ConnectOptions, connect};
use crate::kubeconfig::K3S_KUBECONFIG;
use crate::readiness::is_node_ready;

/// The flags k3s is installed with.
pub const K3S_EXEC: &str = "--write-kubeconfig-mode 644";

/// k3s's official install command.
pub const K3S_INSTALL_COMMAND: &str =
    "curl -sfL https://get.k3s.io | INSTALL_K3S_EXEC='--write-kubeconfig-mode 644' sh -";

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

/// Runs the install script through `sh -c`, inheriting stdio.
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
    if status.success() {
        Ok(())
    } else {
        Err(BootstrapError::Install {
            what: format!("failed ({status})"),
        })
    }
}

/// Waits until a node reachable through `kubeconfig` is Ready, retrying
/// while the file or the API server is not there yet.
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
    let options = ConnectOptions {
        kubeconfig: Some(kubeconfig.to_owned()),
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
        assert_eq!(steps.len(), 3);
        let Step::Install { command } = &steps[0] else {
            panic!("first step installs: {steps:?}");
        };
        assert!(command.starts_with("curl -sfL https://get.k3s.io | "));
        assert!(command.contains("INSTALL_K3S_EXEC='--write-kubeconfig-mode 644'"));
        assert!(!command.contains("disable-network-policy"));
        assert_eq!(steps[2].to_string(), "next: fedilab up --instances 2");
    }

    #[test]
    fn installed_k3s_is_not_reinstalled() {
        let steps = plan(true, Duration::from_secs(180));
        assert!(matches!(steps[0], Step::AlreadyInstalled { .. }));
        assert!(!steps.iter().any(|s| matches!(s, Step::Install { .. })));
    }
}
