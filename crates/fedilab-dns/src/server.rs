//! Serving: UDP workers and TCP connections over sockets the caller bound,
//! until a cancellation token says stop.
//!
//! This module never binds a socket, never reads a file and never prints:
//! the caller chooses the addresses (and may bind several UDP sockets with
//! `SO_REUSEPORT`), builds the zone and reports the [`Stats`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Cache};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::MAX_UDP_PAYLOAD;
#[cfg(target_os = "linux")]
use crate::batch::{BATCH, Batch};
use crate::stats::{Counters, Stats};
use crate::wire::{self, Outcome, Transport};
use crate::zone::Zone;

/// Packets the portable UDP worker handles before it lets other tasks run.
#[cfg(not(target_os = "linux"))]
const UDP_BATCH: usize = 64;
/// Consecutive receive errors after which a UDP socket counts as broken.
const MAX_CONSECUTIVE_ERRORS: u32 = 100;
/// How long to wait before accepting again after `accept` failed (out of
/// file descriptors, typically).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The zone being served, replaceable while the server runs.
///
/// Cloning gives another handle to the same zone. [`SharedZone::replace`]
/// swaps the zone atomically: a query is answered entirely from the old
/// zone or entirely from the new one, and none is dropped.
#[derive(Clone)]
pub struct SharedZone(Arc<ArcSwap<Zone>>);

impl std::fmt::Debug for SharedZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedZone").field(&*self.0.load()).finish()
    }
}

impl SharedZone {
    /// Shares `zone`.
    pub fn new(zone: Zone) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(zone)))
    }

    /// Serves `zone` from now on; returns the zone it replaces.
    pub fn replace(&self, zone: Zone) -> Arc<Zone> {
        self.0.swap(Arc::new(zone))
    }

    /// The zone being served now.
    pub fn current(&self) -> Arc<Zone> {
        self.0.load_full()
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Tasks receiving on each UDP socket. Default: one per CPU.
    pub udp_workers: usize,
    /// A TCP connection that sends no complete query for this long is
    /// closed (RFC 7766 6.2.3). Default: 10 seconds.
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections per listener; more wait in the backlog.
    /// Default: 256.
    pub max_tcp_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            udp_workers: std::thread::available_parallelism().map_or(1, usize::from),
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 256,
        }
    }
}

/// Why the server stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Neither a UDP socket nor a TCP listener was given.
    #[error("no socket to serve on")]
    NoSockets,
    /// A socket's local address could not be read.
    #[error("cannot read the local address of a socket")]
    LocalAddr(#[source] io::Error),
    /// A UDP socket kept failing.
    #[error("receiving on UDP {addr} keeps failing")]
    Udp {
        /// The socket's address.
        addr: SocketAddr,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// A server task panicked (a bug).
    #[error("a DNS server task panicked")]
    Task(#[source] JoinError),
}

/// An authoritative DNS server for one [`SharedZone`].
///
/// ```no_run
/// # async fn example(zone: fedilab_dns::Zone) -> Result<(), Box<dyn std::error::Error>> {
/// use fedilab_dns::{Server, SharedZone};
/// let udp = tokio::net::UdpSocket::bind("127.0.0.1:5353").await?;
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:5353").await?;
/// let server = Server::new(SharedZone::new(zone));
/// let stop = server.shutdown_token();
/// let running = tokio::spawn(server.serve(vec![udp], vec![tcp]));
/// // ... later:
/// stop.cancel();
/// let stats = running.await??;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    zone: SharedZone,
    options: ServerOptions,
    shutdown: CancellationToken,
}

impl Server {
    /// A server for `zone` with default [`ServerOptions`].
    pub fn new(zone: SharedZone) -> Self {
        Self {
            zone,
            options: ServerOptions::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Replaces the options.
    #[must_use]
    pub fn with_options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// The token that stops the server: cancel it (from anywhere, any
    /// number of times) and [`Server::serve`] returns once every worker and
    /// connection has finished its current query.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Answers queries on `udp` and `tcp` until the shutdown token is
    /// cancelled, then returns what it answered.
    ///
    /// Usually one UDP socket and one TCP listener bound to the same
    /// address. Each UDP socket gets [`ServerOptions::udp_workers`] tasks.
    ///
    /// # Errors
    /// [`ServeError::NoSockets`] when both lists are empty;
    /// [`ServeError::Udp`] when a UDP socket keeps failing (the rest of the
    /// server is stopped first). Malformed packets, failed sends and broken
    /// TCP connections are counted, never fatal.
    ///
    /// # Caveats
    /// Never returns on its own: cancel the token, or wrap the future in a
    /// timeout. A TCP client gets at most [`ServerOptions::tcp_idle_timeout`]
    /// between queries, and shutdown closes open connections.
    pub async fn serve(
        self,
        udp: Vec<UdpSocket>,
        tcp: Vec<TcpListener>,
    ) -> Result<Stats, ServeError> {
        if udp.is_empty() && tcp.is_empty() {
            return Err(ServeError::NoSockets);
        }
        // Stop everything when one task fails, without cancelling the
        // caller's token.
        let stop = self.shutdown.child_token();
        let mut tasks = JoinSet::new();
        for socket in udp {
            let addr = socket.local_addr().map_err(ServeError::LocalAddr)?;
            let socket = Arc::new(socket);
            for _ in 0..self.options.udp_workers.max(1) {
                tasks.spawn(udp_worker(
                    Arc::clone(&socket),
                    addr,
                    self.zone.clone(),
                    stop.clone(),
                ));
            }
            tracing::debug!(%addr, workers = self.options.udp_workers, "serving DNS over UDP");
        }
        for listener in tcp {
            let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
            tasks.spawn(tcp_acceptor(
                listener,
                self.zone.clone(),
                stop.clone(),
                self.options.clone(),
            ));
            tracing::debug!(%addr, "serving DNS over TCP");
        }

        let mut counters = Counters::default();
        let mut error = None;
        while let Some(joined) = tasks.join_next().await {
            let failure = match joined {
                Ok(Ok(done)) => {
                    counters.add(&done);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(e) => ServeError::Task(e),
            };
            tracing::error!(error = %failure, "DNS server task failed; stopping");
            stop.cancel();
            error.get_or_insert(failure);
        }
        let mut stats = Stats::default();
        stats.merge(&counters);
        match error {
            Some(e) => {
                tracing::warn!(%stats, "DNS server stopped on an error");
                Err(e)
            }
            None => Ok(stats),
        }
    }
}

/// Receives, answers and sends on one UDP socket, sharing it with the other
/// workers, [`BATCH`] datagrams per system call. Under load it never
/// awaits; it yields every [`BATCH`] packets so other tasks run.
#[cfg(target_os = "linux")]
async fn udp_worker(
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    zone: SharedZone,
    stop: CancellationToken,
) -> Result<Counters, ServeError> {
    let mut counters = Counters::default();
    let mut batch = Batch::new(usize::from(MAX_UDP_PAYLOAD));
    // One atomic load per batch to notice a replaced zone.
    let mut zone = Cache::new(Arc::clone(&zone.0));
    let mut outcomes = [Outcome::Drop; BATCH];
    let mut replies = Vec::with_capacity(BATCH);
    let mut since_yield = 0;
    let mut consecutive_errors = 0;
    loop {
        let received = match batch.recv(&socket) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return Ok(counters),
                    ready = socket.readable() => ready.map_err(|source| ServeError::Udp { addr, source })?,
                }
                continue;
            }
            Err(e) => {
                consecutive_errors += 1;
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(ServeError::Udp { addr, source: e });
                }
                tracing::debug!(%addr, error = %e, "UDP receive failed");
                continue;
            }
        };
        consecutive_errors = 0;
        let compiled = &zone.load().compiled;
        replies.clear();
        for (i, outcome) in outcomes.iter_mut().enumerate().take(received) {
            let (packet, cut, out) = batch.slot(i);
            out.clear();
            *outcome = if cut {
                // Longer than any real query: answer FORMERR from what
                // arrived, never from a guess at the rest.
                wire::formerr(packet, out)
            } else {
                wire::respond(packet, compiled, Transport::Udp, out)
            };
            if *outcome == Outcome::Drop {
                counters.count(*outcome);
            } else {
                replies.push(i);
            }
        }
        let mut sent = 0;
        while sent < replies.len() {
            match batch.send(&socket, &replies[sent..]) {
                Ok(n) => {
                    for &i in &replies[sent..sent + n] {
                        counters.count(outcomes[i]);
                    }
                    sent += n.max(1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => return Ok(counters),
                        ready = socket.writable() => ready.map_err(|source| ServeError::Udp { addr, source })?,
                    }
                }
                Err(e) => {
                    // The first of the rest could not be sent (a peer
                    // address the kernel rejects): skip it.
                    tracing::debug!(%addr, error = %e, "UDP send failed");
                    counters.unsent();
                    sent += 1;
                }
            }
        }
        if stop.is_cancelled() {
            return Ok(counters);
        }
        // Let other tasks (TCP, signals) run after every BATCH packets or
        // so; an idle socket parks the task above anyway.
        since_yield += received;
        if since_yield >= BATCH {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Receives, answers and sends on one UDP socket, sharing it with the other
/// workers, one datagram per system call (the portable fallback of the
/// batched worker). Under load it never awaits: it drains the socket with
/// non-blocking calls, and yields every [`UDP_BATCH`] packets.
#[cfg(not(target_os = "linux"))]
async fn udp_worker(
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    zone: SharedZone,
    stop: CancellationToken,
) -> Result<Counters, ServeError> {
    let mut counters = Counters::default();
    // The largest datagram; bigger queries would be cut, and answered
    // FORMERR.
    let mut packet = vec![0u8; usize::from(u16::MAX)];
    let mut out = Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD));
    // One atomic load per query to notice a replaced zone.
    let mut zone = Cache::new(Arc::clone(&zone.0));
    let mut consecutive_errors = 0;
    loop {
        let mut drained = false;
        for _ in 0..UDP_BATCH {
            let (len, peer) = match socket.try_recv_from(&mut packet) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) => {
                    consecutive_errors += 1;
                    if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                        return Err(ServeError::Udp { addr, source: e });
                    }
                    tracing::debug!(%addr, error = %e, "UDP receive failed");
                    continue;
                }
            };
            consecutive_errors = 0;
            out.clear();
            let outcome = wire::respond(
                &packet[..len],
                &zone.load().compiled,
                Transport::Udp,
                &mut out,
            );
            if outcome == Outcome::Drop {
                counters.count(outcome);
                continue;
            }
            let sent = match socket.try_send_to(&out, peer) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(&out, peer).await,
                other => other,
            };
            match sent {
                Ok(_) => counters.count(outcome),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "UDP send failed");
                    counters.unsent();
                }
            }
        }
        if stop.is_cancelled() {
            return Ok(counters);
        }
        if drained {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(counters),
                ready = socket.readable() => {
                    if let Err(e) = ready {
                        return Err(ServeError::Udp { addr, source: e });
                    }
                }
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Accepts TCP connections and serves each in its own task.
async fn tcp_acceptor(
    listener: TcpListener,
    zone: SharedZone,
    stop: CancellationToken,
    options: ServerOptions,
) -> Result<Counters, ServeError> {
    let mut counters = Counters::default();
    let mut connections: JoinSet<Counters> = JoinSet::new();
    let max = options.max_tcp_connections.max(1);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                add_joined(&mut counters, done)?;
            }
            accepted = listener.accept(), if connections.len() < max => match accepted {
                Ok((stream, peer)) => {
                    counters.tcp_connections += 1;
                    connections.spawn(tcp_connection(
                        stream,
                        peer,
                        zone.clone(),
                        stop.clone(),
                        options.tcp_idle_timeout,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a TCP connection failed");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    // Connections see the same token and finish their current query.
    while let Some(done) = connections.join_next().await {
        add_joined(&mut counters, done)?;
    }
    Ok(counters)
}

fn add_joined(
    counters: &mut Counters,
    done: Result<Counters, JoinError>,
) -> Result<(), ServeError> {
    counters.add(&done.map_err(ServeError::Task)?);
    Ok(())
}

/// Serves one TCP connection: length-prefixed queries, answered in order
/// (RFC 7766), until the client closes, goes idle, sends garbage or the
/// server stops.
async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    zone: SharedZone,
    stop: CancellationToken,
    idle_timeout: Duration,
) -> Counters {
    let mut counters = Counters::default();
    // Responses go out whole; no need to wait for more.
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let mut packet = vec![0u8; usize::from(u16::MAX)];
    let mut out = Vec::new();
    loop {
        let read = async {
            let len = usize::from(reader.read_u16().await?);
            reader.read_exact(&mut packet[..len]).await
        };
        let len = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            read = tokio::time::timeout(idle_timeout, read) => match read {
                Ok(Ok(len)) => len,
                // Closed, reset or idle: all normal ends of a connection.
                Ok(Err(_)) | Err(_) => break,
            },
        };
        out.clear();
        out.extend_from_slice(&[0, 0]);
        let outcome = wire::respond(
            &packet[..len],
            &zone.0.load().compiled,
            Transport::Tcp,
            &mut out,
        );
        let Ok(response_len) = u16::try_from(out.len() - 2) else {
            counters.unsent();
            break;
        };
        if outcome == Outcome::Drop {
            // Not even a header: the stream cannot be trusted any more.
            counters.count(outcome);
            break;
        }
        out[..2].copy_from_slice(&response_len.to_be_bytes());
        match tokio::time::timeout(idle_timeout, writer.write_all(&out)).await {
            Ok(Ok(())) => counters.count(outcome),
            Ok(Err(_)) | Err(_) => {
                tracing::debug!(%peer, "TCP client stopped reading");
                counters.unsent();
                break;
            }
        }
    }
    counters
}
