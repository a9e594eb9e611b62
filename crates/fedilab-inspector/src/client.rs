//! A small client of a running inspector's API: `GET /api/exchanges` into
//! [`ExchangeList`], the fault rules (`/api/faults`), with the same types
//! the inspector serves, and [`mark`] / [`clear`] for `fedilab reset`'s
//! markers. For other programs (`fedilab verify`, `fedilab fault`,
//! `fedilab reset`); the inspector itself never calls it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::api_types::{ApiError, ExchangeList, FaultList};
use crate::fault::{RuleSpec, RuleView};

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
    /// The API refused the request and said why.
    #[error("HTTP {status}: {message}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The API's `error`.
        message: String,
    },
    /// The answer is not an exchange list.
    #[error("the answer is not an exchange list")]
    Json(#[source] serde_json::Error),
    /// The answer is not the document expected.
    #[error("the answer is not a {0}")]
    Document(&'static str, #[source] serde_json::Error),
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
    let body = call(
        api,
        Method::GET,
        &format!("/api/exchanges?{query}"),
        None,
        timeout,
    )
    .await?;
    serde_json::from_slice(&body).map_err(ClientError::Json)
}

/// `GET /api/faults`: the rules in force and the timeline of changes.
///
/// # Errors
/// As [`exchanges`].
pub async fn faults(api: SocketAddr, timeout: Duration) -> Result<FaultList, ClientError> {
    let body = call(api, Method::GET, "/api/faults", None, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Document("fault list", e))
}

/// `POST /api/faults`: adds a rule; answers it with its id.
///
/// # Errors
/// As [`exchanges`]; [`ClientError::Refused`] with the reason for a rule
/// the inspector does not accept.
pub async fn add_fault(
    api: SocketAddr,
    rule: &RuleSpec,
    timeout: Duration,
) -> Result<RuleView, ClientError> {
    let json = serde_json::to_vec(rule).map_err(|e| ClientError::Document("rule", e))?;
    let body = call(api, Method::POST, "/api/faults", Some(json), timeout).await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Document("fault rule", e))
}

/// `DELETE /api/faults/{id}`.
///
/// # Errors
/// As [`exchanges`]; [`ClientError::Refused`] (404) when there is no such
/// rule.
pub async fn remove_fault(api: SocketAddr, id: u64, timeout: Duration) -> Result<(), ClientError> {
    call(
        api,
        Method::DELETE,
        &format!("/api/faults/{id}"),
        None,
        timeout,
    )
    .await?;
    Ok(())
}

/// `DELETE /api/faults`: removes every rule.
///
/// # Errors
/// As [`exchanges`].
pub async fn clear_faults(api: SocketAddr, timeout: Duration) -> Result<(), ClientError> {
    call(api, Method::DELETE, "/api/faults", None, timeout).await?;
    Ok(())
}

/// One request to the API; the answer's body when it is a success.
async fn call(
    api: SocketAddr,
    method: Method,
    path: &str,
    json: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Bytes, ClientError> {
    let uri = format!("http://{api}{path}");
    let mut request = Request::builder()
        .method(method)
        .uri(&uri)
        .header(header::ACCEPT, "application/json");
    if json.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
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
            return Err(match serde_json::from_slice::<ApiError>(&body) {
                Ok(e) => ClientError::Refused {
                    status,
                    message: e.error,
                },
                Err(_) => ClientError::Status(status),
            });
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// Sends `request` and reads the answer's status (the body is dropped).
async fn send_only(
    request: Request<http_body_util::Full<Bytes>>,
    timeout: Duration,
) -> Result<(), ClientError> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let fetch = async {
        let response = client
            .request(request)
            .await
            .map_err(ClientError::Request)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Status(status));
        }
        Ok(())
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// `POST http://{api}/api/markers`: a marker on the recording's timeline
/// (`kind` such as `reset`, `text` for the reader).
///
/// # Errors
/// [`ClientError`] when the inspector cannot be reached or refuses.
///
/// # Caveats
/// Bounded by `timeout`.
pub async fn mark(
    api: SocketAddr,
    kind: &str,
    text: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    let uri = format!("http://{api}/api/markers");
    let body = serde_json::to_vec(&crate::markers::NewMarker {
        kind: kind.to_owned(),
        text: text.to_owned(),
    })
    .map_err(ClientError::Json)?;
    let request = Request::post(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .map_err(|source| ClientError::Uri { uri, source })?;
    send_only(request, timeout).await
}

/// `DELETE http://{api}/api/exchanges`: every recorded exchange goes.
///
/// # Errors
/// [`ClientError`] when the inspector cannot be reached or refuses.
///
/// # Caveats
/// Bounded by `timeout`.
pub async fn clear(api: SocketAddr, timeout: Duration) -> Result<(), ClientError> {
    let uri = format!("http://{api}/api/exchanges");
    let request = Request::delete(&uri)
        .body(http_body_util::Full::new(Bytes::new()))
        .map_err(|source| ClientError::Uri { uri, source })?;
    send_only(request, timeout).await
}
