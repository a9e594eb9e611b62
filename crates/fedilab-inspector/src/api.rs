//! The UI listener: the embedded page at `/` and the JSON API documented
//! in `API.md` (`/api/exchanges`, `/api/exchanges/{id}`, `/api/har`,
//! `/api/events`, `/api/stats`, `/api/servers`; `/api/markers` from
//! `markers`).
//!
//! Reads the store and the analyzer; never touches the proxy. The
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
use axum::routing::get;
use futures_util::Stream;
use futures_util::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::analysis::Analyzer;
use crate::api_types::{
    ApiError, ExchangeList, ExchangeSummary, ServerList, ServerView, StatsView, UpstreamView,
};
use crate::filter::Filter;
use crate::guard::{self, Guard};
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

/// The entries passing `filter`, oldest first, honouring `after`/`limit`.
fn select(api: &ApiState, filter: &Filter) -> Vec<Arc<Entry>> {
    let limit = filter.limit();
    let after = filter.after.unwrap_or(0);
    let snapshot = api.store.snapshot();
    let matching = snapshot
        .into_iter()
        .filter(|e| e.exchange.id > after)
        .filter(|e| filter.matches(&e.exchange, &api.analyzer.analysis(&e.exchange, e.cache())));
    if filter.after.is_some() {
        matching.take(limit).collect()
    } else {
        let mut all: Vec<Arc<Entry>> = matching.collect();
        let skip = all.len().saturating_sub(limit);
        all.drain(..skip);
        all
    }
}

async fn summaries(api: &ApiState, entries: &[Arc<Entry>]) -> Vec<ExchangeSummary> {
    join_all(entries.iter().map(|e| async move {
        let a = api.analyzer.analysis(&e.exchange, e.cache());
        let v = api.analyzer.verification(&e.exchange, e.cache()).await;
        view::summary(&e.exchange, &a, &v)
    }))
    .await
}

async fn list(State(st): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let entries = select(&st.api, &filter);
    let items = summaries(&st.api, &entries).await;
    axum::Json(ExchangeList {
        exchanges: items,
        last_id: entries.last().map(|e| e.exchange.id),
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
    let a = st.api.analyzer.analysis(&e.exchange, e.cache());
    let v = st.api.analyzer.verification(&e.exchange, e.cache()).await;
    axum::Json(view::detail(&e.exchange, &a, &v)).into_response()
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
                    url: target.origin.clone(),
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
        let a = api.analyzer.analysis(&e.exchange, e.cache());
        let v = api.analyzer.verification(&e.exchange, e.cache()).await;
        har::entry(&e.exchange, Some(&a), Some(&v))
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
                    let a = s.st.api.analyzer.analysis(&e.exchange, e.cache());
                    if !s.filter.matches(&e.exchange, &a) {
                        continue;
                    }
                    let v = s.st.api.analyzer.verification(&e.exchange, e.cache()).await;
                    let data = serde_json::to_string(&view::summary(&e.exchange, &a, &v))
                        .unwrap_or_default();
                    return Some((
                        Ok(Event::default()
                            .event("exchange")
                            .id(id.to_string())
                            .data(data)),
                        s,
                    ));
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
