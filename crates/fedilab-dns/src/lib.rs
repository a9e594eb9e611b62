//! The lab's authoritative DNS server.
//!
//! Two halves, as everywhere in fedilab: a pure one and an I/O one.
//!
//! - [`zone()`] builds a [`Zone`] from a [`LabSpec`](fedilab_profile::LabSpec)
//!   and the addresses to answer with (the node where Traefik listens): SOA
//!   and NS at the apex, A/AAAA for the apex, `ns`, each instance host and the
//!   wildcard `*.<domain>`. It also compiles every answer the zone can give
//!   into wire bytes, so that serving a query is a lookup and a copy.
//! - [`Server::serve`] answers over UDP and TCP sockets that the caller bound
//!   (this crate never binds), until its [`Server::shutdown_token`] is
//!   cancelled, and returns the [`Stats`] it counted. [`SharedZone`] lets a
//!   caller swap the zone (SIGHUP) while queries are in flight.
//!
//! The server is authoritative only: names outside the lab domain get
//! REFUSED, zone transfers are refused, recursion is never offered. Names
//! covered by the wildcard follow RFC 4592 (NOERROR/NODATA, never NXDOMAIN),
//! which hickory-server's in-memory zone gets wrong (hickory-dns#2905).
//!
//! Why not hickory-server's `Server` and `Catalog`: they parse every query
//! into an owned `Message`, route it through async trait objects and encode
//! the response anew, about 29k queries/s on a two-core machine. A lab zone
//! has a handful of names, so every response is precomputed here with
//! hickory-proto's record types and encoder, and the hot path only parses a
//! header and a question and patches the ID, flags and EDNS of a template.
//! On Linux, UDP goes 32 datagrams per `recvmmsg`/`sendmmsg` call, as in
//! Knot (`batch`, the crate's only `unsafe` code).
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

#[cfg(target_os = "linux")]
mod batch;
pub mod query;
pub mod resolver;
mod server;
mod stats;
mod wire;
mod zone;

pub use server::{ServeError, Server, ServerOptions, SharedZone};
pub use stats::Stats;
pub use zone::{DEFAULT_TTL, NS_LABEL, Zone, ZoneError, zone, zone_for_hosts};

/// The largest UDP response this server sends, and the payload size it
/// advertises in EDNS: 1232 bytes, the DNS Flag Day 2020 value that fits in
/// one IPv6 packet on any path.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
