//! The fedilab inspector: a recording, ActivityPub-aware reverse proxy that
//! sits in front of every lab instance, with a live UI, a JSON API and HAR
//! export.
//!
//! - [`proxy`](crate::Inspector::start): routes by Host (and the longest
//!   matching path prefix) to each instance's upstream, forwarding requests
//!   unchanged (plus X-Forwarded-For/-Proto), WebSocket upgrades included,
//!   and records each exchange. [`Inspector::set_routes`] replaces the
//!   routes while it runs; recordings stay.
//! - [`Store`]: bounded by count and bytes, oldest evicted, optionally
//!   persisted as JSON lines and reloaded on restart.
//! - [`analysis`]: classification, `Create(Note)`-style activity names,
//!   actor/object ids and the HTTP signature verdict (draft-cavage and
//!   RFC 9421, RSA and Ed25519; FEP-8b32 proofs), computed on read and
//!   cached, never on the hot path, with actor keys learned by watching
//!   actor documents cross the proxy (or fetched through the upstream).
//!   Implementations' extensions (Misskey's reactions and quotes, a fetch
//!   refused unsigned) become the exchange's `detail` (module `dialect`).
//! - [`fault`]: fault rules (delay, a status, a reset, a corrupted body or
//!   signature, a duplicate) the proxy applies to matching requests; with
//!   no rule loaded the proxy pays one atomic load.
//! - The UI/API listener serves one self-contained page and the API that
//!   `API.md` documents, replays included.
//!
//! The inspector binds nothing itself: callers pass bound listeners (tests
//! use `127.0.0.1:0`).
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

pub mod analysis;
mod api;
pub mod api_types;
mod capture;
pub mod client;
pub mod config;
pub mod decode;
mod dialect;
pub mod exchange;
mod fast;
pub mod fault;
pub mod filter;
mod guard;
pub mod har;
mod keys;
pub mod markers;
mod proxy;
mod recorded;
mod routes;
pub mod signature;
pub mod store;
mod upstream;
mod view;
mod watched;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::routes::{RouteTable, SharedRoutes};

pub use analysis::{
    Analysis, Analyzer, KeySource, Kind, ProofCheck, ProofStatus, Verdict, Verification,
};
pub use config::{
    ConfigError, InspectorConfig, Route, ServerKind, SignatureConfig, StoreLimits, Upstream,
    check_routes, parse_size,
};
pub use exchange::{Exchange, Marks};
pub use fault::{Faults, RuleSpec};
pub use filter::Filter;
pub use store::{PersistError, Store, StoreStats};

/// Why the inspector did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid inspector configuration")]
    Config(#[source] ConfigError),
    /// A fault rule of the configuration is not valid.
    #[error("invalid fault rule {index}")]
    Fault {
        /// Its position in [`InspectorConfig::faults`].
        index: usize,
        /// Why.
        #[source]
        source: fault::RuleError,
    },
    /// The proxy's threads or their runtimes could not be started.
    #[error("cannot start the proxy's threads")]
    Threads(#[source] std::io::Error),
    /// The persistence file could not be loaded or opened.
    #[error("cannot use the capture file")]
    Persist(#[source] PersistError),
    /// A listener has no local address.
    #[error("cannot read the {which} listener's address")]
    Listener {
        /// `proxy` or `UI`.
        which: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Learns keys from what the store queued for the watcher (the exchanges
/// that may carry keys), every 100 ms, until shutdown, on the blocking
/// pool, not on a worker whose connections would wait for it.
async fn learn_keys(analyzer: Arc<Analyzer>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let analyzer = Arc::clone(&analyzer);
                let _ = tokio::task::spawn_blocking(move || analyzer.learn_keys()).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Adds a rule and records the change on the store's timeline.
fn add_fault(
    faults: &Faults,
    store: &Store,
    spec: RuleSpec,
) -> Result<fault::RuleView, fault::RuleError> {
    let rule = faults.add(spec)?;
    store.record_change(api::change_added(&rule));
    Ok(rule)
}

/// Removes rule `id` and records the removal on the store's timeline;
/// false when there is no such rule (any more).
fn remove_fault(faults: &Faults, store: &Store, id: u64) -> bool {
    let removed = faults.remove(id);
    if removed {
        store.record_change(api::change_removed(id));
    }
    removed
}

/// A running inspector: the proxy task, the UI/API task, and the store.
#[derive(Debug)]
pub struct Inspector {
    store: Arc<Store>,
    analyzer: Arc<Analyzer>,
    routes: SharedRoutes,
    faults: Arc<Faults>,
    proxy_addr: SocketAddr,
    ui_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Inspector {
    /// Starts serving on the given listeners: `proxy` for the instances'
    /// traffic, `ui` (if any) for the page and the API. Must be called
    /// inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StartError`] for an invalid configuration, an unusable capture
    /// file, or listeners without an address.
    pub fn start(
        config: InspectorConfig,
        proxy: TcpListener,
        ui: Option<TcpListener>,
    ) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let proxy_addr = proxy.local_addr().map_err(|source| StartError::Listener {
            which: "proxy",
            source,
        })?;
        let ui_addr = ui
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(|source| StartError::Listener {
                which: "UI",
                source,
            })?;
        let store = match &config.persist {
            Some(path) => Store::open(config.limits, path).map_err(StartError::Persist)?,
            None => Store::new(config.limits),
        };
        let routes = RouteTable::new(&config.routes).shared();
        let faults = Arc::new(Faults::default());
        for (index, spec) in config.faults.iter().enumerate() {
            add_fault(&faults, &store, spec.clone())
                .map_err(|source| StartError::Fault { index, source })?;
        }
        let proxy_state = Arc::new(proxy::ProxyState::new(
            Arc::clone(&routes),
            Arc::clone(&store),
            config.max_body_bytes,
            Arc::clone(&faults),
            config.signatures.clone(),
        ));
        let analyzer = Arc::new(Analyzer::new(
            config.signatures.clone(),
            keys::KeyFetcher::new(Arc::clone(&routes), config.signatures.clone()),
            watched::KeyWatch::new(Arc::clone(&store)),
        ));
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = proxy::spawn(proxy, &proxy_state, &rx, config.proxy_threads)
            .map_err(StartError::Threads)?;
        tasks.push(tokio::spawn(learn_keys(Arc::clone(&analyzer), rx.clone())));
        if let (Some(ui), Some(addr)) = (ui, ui_addr) {
            let state = api::ApiState {
                store: Arc::clone(&store),
                analyzer: Arc::clone(&analyzer),
                routes: Arc::clone(&routes),
                proxy: Arc::clone(&proxy_state),
                proxy_addr,
            };
            tasks.push(tokio::spawn(api::serve(ui, addr, state, rx)));
        }
        Ok(Self {
            store,
            analyzer,
            routes,
            faults,
            proxy_addr,
            ui_addr,
            shutdown,
            tasks,
        })
    }

    /// Routes requests by `routes` from now on: requests already forwarded
    /// finish on their old upstream, recordings stay, the UI and API list
    /// the new hosts. Actor keys cached from the old routes are reused
    /// until they expire.
    ///
    /// # Errors
    /// [`ConfigError::DuplicateHost`] when a host (and path prefix) is
    /// routed twice; the old routes stay in effect.
    pub fn set_routes(&self, routes: &[Route]) -> Result<(), ConfigError> {
        check_routes(routes)?;
        self.routes.store(Arc::new(RouteTable::new(routes)));
        Ok(())
    }

    /// Where the proxy listens.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where the UI and API listen, if they do.
    pub fn ui_addr(&self) -> Option<SocketAddr> {
        self.ui_addr
    }

    /// The exchange store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The fault rules in force (the API changes them too).
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Adds a fault rule as `POST /api/faults` does: in force at once,
    /// recorded on the timeline.
    ///
    /// # Errors
    /// [`fault::RuleError`] for a rule that cannot be applied; nothing
    /// changes.
    pub fn add_fault(&self, spec: RuleSpec) -> Result<fault::RuleView, fault::RuleError> {
        add_fault(&self.faults, &self.store, spec)
    }

    /// Removes fault rule `id` as `DELETE /api/faults/{id}` does, recorded
    /// on the timeline; false when there is no such rule (any more).
    pub fn remove_fault(&self, id: u64) -> bool {
        remove_fault(&self.faults, &self.store, id)
    }

    /// The analyzer (cached ActivityPub view and signature verdicts).
    pub fn analyzer(&self) -> &Arc<Analyzer> {
        &self.analyzer
    }

    /// Stops accepting connections and waits (up to 5 s) for the listeners
    /// to close; connections in flight end with the runtime. Flushes the
    /// capture file.
    ///
    /// # Errors
    /// [`PersistError`] when the capture file could not be flushed.
    pub async fn shutdown(self) -> Result<(), PersistError> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .unwrap_or(Ok(()))
    }
}
