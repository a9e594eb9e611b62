//! The DNS half of a serving process, shared by `fedilab serve` (beside the
//! inspector) and `fedilab dns serve` (alone): UDP and TCP bound on the same
//! address ([`bind_dns`]), the server running over them with a zone that can
//! be swapped ([`DnsServing`]), and the signals that drive the process
//! ([`Signals`]: SIGHUP reloads, SIGTERM and SIGINT stop).
//!
//! Nothing here reads the lab state or a profile, and nothing is printed:
//! each caller says where its zone comes from and how it reports.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use fedilab_dns::{ServeError, Server, ServerOptions, SharedZone, Stats, Zone};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::run::RunError;

/// How long stopping may take before we stop waiting.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// A DNS socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({proto})")]
pub struct DnsBindError {
    /// `UDP` or `TCP`.
    pub proto: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// UDP and TCP on the same address; with port 0, TCP takes the port the
/// kernel chose for UDP (ten tries, in case another process holds it for
/// TCP).
///
/// # Errors
/// [`DnsBindError`] for the socket that could not be bound (the last try's).
pub async fn bind_dns(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsBindError> {
    let attempts = if listen.port() == 0 { 10 } else { 1 };
    let error = |proto, addr, source| DnsBindError {
        proto,
        addr,
        source,
    };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|e| error("UDP", listen, e))?;
        let addr = udp.local_addr().map_err(|e| error("UDP", listen, e))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(error("TCP", addr, e)),
        }
    }
    Err(last.unwrap_or_else(|| error("TCP", listen, io::Error::from(io::ErrorKind::AddrInUse))))
}

/// The DNS server running over bound sockets, with its zone swappable.
#[derive(Debug)]
pub struct DnsServing {
    addr: SocketAddr,
    zone: SharedZone,
    stop: CancellationToken,
    pub(crate) task: JoinHandle<Result<Stats, ServeError>>,
}

impl DnsServing {
    /// Serves `zone` over `udp` and `tcp` (from [`bind_dns`]). Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    /// When the UDP socket's address cannot be read.
    pub fn start(
        udp: UdpSocket,
        tcp: TcpListener,
        zone: Zone,
        options: ServerOptions,
    ) -> io::Result<DnsServing> {
        let addr = udp.local_addr()?;
        let zone = SharedZone::new(zone);
        let server = Server::new(zone.clone()).with_options(options);
        let stop = server.shutdown_token();
        let task = tokio::spawn(server.serve(vec![udp], vec![tcp]));
        Ok(DnsServing {
            addr,
            zone,
            stop,
            task,
        })
    }

    /// Where it answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Swaps the zone; queries in flight finish on the old one, which is
    /// returned.
    pub fn replace(&self, zone: Zone) -> std::sync::Arc<Zone> {
        self.zone.replace(zone)
    }

    /// The server task, to wait on with [`Signals::next`].
    pub fn task(&mut self) -> &mut JoinHandle<Result<Stats, ServeError>> {
        &mut self.task
    }

    /// Stops the server and waits for it; `Ok(None)` when it did not stop
    /// within 5 s.
    ///
    /// # Errors
    /// [`RunError::Dns`] when the server had failed, [`RunError::DnsTask`]
    /// when its task did.
    pub async fn stop(self) -> Result<Option<Stats>, RunError> {
        self.stop.cancel();
        match tokio::time::timeout(SHUTDOWN_LIMIT, self.task).await {
            Ok(ended) => task_result(ended).map(Some),
            Err(_) => Ok(None),
        }
    }
}

/// The server task's end as a result: a server only returns on its own when
/// it failed.
pub(crate) fn task_result(
    ended: Result<Result<Stats, ServeError>, JoinError>,
) -> Result<Stats, RunError> {
    match ended {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(e)) => Err(RunError::Dns(e)),
        Err(e) => Err(RunError::DnsTask(e.to_string())),
    }
}

/// What woke a serving process.
#[derive(Debug)]
pub enum Wake<T> {
    /// SIGHUP: reload.
    Reload,
    /// SIGTERM or SIGINT (its name): stop.
    Stop(&'static str),
    /// The watched task ended on its own.
    Ended(Result<T, JoinError>),
}

/// SIGHUP, SIGTERM and SIGINT, handled from [`Signals::install`] on.
#[derive(Debug)]
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    /// Installs the handlers. Do it before telling anyone the process
    /// serves: a signal sent then must find them.
    ///
    /// # Errors
    /// [`RunError::Signal`] when a handler cannot be installed.
    pub fn install() -> Result<Signals, RunError> {
        let sig = |kind, name| {
            signal(kind).map_err(|source| RunError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            hangup: sig(SignalKind::hangup(), "SIGHUP")?,
            terminate: sig(SignalKind::terminate(), "SIGTERM")?,
            interrupt: sig(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// The next signal, or the end of `task` if it ends first.
    pub async fn next<T>(&mut self, task: &mut JoinHandle<T>) -> Wake<T> {
        tokio::select! {
            _ = self.hangup.recv() => Wake::Reload,
            _ = self.terminate.recv() => Wake::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Wake::Stop("SIGINT"),
            ended = task => Wake::Ended(ended),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn udp_and_tcp_share_the_port_the_kernel_chose() {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let (udp, tcp) = bind_dns(listen).await.expect("bind");
        let addr = udp.local_addr().expect("udp addr");
        assert_ne!(addr.port(), 0);
        assert_eq!(tcp.local_addr().expect("tcp addr"), addr);

        // The same fixed address again: UDP is taken.
        let err = bind_dns(addr).await.expect_err("in use");
        assert_eq!((err.proto, err.addr), ("UDP", addr));
        assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
    }
}
