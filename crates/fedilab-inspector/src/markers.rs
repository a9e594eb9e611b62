//! Markers on the recording's timeline: `POST /api/markers`
//! (`{"kind": "reset", "text": "reset to fresh at 12:03:04"}`) and
//! `GET /api/markers`, so a user reading the exchanges sees where one
//! experiment ended and the next began (`fedilab reset` and `snapshot`
//! post them). Each marker remembers the last exchange recorded before it,
//! which is where the UI draws it.
//!
//! In memory, beside the store, for the life of the UI listener: at most
//! [`MAX_MARKERS`], the oldest dropped first; never written to the
//! capture file. Never touches the exchanges themselves.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::api_types::ApiError;
use crate::store::Store;

/// Markers kept; older ones are dropped.
pub const MAX_MARKERS: usize = 1000;
/// Longest `kind` (letters, digits, `-`).
pub const MAX_KIND: usize = 32;
/// Longest `text`.
pub const MAX_TEXT: usize = 500;

/// A marker as `GET /api/markers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// When it was set (RFC 3339, UTC).
    pub at: String,
    /// What happened: `reset`, `snapshot`...
    pub kind: String,
    /// For the reader.
    pub text: String,
    /// The id of the last exchange recorded before it (0: none).
    pub after: u64,
}

/// The body of `POST /api/markers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMarker {
    /// What happened: letters, digits, `-`, at most [`MAX_KIND`].
    pub kind: String,
    /// For the reader, at most [`MAX_TEXT`] characters.
    pub text: String,
}

/// `GET /api/markers`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkerList {
    /// The markers.
    pub markers: Vec<Marker>,
}

#[derive(Clone)]
struct MarkerState {
    store: Arc<Store>,
    markers: Arc<Mutex<VecDeque<Marker>>>,
}

/// The marker routes, with their own state, to merge into the UI router
/// (inside its guard).
pub(crate) fn routes(store: Arc<Store>) -> Router {
    Router::new()
        .route("/api/markers", get(list).post(add))
        .with_state(MarkerState {
            store,
            markers: Arc::new(Mutex::new(VecDeque::new())),
        })
}

fn bad(why: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(ApiError { error: why })).into_response()
}

fn check(new: &NewMarker) -> Result<(), String> {
    let kind_ok = !new.kind.is_empty()
        && new.kind.len() <= MAX_KIND
        && new
            .kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !kind_ok {
        return Err(format!(
            "kind must be 1 to {MAX_KIND} letters, digits or '-'"
        ));
    }
    if new.text.chars().count() > MAX_TEXT {
        return Err(format!("text is longer than {MAX_TEXT} characters"));
    }
    Ok(())
}

async fn add(State(st): State<MarkerState>, body: axum::body::Bytes) -> Response {
    let new: NewMarker = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return bad(format!("not a marker: {e}")),
    };
    if let Err(why) = check(&new) {
        return bad(why);
    }
    let after = st.store.snapshot().last().map_or(0, |e| e.exchange().id);
    let marker = Marker {
        at: jiff::Timestamp::now().to_string(),
        kind: new.kind,
        text: new.text,
        after,
    };
    {
        let mut markers = st.markers.lock().unwrap_or_else(|p| p.into_inner());
        markers.push_back(marker.clone());
        while markers.len() > MAX_MARKERS {
            markers.pop_front();
        }
    }
    (StatusCode::CREATED, Json(marker)).into_response()
}

async fn list(State(st): State<MarkerState>) -> Response {
    let markers = st
        .markers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    Json(MarkerList { markers }).into_response()
}
