//! Test support for the commands that move an instance's state (reset,
//! snapshots, backup, restore, import): a throwaway PostgreSQL
//! ([`TempPostgres`]) and Redis ([`TempRedis`]) from the machine's Debian
//! packages, each on a free loopback port in its own temporary directory and
//! gone when dropped; a schema of Mastodon's size ([`mastodon_like`]); and
//! fingerprints that say whether two states hold the same data
//! ([`fingerprint`]).
//!
//! Only tests and benchmark scripts use this crate. It never touches the
//! machine's own PostgreSQL or Redis services.

pub mod fingerprint;
pub mod mastodon_like;
mod postgres;
mod redis;

pub use postgres::TempPostgres;
pub use redis::TempRedis;

use std::io;
use std::net::TcpListener;
use std::process::{Command, Output};

/// A free TCP port on 127.0.0.1 (the listener is closed before the server
/// binds it; servers are started with a retry for the rare race).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `command`, failing with its stderr when it exits non-zero.
fn run(command: &mut Command) -> io::Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run {:?}: {e}", command.get_program()),
        )
    })?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "{:?} {:?} failed ({status}): {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    String::from_utf8(stdout).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
