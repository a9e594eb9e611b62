//! The upstream side of one client connection: an HTTP/1 connection per
//! upstream it sends to, opened on first use, kept while the client's
//! connection lasts and driven by that connection's own task. No pool shared
//! between client connections, no lock held across an await, no hand-off to
//! another task per request (hyper-util's shared pool, its checkout and the
//! wakeups between a connection's task and the pool's connection tasks were
//! a tenth of the proxy's CPU).
//!
//! Must not record anything (the proxy does) or resend a request the
//! upstream may have seen: only a request that never left (the kept
//! connection turned out closed) is sent again, once, on a new connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::capture::TeeBody;
use crate::proxy::OutBody;

/// What the proxy sends upstream.
type Body = TeeBody<OutBody>;

/// A connection's driver: reads and writes for its `SendRequest`.
type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a request got no response from its upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// The upstream connections of one client connection.
pub(crate) struct Upstreams {
    open: Mutex<Vec<(Authority, SendRequest<Body>)>>,
    drivers: mpsc::UnboundedSender<Driver>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

/// Runs the drivers of an [`Upstreams`] beside the client connection.
pub(crate) struct Drivers {
    new: mpsc::UnboundedReceiver<Driver>,
    running: FuturesUnordered<Driver>,
}

impl Upstreams {
    /// No connection yet; `Drivers` must be run by the client connection's
    /// task ([`Drivers::beside`]).
    pub(crate) fn new(connect_timeout: Duration) -> (Arc<Self>, Drivers) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                open: Mutex::new(Vec::new()),
                drivers: tx,
                connect_timeout,
            }),
            Drivers {
                new: rx,
                running: FuturesUnordered::new(),
            },
        )
    }

    /// Sends `req` (origin-form URI, Host set) to `authority` and returns
    /// the response head; its body streams through the connection's driver.
    pub(crate) async fn send(
        &self,
        authority: &Authority,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        loop {
            let (mut sender, fresh) = match self.take(authority) {
                Some(s) => (s, false),
                None => (self.connect(authority).await?, true),
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(e.into());
                }
                // The kept connection closed while idle: open another.
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.keep(authority, sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Never written: safe to send on a new connection.
                    Some(back) if !fresh => req = back,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    fn take(&self, authority: &Authority) -> Option<SendRequest<Body>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, s)| !s.is_closed());
        let i = open.iter().position(|(a, _)| a == authority)?;
        Some(open.swap_remove(i).1)
    }

    fn keep(&self, authority: &Authority, sender: SendRequest<Body>) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.push((authority.clone(), sender));
    }

    async fn connect(&self, authority: &Authority) -> Result<SendRequest<Body>, UpstreamError> {
        let stream =
            tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority.as_str()))
                .await
                .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
                .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let driver: Driver = Box::pin(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        // The receiver lives as long as the client connection's task,
        // which is running this request.
        let _ = self.drivers.send(driver);
        Ok(sender)
    }
}

impl Drivers {
    /// Polls `conn` to its end, driving every upstream connection opened
    /// meanwhile; they close when it ends.
    pub(crate) async fn beside<F: Future>(mut self, conn: F) -> F::Output {
        let mut conn = std::pin::pin!(conn);
        loop {
            tokio::select! {
                out = &mut conn => return out,
                Some(d) = self.new.recv() => self.running.push(d),
                Some(()) = self.running.next(), if !self.running.is_empty() => {}
            }
        }
    }
}
