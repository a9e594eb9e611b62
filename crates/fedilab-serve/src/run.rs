//! The serving process: binds the DNS (UDP and TCP) and the inspector (proxy
//! and UI, with the profile's fault rules in force) where the lab state
//! says, writes `serve.json`, reloads the zone, the routes and changed
//! profile rules on SIGHUP, and stops cleanly on SIGTERM or SIGINT.
//!
//! Log lines (tracing, target `fedilab_serve`) on start, reload and stop;
//! nothing is printed.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fedilab_dns::{ServeError, ServerOptions, ZoneError};
use fedilab_inspector::{Inspector, InspectorConfig, StartError};
use fedilab_state::{LabDir, StateError};
use tokio::net::TcpListener;

use crate::dns::{DnsBindError, DnsServing, SHUTDOWN_LIMIT, Signals, Wake, bind_dns, task_result};
use crate::plan::{PlanError, ServePlan};
use crate::runtime::{self, EXCHANGES_FILE, RuntimeInfo, ServeAddresses, UNIT_ENV};

/// Why `fedilab serve` could not start, reload or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The lab state could not be read.
    #[error("cannot read the lab state")]
    State(#[source] StateError),
    /// There is no lab state.
    #[error("no lab state in {dir}; run `fedilab up --lab {lab}` first")]
    NoState {
        /// The lab dir.
        dir: PathBuf,
        /// The lab.
        lab: String,
    },
    /// The state cannot be served.
    #[error(transparent)]
    Plan(PlanError),
    /// The zone could not be built from the state.
    #[error("cannot build the lab's zone")]
    Zone(#[source] ZoneError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for the {what}{hint}")]
    Bind {
        /// `DNS (UDP)`, `DNS (TCP)`, `proxy` or `UI`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What to do about it.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The inspector did not start.
    #[error("cannot start the inspector")]
    Inspector(#[source] StartError),
    /// `serve.json` could not be written.
    #[error("cannot write {path}")]
    Runtime {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another `fedilab serve` runs for this lab.
    #[error(
        "fedilab serve already runs for lab {lab:?} (pid {pid}); stop it first (`fedilab down` or kill {pid})"
    )]
    AlreadyRunning {
        /// The lab.
        lab: String,
        /// Its pid.
        pid: u32,
    },
    /// A signal handler could not be installed.
    #[error("cannot handle {signal}")]
    Signal {
        /// Which.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The DNS server stopped on its own.
    #[error("the DNS server stopped")]
    Dns(#[source] ServeError),
    /// The DNS server task ended abnormally (a bug).
    #[error("the DNS server task failed: {0}")]
    DnsTask(String),
}

/// A running DNS and inspector for one lab: [`Serving::start`], then
/// [`Serving::reload`] any number of times, then [`Serving::stop`].
/// [`run`] does this with signals.
#[derive(Debug)]
pub struct Serving {
    lab_dir: LabDir,
    plan: ServePlan,
    info: RuntimeInfo,
    dns: DnsServing,
    inspector: Option<Inspector>,
    /// The ids of the rules put in force from the plan's `faults` (a
    /// reload that changes those replaces these).
    profile_rules: Vec<u64>,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The zone's SOA serial before and after.
    pub serial: (u32, u32),
    /// How many hosts the zone names now.
    pub hosts: usize,
    /// How many routes the inspector has now.
    pub routes: usize,
    /// Listen addresses the state changed, which take a restart.
    pub restart_needed: bool,
    /// The profile's fault rules changed and were replaced: how many are
    /// in force now. `None` when they did not change.
    pub faults_replaced: Option<usize>,
}

fn load_plan(lab_dir: &LabDir) -> Result<ServePlan, RunError> {
    let state = lab_dir
        .load_state()
        .map_err(RunError::State)?
        .ok_or_else(|| RunError::NoState {
            dir: lab_dir.path().to_owned(),
            lab: runtime::lab_of(lab_dir.path()),
        })?;
    ServePlan::from_state(&state).map_err(RunError::Plan)
}

impl Serving {
    /// Reads `lab.json`, binds every listener, starts the DNS and the
    /// inspector (recording to `exchanges.jsonl`, reloaded from it) and
    /// writes `serve.json`. Must be called inside a multi-threaded Tokio
    /// runtime.
    ///
    /// # Errors
    /// [`RunError`]: no or unusable state, an address in use, an unusable
    /// capture file, `serve.json` not writable.
    pub async fn start(lab_dir: &LabDir) -> Result<Serving, RunError> {
        let plan = load_plan(lab_dir)?;
        let zone = plan.zone().map_err(RunError::Zone)?;
        let serial = zone.serial();
        let (udp, tcp) = bind_dns(plan.dns).await.map_err(dns_bind_error)?;
        let inspector = match plan.proxy {
            None => None,
            Some(proxy_addr) => {
                let proxy = bind_tcp(proxy_addr, "proxy").await?;
                let ui = match plan.ui {
                    Some(addr) => Some(bind_tcp(addr, "UI").await?),
                    None => None,
                };
                let config = InspectorConfig {
                    routes: plan.routes.clone(),
                    persist: Some(lab_dir.path().join(EXCHANGES_FILE)),
                    faults: plan.faults.clone(),
                    ..InspectorConfig::default()
                };
                Some(Inspector::start(config, proxy, ui).map_err(RunError::Inspector)?)
            }
        };
        // The config's rules are added before any listener serves, so they
        // are the first ones listed.
        let profile_rules: Vec<u64> = inspector
            .as_ref()
            .map(|i| {
                i.faults()
                    .list()
                    .iter()
                    .take(plan.faults.len())
                    .map(|r| r.id)
                    .collect()
            })
            .unwrap_or_default();
        let dns =
            DnsServing::start(udp, tcp, zone, ServerOptions::default()).map_err(|source| {
                RunError::Bind {
                    what: "DNS (UDP)",
                    addr: plan.dns,
                    hint: "",
                    source,
                }
            })?;

        let addresses = ServeAddresses {
            dns: dns.addr(),
            proxy: inspector.as_ref().map(Inspector::proxy_addr),
            ui: inspector.as_ref().and_then(Inspector::ui_addr),
        };
        let info = RuntimeInfo {
            pid: std::process::id(),
            proc_start: runtime::own_proc_start(),
            lab: plan.lab.clone(),
            addresses,
            started: jiff::Timestamp::now().to_string(),
            unit: std::env::var(UNIT_ENV).ok().filter(|u| !u.is_empty()),
            generation: 0,
            last_reload_error: None,
        };
        let serving = Serving {
            lab_dir: lab_dir.clone(),
            plan,
            info,
            dns,
            inspector,
            profile_rules,
        };
        serving.write_info()?;
        tracing::info!(
            lab = %serving.plan.lab,
            "serving {domain} ({hosts} names, serial {serial}): DNS on {dns} (UDP and TCP), {inspector}",
            domain = serving.plan.domain,
            hosts = serving.plan.hosts.len(),
            dns = addresses.dns,
            inspector = match (addresses.proxy, addresses.ui) {
                (Some(p), Some(u)) => format!(
                    "proxy on {p} ({} routes), UI on http://{u}/",
                    serving.plan.routes.len()
                ),
                (Some(p), None) => format!("proxy on {p} ({} routes), no UI", serving.plan.routes.len()),
                _ => "no inspector".to_owned(),
            },
        );
        if !serving.profile_rules.is_empty() {
            tracing::info!(
                lab = %serving.plan.lab,
                "fault rules from the profile in force: {}",
                rule_list(&serving.profile_rules, &serving.plan.faults)
            );
        }
        Ok(serving)
    }

    /// What `serve.json` says.
    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    /// The plan being served.
    pub fn plan(&self) -> &ServePlan {
        &self.plan
    }

    /// Re-reads `lab.json` and swaps the zone and the routes; queries and
    /// requests in flight finish on the old ones, recordings stay. When
    /// the profile's fault rules changed, the rules put in force from the
    /// old ones (those still there) are removed and the new ones added;
    /// rules added through the API stay. Listen addresses are not changed
    /// (that takes a restart; the report says so). Success or failure is recorded in `serve.json` (its
    /// `generation` goes up either way).
    ///
    /// # Errors
    /// [`RunError`] when the state cannot be read or served; the previous
    /// zone and routes stay in effect.
    pub fn reload(&mut self) -> Result<ReloadReport, RunError> {
        let result = self.try_reload();
        self.info.generation += 1;
        self.info.last_reload_error = result.as_ref().err().map(|e| error_chain(e));
        match &result {
            Ok(r) => tracing::info!(
                lab = %self.plan.lab,
                "reloaded: serial {} -> {}, {} names, {} routes{}{}",
                r.serial.0,
                r.serial.1,
                r.hosts,
                r.routes,
                match r.faults_replaced {
                    Some(_) => format!(
                        ", the profile's fault rules replaced: {}",
                        rule_list(&self.profile_rules, &self.plan.faults)
                    ),
                    None => String::new(),
                },
                if r.restart_needed {
                    "; the listen addresses changed, which takes a restart"
                } else {
                    ""
                }
            ),
            Err(e) => tracing::error!(
                lab = %self.plan.lab,
                "reload failed, still serving the previous zone and routes: {}",
                error_chain(e)
            ),
        }
        self.write_info()?;
        result
    }

    fn try_reload(&mut self) -> Result<ReloadReport, RunError> {
        let plan = load_plan(&self.lab_dir)?;
        let zone = plan.zone().map_err(RunError::Zone)?;
        let new_serial = zone.serial();
        if let Some((index, source)) = plan
            .faults
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.check().err().map(|e| (i, e)))
        {
            return Err(RunError::Inspector(StartError::Fault { index, source }));
        }
        if let Some(inspector) = &self.inspector {
            inspector
                .set_routes(&plan.routes)
                .map_err(|e| RunError::Inspector(StartError::Config(e)))?;
        }
        let mut faults_replaced = None;
        if let Some(inspector) = &self.inspector
            && plan.faults != self.plan.faults
        {
            for id in self.profile_rules.drain(..) {
                inspector.remove_fault(id);
            }
            for (index, rule) in plan.faults.iter().enumerate() {
                let view = inspector
                    .add_fault(rule.clone())
                    .map_err(|source| RunError::Inspector(StartError::Fault { index, source }))?;
                self.profile_rules.push(view.id);
            }
            faults_replaced = Some(self.profile_rules.len());
        }
        let old = self.dns.replace(zone);
        let restart_needed =
            plan.dns != self.plan.dns || plan.proxy != self.plan.proxy || plan.ui != self.plan.ui;
        let report = ReloadReport {
            serial: (old.serial(), new_serial),
            hosts: plan.hosts.len(),
            routes: plan.routes.len(),
            restart_needed,
            faults_replaced,
        };
        self.plan = plan;
        Ok(report)
    }

    fn write_info(&self) -> Result<(), RunError> {
        let dir = self.lab_dir.path();
        runtime::write_runtime(dir, &self.info).map_err(|source| RunError::Runtime {
            path: dir.join(runtime::RUNTIME_FILE),
            source,
        })
    }

    /// Stops the DNS and the inspector (flushing the recordings) and
    /// removes `serve.json` if it is still this process's.
    ///
    /// # Errors
    /// [`RunError::Dns`] when the DNS server had failed.
    ///
    /// # Caveats
    /// Waits at most 5 s for each of them.
    pub async fn stop(self) -> Result<(), RunError> {
        let dns = self.dns.stop().await;
        if let Some(inspector) = self.inspector
            && let Err(e) = inspector.shutdown().await
        {
            tracing::warn!("cannot flush the recordings: {}", error_chain(&e));
        }
        let dir = self.lab_dir.path();
        if runtime::read_runtime(dir).is_some_and(|i| i.pid == self.info.pid) {
            let _ = runtime::remove_if_present(&dir.join(runtime::RUNTIME_FILE));
        }
        match dns? {
            Some(stats) => tracing::info!(lab = %self.plan.lab, "stopped: {stats}"),
            None => tracing::warn!("the DNS server did not stop within {SHUTDOWN_LIMIT:?}"),
        }
        Ok(())
    }
}

/// Runs the lab's host side until SIGTERM or SIGINT: [`Serving::start`],
/// [`Serving::reload`] on every SIGHUP, [`Serving::stop`]. Must be called
/// inside a multi-threaded Tokio runtime.
///
/// # Errors
/// [`RunError`] when it cannot start (another `serve` runs for the lab,
/// no state, an address in use, ...), or the DNS server fails.
pub async fn run(lab_dir: &LabDir) -> Result<(), RunError> {
    // Handlers first: a signal sent once serve.json exists must find them.
    let mut signals = Signals::install()?;

    let dir = lab_dir.path();
    let lab = runtime::lab_of(dir);
    if let Some(other) = runtime::read_runtime(dir)
        && other.pid != std::process::id()
        && runtime::is_serve_process(other.pid, &lab, other.proc_start)
    {
        return Err(RunError::AlreadyRunning {
            lab,
            pid: other.pid,
        });
    }

    let mut serving = Serving::start(lab_dir).await?;
    let why = loop {
        match signals.next(serving.dns.task()).await {
            // Logged and recorded in serve.json; keep serving.
            Wake::Reload => {
                let _ = serving.reload();
            }
            Wake::Stop(signal) => break signal,
            Wake::Ended(ended) => {
                let dir = serving.lab_dir.path();
                let _ = runtime::remove_if_present(&dir.join(runtime::RUNTIME_FILE));
                return Err(match task_result(ended) {
                    Err(e) => e,
                    Ok(stats) => RunError::DnsTask(format!("returned early after {stats}")),
                });
            }
        }
    };
    tracing::info!(lab = %lab, "stopping on {why}");
    serving.stop().await
}

/// A DNS socket that could not be bound, with what to do about it.
fn dns_bind_error(e: DnsBindError) -> RunError {
    let what = if e.proto == "UDP" {
        "DNS (UDP)"
    } else {
        "DNS (TCP)"
    };
    bind_error(what, e.addr, e.source)
}

async fn bind_tcp(addr: SocketAddr, what: &'static str) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| bind_error(what, addr, source))
}

fn bind_error(what: &'static str, addr: SocketAddr, source: io::Error) -> RunError {
    let hint = match source.kind() {
        io::ErrorKind::AddrInUse => {
            "; another process listens there (another lab's `fedilab serve`, or an old one: \
             see `fedilab status`)"
        }
        io::ErrorKind::AddrNotAvailable => {
            "; this host has no such address any more (the node address changed?): \
             run `fedilab up` again"
        }
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => "; ports below 1024 need root",
        _ => "",
    };
    RunError::Bind {
        what,
        addr,
        hint,
        source,
    }
}

/// `rule 1: answer 503 when host=mastodon2; rule 2: ...`, or `none`.
fn rule_list(ids: &[u64], rules: &[fedilab_inspector::RuleSpec]) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    ids.iter()
        .zip(rules)
        .map(|(id, r)| format!("rule {id}: {}", r.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The lab dir's `serve.json`, if a process wrote one.
pub fn runtime_info(lab_dir: &Path) -> Option<RuntimeInfo> {
    runtime::read_runtime(lab_dir)
}
