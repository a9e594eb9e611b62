//! [`Cluster`]: a kube client with a request counter, built from a
//! kubeconfig chosen like kubectl, or around any tower service (a fake API
//! server in tests).

use std::path::PathBuf;
use std::time::Duration;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::kubeconfig::{K3S_KUBECONFIG, KubeconfigSource, choose_kubeconfig};
use crate::metrics::{CountLayer, RequestCounter};

/// A connection to one API server.
#[derive(Clone)]
pub struct Cluster {
    /// The client; every request goes through the counter.
    pub client: Client,
    /// Requests sent through `client`.
    pub counter: RequestCounter,
    /// The API server's URL, for messages.
    pub server: String,
    /// Where the configuration came from, for messages.
    pub source: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster reached through `service` (for tests: a
    /// `tower_test::mock::pair`), counting its requests.
    pub fn from_service<S, B>(service: S, server: &str) -> Cluster
    where
        S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<tower::BoxError>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let counter = RequestCounter::default();
        let client = ClientBuilder::new(service, "default")
            .with_layer(&CountLayer::new(counter.clone()))
            .build();
        Cluster {
            client,
            counter,
            server: server.to_owned(),
            source: "a test service".to_owned(),
        }
    }
}

/// How to find the cluster: `--kubeconfig` and `--context`.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; the kubeconfig's current context when `None`.
    pub context: Option<String>,
}

/// Why no client could be built. Reaching the server is checked later, by
/// the preflight.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No kubeconfig anywhere.
    #[error(
        "no kubeconfig found (looked at {}).\n\
         Start k3s (on a fresh VM: `fedilab bootstrap`), or pass --kubeconfig FILE",
        tried.join(", ")
    )]
    NoKubeconfig {
        /// The places looked at.
        tried: Vec<String>,
    },
    /// A kubeconfig file could not be read or parsed.
    #[error("cannot read the kubeconfig {path}{hint}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
        /// kube's error.
        #[source]
        source: KubeconfigError,
    },
    /// The kubeconfig has no usable context, cluster or user.
    #[error("cannot use the kubeconfig {source_desc}{context}")]
    Config {
        /// Where the kubeconfig came from.
        source_desc: String,
        /// ` (context NAME)` when `--context` was given.
        context: String,
        /// kube's error.
        #[source]
        source: KubeconfigError,
    },
    /// The client could not be built (TLS material, proxy).
    #[error("cannot build a Kubernetes client for {server}")]
    Client {
        /// The API server URL.
        server: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
}

/// Builds a client from the kubeconfig chosen by [`choose_kubeconfig`] from
/// `options` and the environment (`KUBECONFIG`, `HOME`).
///
/// # Errors
/// [`ConnectError`] when no kubeconfig exists or it cannot be used. Does not
/// contact the server.
pub async fn connect(options: &ConnectOptions) -> Result<Cluster, ConnectError> {
    let env = std::env::var_os("KUBECONFIG");
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let source = choose_kubeconfig(
        options.kubeconfig.as_deref(),
        env.as_deref(),
        home.as_deref(),
        |p| p.exists(),
    )
    .map_err(|tried| ConnectError::NoKubeconfig { tried })?;
    let mut merged: Option<Kubeconfig> = None;
    for path in source.paths() {
        let hint = if path.as_os_str() == K3S_KUBECONFIG {
            ".\nk3s writes it readable by root only unless installed with \
             --write-kubeconfig-mode 644: run `sudo chmod 644 /etc/rancher/k3s/k3s.yaml` \
             or copy it to ~/.kube/config"
        } else {
            ""
        };
        let config = Kubeconfig::read_from(&path).map_err(|source| ConnectError::Read {
            path: path.clone(),
            hint,
            source,
        })?;
        merged = Some(match merged {
            None => config,
            Some(m) => m.merge(config).map_err(|source| ConnectError::Read {
                path: path.clone(),
                hint: "",
                source,
            })?,
        });
    }
    let kubeconfig = merged.ok_or_else(|| ConnectError::NoKubeconfig {
        tried: vec![source.to_string()],
    })?;
    let kc_options = KubeConfigOptions {
        context: options.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &kc_options)
        .await
        .map_err(|e| ConnectError::Config {
            source_desc: source.to_string(),
            context: options
                .context
                .as_ref()
                .map(|c| format!(" (context {c})"))
                .unwrap_or_default(),
            source: e,
        })?;
    config.connect_timeout = Some(Duration::from_secs(10));
    from_config(config, source)
}

fn from_config(config: Config, source: KubeconfigSource) -> Result<Cluster, ConnectError> {
    let server = config.cluster_url.to_string();
    let counter = RequestCounter::default();
    let client = ClientBuilder::try_from(config)
        .map_err(|source| ConnectError::Client {
            server: server.clone(),
            source,
        })?
        .with_layer(&CountLayer::new(counter.clone()))
        .build();
    Ok(Cluster {
        client,
        counter,
        server,
        source: source.to_string(),
    })
}

/// A cluster from an explicit [`Config`] (tests point one at a closed port).
///
/// # Errors
/// [`ConnectError::Client`] when the client cannot be built.
pub fn cluster_from_config(config: Config, source: &str) -> Result<Cluster, ConnectError> {
    from_config(config, KubeconfigSource::Flag(PathBuf::from(source)))
}
