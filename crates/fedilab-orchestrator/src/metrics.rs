//! How much fedilab itself costs: a tower layer that counts the API requests
//! of a kube client and the time spent waiting for their responses,
//! [`Timings`], the wall time and request count of each phase of a command,
//! and [`WaveTiming`], the same for each wave of an apply. Measures only;
//! never prints.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service};

/// Counts requests and the time until their response headers arrived.
/// Cheap to clone; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    api_nanos: AtomicU64,
}

impl RequestCounter {
    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Relaxed)
    }

    /// Time spent waiting for responses so far (summed over requests).
    pub fn api_time(&self) -> Duration {
        Duration::from_nanos(self.0.api_nanos.load(Ordering::Relaxed))
    }

    fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.api_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The tower layer that feeds a [`RequestCounter`].
#[derive(Debug, Clone, Default)]
pub struct CountLayer {
    counter: RequestCounter,
}

impl CountLayer {
    /// A layer counting into `counter`.
    pub fn new(counter: RequestCounter) -> Self {
        CountLayer { counter }
    }
}

impl<S> Layer<S> for CountLayer {
    type Service = CountService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountService {
            inner,
            counter: self.counter.clone(),
        }
    }
}

/// The service of [`CountLayer`].
#[derive(Debug, Clone)]
pub struct CountService<S> {
    inner: S,
    counter: RequestCounter,
}

impl<S, B> Service<http::Request<B>> for CountService<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.counter.0.requests.fetch_add(1, Ordering::Relaxed);
        let counter = self.counter.clone();
        let start = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            counter.record(start.elapsed());
            result
        })
    }
}

/// The cost of one phase of a command.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhaseTiming {
    /// `preflight`, `apply`, `wait`, ...
    pub phase: String,
    /// Wall time.
    pub wall: Duration,
    /// API requests sent during the phase.
    pub requests: u64,
    /// Time spent waiting for API responses during the phase; `wall - api`
    /// is fedilab's own time (plus any deliberate polling pauses).
    pub api: Duration,
}

/// The cost of one wave of an apply: objects that do not depend on each
/// other, applied concurrently.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WaveTiming {
    /// `namespace`, `network-policies`, `objects`, `jobs`.
    pub wave: String,
    /// Objects applied in it.
    pub objects: usize,
    /// Wall time.
    pub wall: Duration,
    /// API requests sent during the wave.
    pub requests: u64,
    /// Time spent waiting for API responses, summed over requests: with
    /// requests in flight together it exceeds `wall`.
    pub api: Duration,
}

/// Measures a stretch of work: wall time, and the requests and API time
/// `counter` saw meanwhile.
pub(crate) struct Stopwatch {
    counter: RequestCounter,
    start: Instant,
    requests: u64,
    api: Duration,
}

impl Stopwatch {
    pub(crate) fn start(counter: &RequestCounter) -> Self {
        Stopwatch {
            counter: counter.clone(),
            start: Instant::now(),
            requests: counter.requests(),
            api: counter.api_time(),
        }
    }

    /// Wall time, requests and API time since the start.
    pub(crate) fn read(&self) -> (Duration, u64, Duration) {
        (
            self.start.elapsed(),
            self.counter.requests().saturating_sub(self.requests),
            self.counter.api_time().saturating_sub(self.api),
        )
    }
}

/// Phase timings of one command, fed by [`Timings::phase`].
#[derive(Debug, Clone)]
pub struct Timings {
    counter: RequestCounter,
    phases: Arc<Mutex<Vec<PhaseTiming>>>,
    waves: Arc<Mutex<Vec<WaveTiming>>>,
}

impl Timings {
    /// Timings that read request counts from `counter`.
    pub fn new(counter: RequestCounter) -> Self {
        Timings {
            counter,
            phases: Arc::default(),
            waves: Arc::default(),
        }
    }

    /// Runs `work` as the phase `name` and records its cost, whether it
    /// succeeds or not.
    pub async fn phase<T>(&self, name: &str, work: impl Future<Output = T>) -> T {
        let watch = Stopwatch::start(&self.counter);
        let out = work.await;
        let (wall, requests, api) = watch.read();
        let timing = PhaseTiming {
            phase: name.to_owned(),
            wall,
            requests,
            api,
        };
        if let Ok(mut phases) = self.phases.lock() {
            phases.push(timing);
        }
        out
    }

    /// Keeps the waves of an apply (from [`crate::ApplyReport::waves`]), to
    /// show them with the `apply` phase.
    pub fn record_waves(&self, waves: &[WaveTiming]) {
        if let Ok(mut kept) = self.waves.lock() {
            kept.extend_from_slice(waves);
        }
    }

    /// The waves recorded so far, in order.
    pub fn waves(&self) -> Vec<WaveTiming> {
        self.waves.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Every phase recorded so far, in order.
    pub fn phases(&self) -> Vec<PhaseTiming> {
        self.phases.lock().map(|p| p.clone()).unwrap_or_default()
    }
}
