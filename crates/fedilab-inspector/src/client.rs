//! A small reader of a running inspector's API: `GET /api/exchanges` into
//! [`ExchangeList`], the same type the inspector serves. For other
//! programs (`fedilab verify`); the inspector itself never calls it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::api_types::ExchangeList;

/// The largest answer read: 10000 summaries of a few KiB each.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why a query to the inspector's API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be built (a query that is not URI text).
    #[error("cannot build the request for {uri:?}")]
    Uri {
        /// The URI.
        uri: String,
        /// Why.
        #[source]
        source: http::Error,
    },
    /// No connection, or the connection broke before the answer's head.
    #[error("the request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The answer's body could not be read.
    #[error("reading the answer failed")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The answer is not a success.
    #[error("HTTP {0}")]
    Status(StatusCode),
    /// The answer is not an exchange list.
    #[error("the answer is not an exchange list")]
    Json(#[source] serde_json::Error),
    /// No complete answer in time.
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// `GET http://{api}/api/exchanges?{query}`: the exchanges the filters in
/// `query` (as `API.md` lists them, already percent-encoded) select.
///
/// # Errors
/// [`ClientError`] when the inspector cannot be reached, answers with an
/// error status or with something that is not an exchange list.
///
/// # Caveats
/// Connecting, the answer and reading it share the `timeout`.
pub async fn exchanges(
    api: SocketAddr,
    query: &str,
    timeout: Duration,
) -> Result<ExchangeList, ClientError> {
    let uri = format!("http://{api}/api/exchanges?{query}");
    let request = Request::get(&uri)
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|source| ClientError::Uri {
            uri: uri.clone(),
            source,
        })?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let fetch = async {
        let response = client
            .request(request)
            .await
            .map_err(ClientError::Request)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(ClientError::Read)?
            .to_bytes();
        if !status.is_success() {
            return Err(ClientError::Status(status));
        }
        serde_json::from_slice(&body).map_err(ClientError::Json)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}
