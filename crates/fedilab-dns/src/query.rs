//! A one-shot DNS client: one A query over UDP to one server, for checks
//! such as `fedilab verify` (is the embedded DNS answering, and with what).
//! Not a resolver: no retries over TCP, no search list, no recursion.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

/// Why a query got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The name is not a DNS name.
    #[error("{name:?} is not a DNS name")]
    BadName {
        /// The name.
        name: String,
    },
    /// Sending or receiving failed (such as: connection refused).
    #[error("cannot query {server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("no answer from {server} within {}s", timeout.as_secs_f32())]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The time allowed.
        timeout: Duration,
    },
    /// The answer is not a DNS response to the query.
    #[error("{server} sent a malformed answer")]
    Malformed {
        /// The server.
        server: SocketAddr,
    },
    /// The server answered with an error code.
    #[error("{server} answered {code}")]
    Rcode {
        /// The server.
        server: SocketAddr,
        /// The response code.
        code: ResponseCode,
    },
}

/// Asks `server` for the A records of `name` over UDP and returns the
/// addresses in the answer (empty for NODATA).
///
/// # Errors
/// [`QueryError`] for a bad name, a socket error, no answer, a malformed
/// answer or an error response code.
///
/// # Caveats
/// Waits at most `timeout`; one datagram, no retry.
pub async fn query_a(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, QueryError> {
    let io = |source| QueryError::Io { server, source };
    let fqdn = Name::from_ascii(name).map_err(|_| QueryError::BadName {
        name: name.to_owned(),
    })?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(fqdn, RecordType::A));
    let packet = query.to_vec().map_err(|_| QueryError::BadName {
        name: name.to_owned(),
    })?;
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let exchange = async {
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        socket.send(&packet).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                return Err(QueryError::Malformed { server });
            };
            if reply.metadata.id == id && reply.metadata.message_type == MessageType::Response {
                return Ok(reply);
            }
        }
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| QueryError::Timeout { server, timeout })??;
    if reply.metadata.response_code != ResponseCode::NoError {
        return Err(QueryError::Rcode {
            server,
            code: reply.metadata.response_code,
        });
    }
    Ok(reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect())
}
