//! `fedilab serve`: the lab's host side in one process, the embedded DNS
//! (`fedilab-dns`) and the recording proxy with its UI
//! (`fedilab-inspector`), configured from the lab state that `fedilab up`
//! writes (`<data>/labs/<lab>/lab.json`).
//!
//! - [`ServePlan::from_state`] (pure): the zone's names and answer, the
//!   inspector's routes (path prefixes and server kinds kept) and the
//!   listen addresses.
//! - [`run`]: binds and serves in the foreground, writes `serve.json`
//!   (pid, bound addresses, start time), reloads on SIGHUP without
//!   dropping recordings, stops on SIGTERM/SIGINT. [`Serving`] is the same
//!   without signals.
//! - [`dns`]: the DNS half, shared with `fedilab dns serve`: UDP and TCP
//!   bound on one address, the server with a swappable zone, and the
//!   signals (SIGHUP reloads, SIGTERM/SIGINT stop).
//! - [`daemon`]: start it in the background (systemd user unit or detached
//!   process), and status, stop and reload it, never signalling a pid that
//!   is not a `serve` of the lab.
//!
//! The files it keeps in the lab dir are listed in [`runtime`].
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

pub mod daemon;
pub mod dns;
mod plan;
mod run;
pub mod runtime;

pub use daemon::{Launch, ServeCommand, ServeStatus};
pub use plan::{PlanError, ServePlan};
pub use run::{ReloadReport, RunError, Serving, run, runtime_info};
pub use runtime::{RuntimeInfo, ServeAddresses};
