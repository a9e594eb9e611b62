//! The UI listener: the embedded page at `/` and the JSON API documented
//! in `API.md` (`/api/exchanges`, `/api/exchanges/{id}`, `/api/har`,
//! `/api/events`, `/api/stats`, `/api/servers`, `/api/faults`,
//! `/api/exchanges/{id}/replay`; `/api/markers` from `markers`).
//!
//! Reads the store and the analyzer; changes the fault rules; sends
//! replays through the proxy's client (never through its listener). The
//! documents are the types of `api_types`. Every request passes the
//! `guard` layer first (Host, Origin).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::join_all;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::analysis::Analyzer;
use crate::api_types::{
    ApiError, ExchangeList, ExchangeSummary, FaultChange, FaultList, ReplayAnswer, ReplayRequest,
    ServerList, ServerView, StatsView, UpstreamView,
};
use crate::exchange::Marks;
use crate::fault::{RuleSpec, RuleView};
use crate::filter::Filter;
use crate::guard::{self, Guard};
use crate::proxy::{Outgoing, ProxyState, send_recorded};
use crate::routes::SharedRoutes;
use crate::store::{Entry, Store, StoreEvent};
use crate::{har, view};

const PAGE: &str = include_str!("ui.html");

/// Shared by the API handlers.
#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    pub(crate) store: Arc<Store>,
    pub(crate) analyzer: Arc<Analyzer>,
    pub(crate) routes: SharedRoutes,
    pub(crate) proxy: Arc<ProxyState>,
    pub(crate) proxy_addr: SocketAddr,
}

#[derive(Clone)]
struct AppState {
    api: ApiState,
    shutdown: watch::Receiver<bool>,
}

/// Serves the page and the API on `listener`, bound to `addr` (its
/// `local_addr()`, which configures the guard).
pub(crate) async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    api: ApiState,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    let guard = Arc::new(Guard::for_addr(addr));
    let markers = crate::markers::routes(Arc::clone(&api.store));
    let app = Router::new()
        .route("/", get(index))
        .route("/api/exchanges", get(list).delete(clear))
        .route("/api/exchanges/{id}", get(one))
        .route("/api/exchanges/{id}/replay", post(replay))
        .route(
            "/api/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/api/faults/{id}", delete(remove_fault))
        .route("/api/har", get(har_export))
        .route("/api/events", get(events))
        .route("/api/stats", get(stats))
        .route("/api/servers", get(servers))
        .with_state(AppState { api, shutdown })
        .merge(markers)
        .layer(axum::middleware::from_fn_with_state(guard, guard::layer));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the inspector UI server stopped");
    }
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// The entries passing `filter`, chosen by completion (id) and listed by
/// request start (see [`by_start`]).
///
/// Which entries: with `after`, the `limit` lowest ids above it (so a
/// poller's cursor never skips one); without, the `limit` highest ids (the
/// newest, as eviction counts). The choice is made in id order, the list
/// is in start order.
fn select(api: &ApiState, filter: &Filter) -> Vec<Arc<Entry>> {
    let limit = filter.limit();
    let after = filter.after.unwrap_or(0);
    let (held, _) = api.store.after(after);
    let matching = held.into_iter().filter(|e| {
        filter.matches(
            e.exchange(),
            &api.analyzer.analysis(e.exchange(), e.cache()),
        )
    });
    let mut chosen: Vec<Arc<Entry>> = if filter.after.is_some() {
        matching.take(limit).collect()
    } else {
        let mut all: Vec<Arc<Entry>> = matching.collect();
        let skip = all.len().saturating_sub(limit);
        all.drain(..skip);
        all
    };
    by_start(&mut chosen);
    chosen
}

/// Orders entries by when their request arrived (`started_us`), ties by
/// id: a Follow before the Accept it caused, although the Accept completed
/// (and got its id) first.
fn by_start(entries: &mut [Arc<Entry>]) {
    entries.sort_by_key(|e| (e.exchange().started_us, e.exchange().id));
}

/// The polling cursor of a page: its highest id (not its last entry's,
/// which is the latest to start).
fn last_id(entries: &[Arc<Entry>]) -> Option<u64> {
    entries.iter().map(|e| e.exchange().id).max()
}

async fn summaries(api: &ApiState, entries: &[Arc<Entry>]) -> Vec<ExchangeSummary> {
    join_all(entries.iter().map(|e| async move {
        let a = api.analyzer.analysis(e.exchange(), e.cache());
        let v = api.analyzer.verification(e.exchange(), e.cache()).await;
        marked(view::summary(e.exchange(), &a, &v), e)
    }))
    .await
}

async fn list(State(st): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let entries = select(&st.api, &filter);
    let items = summaries(&st.api, &entries).await;
    axum::Json(ExchangeList {
        exchanges: items,
        last_id: last_id(&entries),
        stats: st.api.store.stats(),
    })
    .into_response()
}

async fn one(State(st): State<AppState>, Path(id): Path<u64>) -> Response {
    let Some(e) = st.api.store.get(id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(ApiError {
                error: format!("no exchange {id} (never recorded, evicted or deleted)"),
            }),
        )
            .into_response();
    };
    let a = st.api.analyzer.analysis(e.exchange(), e.cache());
    let v = st.api.analyzer.verification(e.exchange(), e.cache()).await;
    let mut detail = view::detail(e.exchange(), &a, &v);
    detail.summary.marks = e.marks.clone();
    axum::Json(detail).into_response()
}

/// A summary with its entry's marks.
fn marked(mut s: ExchangeSummary, e: &Entry) -> ExchangeSummary {
    s.marks = e.marks.clone();
    s
}

fn api_error(status: StatusCode, error: String) -> Response {
    (status, axum::Json(ApiError { error })).into_response()
}

/// The timeline entry for an added rule.
pub(crate) fn change_added(rule: &RuleView) -> FaultChange {
    change(
        "added",
        Some(rule.id),
        format!(
            "rule {} added: {}",
            rule.id,
            RuleSpec {
                matcher: rule.matcher.clone(),
                action: rule.action.clone(),
            }
            .describe()
        ),
    )
}

fn change(kind: &str, rule: Option<u64>, text: String) -> FaultChange {
    FaultChange {
        seq: 0,
        at: String::new(),
        at_us: 0,
        change: kind.to_owned(),
        rule,
        text,
    }
}

async fn list_faults(State(st): State<AppState>) -> Response {
    axum::Json(FaultList {
        rules: st.api.proxy.faults.list(),
        changes: st.api.store.changes(),
    })
    .into_response()
}

async fn add_fault(State(st): State<AppState>, body: Bytes) -> Response {
    let spec: RuleSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("not a fault rule ({{\"match\": {{...}}, \"action\": {{...}}}}): {e}"),
            );
        }
    };
    match crate::add_fault(&st.api.proxy.faults, &st.api.store, spec) {
        Ok(rule) => (StatusCode::CREATED, axum::Json(rule)).into_response(),
        Err(e) => api_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// The timeline entry for a removed rule.
pub(crate) fn change_removed(id: u64) -> FaultChange {
    change("removed", Some(id), format!("rule {id} removed"))
}

async fn remove_fault(State(st): State<AppState>, Path(id): Path<u64>) -> Response {
    if crate::remove_fault(&st.api.proxy.faults, &st.api.store, id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        api_error(StatusCode::NOT_FOUND, format!("no fault rule {id}"))
    }
}

async fn clear_faults(State(st): State<AppState>) -> Response {
    let n = st.api.proxy.faults.clear();
    if n > 0 {
        st.api.store.record_change(change(
            "cleared",
            None,
            format!("every fault rule removed ({n})"),
        ));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Headers that describe a connection, not the request: never re-sent.
const NOT_REPLAYED: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

async fn replay(State(st): State<AppState>, Path(id): Path<u64>, body: Bytes) -> Response {
    let edit: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("not a replay request ({{\"body\": ..., \"headers\": {{...}}}}): {e}"),
                );
            }
        }
    };
    let Some(e) = st.api.store.get(id) else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("no exchange {id} (never recorded, evicted or deleted)"),
        );
    };
    let ex = e.exchange();
    let conflict = |why: &str| api_error(StatusCode::CONFLICT, format!("exchange {id} {why}"));
    if ex.upgrade.is_some() {
        return conflict("is a connection upgrade (WebSocket); it cannot be replayed");
    }
    let Ok(method) = http::Method::from_bytes(ex.request.method.as_bytes()) else {
        return conflict("has a method that cannot be sent again");
    };
    let mut headers = HeaderMap::new();
    for (n, v) in &ex.request.headers {
        if NOT_REPLAYED.contains(&n) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(n, v);
        }
    }
    let edited = edit.body.is_some() || !edit.headers.is_empty();
    let body = match edit.body {
        Some(serde_json::Value::String(text)) => Bytes::from(text),
        Some(other) => Bytes::from(other.to_string()),
        None => {
            let b = &ex.request.body;
            if b.truncated || !b.complete {
                return conflict(
                    "has a body that was not captured whole; replay it with an edited body",
                );
            }
            b.captured.clone()
        }
    };
    for (name, value) in &edit.headers {
        let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("{name:?} is not a header name"),
            );
        };
        match value {
            serde_json::Value::Null => {
                headers.remove(&name);
            }
            serde_json::Value::String(v) => match HeaderValue::from_str(v) {
                Ok(v) => {
                    headers.insert(name, v);
                }
                Err(_) => {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        format!("the value of {name} is not a header value"),
                    );
                }
            },
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("the value of {name} must be a string or null"),
                );
            }
        }
    }
    if edited && (!body.is_empty() || headers.contains_key(http::header::CONTENT_LENGTH)) {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let out = Outgoing {
        host: ex.host.clone(),
        method,
        uri: ex.request.uri.clone(),
        headers,
        body,
    };
    let marks = Marks {
        fault: None,
        replay_of: Some(id),
        edited,
    };
    match send_recorded(&st.api.proxy, out, "fedilab-inspector (replay)", marks).await {
        Ok((new, status)) => axum::Json(ReplayAnswer {
            id: new,
            replay_of: id,
            edited,
            status,
        })
        .into_response(),
        Err(e) => api_error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn clear(State(st): State<AppState>) -> Response {
    st.api.store.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(st): State<AppState>) -> Response {
    axum::Json(StatsView {
        stats: st.api.store.stats(),
        hosts: st.api.routes.load().hosts(),
        proxy: st.api.proxy_addr.to_string(),
    })
    .into_response()
}

async fn servers(State(st): State<AppState>) -> Response {
    let table = st.api.routes.load();
    let servers = table
        .servers()
        .into_iter()
        .map(|(host, routes)| ServerView {
            host: host.to_owned(),
            kind: routes.kind,
            upstreams: routes
                .prefixes
                .iter()
                .map(|(prefix, target)| UpstreamView {
                    path_prefix: prefix.clone(),
                    url: target.origin.to_string(),
                })
                .collect(),
        })
        .collect();
    axum::Json(ServerList { servers }).into_response()
}

async fn har_export(State(st): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let entries = select(&st.api, &filter);
    let api = &st.api;
    let items = join_all(entries.iter().map(|e| async move {
        let a = api.analyzer.analysis(e.exchange(), e.cache());
        let v = api.analyzer.verification(e.exchange(), e.cache()).await;
        har::entry(e.exchange(), &e.marks, Some(&a), Some(&v))
    }))
    .await;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"fedilab-inspector.har\"",
            ),
        ],
        axum::Json(har::document(items)),
    )
        .into_response()
}

struct EventState {
    st: AppState,
    filter: Filter,
    rx: broadcast::Receiver<StoreEvent>,
    started: bool,
}

async fn events(
    State(st): State<AppState>,
    Query(filter): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.api.store.subscribe();
    let init = EventState {
        st,
        filter,
        rx,
        started: false,
    };
    let stream = futures_util::stream::unfold(init, |mut s| async move {
        if !s.started {
            s.started = true;
            let ready = Event::default().event("ready").data("{}");
            return Some((Ok(ready), s));
        }
        let mut stop = s.st.shutdown.clone();
        loop {
            let ev = tokio::select! {
                ev = s.rx.recv() => ev,
                _ = stop.wait_for(|v| *v) => return None,
            };
            match ev {
                Ok(StoreEvent::Added(id)) => {
                    let Some(e) = s.st.api.store.get(id) else {
                        continue;
                    };
                    let a = s.st.api.analyzer.analysis(e.exchange(), e.cache());
                    if !s.filter.matches(e.exchange(), &a) {
                        continue;
                    }
                    let v =
                        s.st.api
                            .analyzer
                            .verification(e.exchange(), e.cache())
                            .await;
                    let data =
                        serde_json::to_string(&marked(view::summary(e.exchange(), &a, &v), &e))
                            .unwrap_or_default();
                    return Some((
                        Ok(Event::default()
                            .event("exchange")
                            .id(id.to_string())
                            .data(data)),
                        s,
                    ));
                }
                Ok(StoreEvent::FaultChange(seq)) => {
                    let Some(c) = s.st.api.store.change(seq) else {
                        continue;
                    };
                    let data = serde_json::to_string(&c).unwrap_or_default();
                    return Some((Ok(Event::default().event("fault").data(data)), s));
                }
                Ok(StoreEvent::Cleared) => {
                    return Some((Ok(Event::default().event("cleared").data("{}")), s));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Some((Ok(Event::default().event("lagged").data(n.to_string())), s));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreLimits;
    use crate::exchange::Exchange;

    fn started_at(us: i64) -> Exchange {
        Exchange {
            started_us: us,
            ..Exchange::test_request("a.example", "GET", "/", &[], b"")
        }
    }

    #[test]
    fn pages_list_by_start_and_their_cursor_is_the_highest_id() {
        let store = Store::new(StoreLimits::default());
        // Completion order (ids 1..=4) differs from start order.
        for us in [300, 100, 300, 200] {
            store.push(started_at(us));
        }
        let (mut page, _) = store.after(0);
        by_start(&mut page);
        let order: Vec<(i64, u64)> = page
            .iter()
            .map(|e| (e.exchange().started_us, e.exchange().id))
            .collect();
        assert_eq!(order, [(100, 2), (200, 4), (300, 1), (300, 3)]);
        assert_eq!(last_id(&page), Some(4), "not the last entry's id (3)");
        assert_eq!(last_id(&[]), None);
    }
}
