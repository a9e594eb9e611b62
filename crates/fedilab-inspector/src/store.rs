//! The bounded exchange store: newest exchanges in memory, capped by count
//! and by bytes (oldest evicted first), with optional append-only JSON-lines
//! persistence that is reloaded (and compacted) on restart.
//!
//! Storing is on the proxy's hot path ([`Store::push`] for a record hyper's
//! path made, `push_recorded` for the bytes the fast path kept, which are
//! parsed when first read): it takes a lock for a `VecDeque` push and
//! evictions, sends an id to the event channel, queues the entry for the
//! key watcher when the watcher's cheap test wants it (`Store::watch`) and
//! hands it to the persistence thread with a non-blocking send. It does no
//! parsing, no serialisation and no analysis.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::analysis::Cache;
use crate::api_types::FaultChange;
use crate::config::StoreLimits;
use crate::exchange::{Exchange, Marks};
use crate::recorded::Recorded;
use crate::watched::Signals;

/// Memory charged per entry beyond the record itself: the cached analysis.
const ENTRY_OVERHEAD: usize = 1024;
/// Fault rule changes kept for the UI's timeline.
const MAX_CHANGES: usize = 1000;
/// Records waiting for the persistence thread; beyond this they are dropped
/// from the file (never from memory) and counted.
const PERSIST_QUEUE: usize = 8192;
/// Entries waiting for the key watcher; beyond this the oldest are dropped
/// from its queue (never from the store) and counted.
pub(crate) const WATCH_QUEUE: usize = 8192;

/// One stored exchange and a place for its analysis (filled on read by
/// [`crate::Analyzer`]; the store never looks inside).
#[derive(Debug)]
pub struct Entry {
    id: u64,
    record: Record,
    /// What the inspector did with it (fault rule, replay).
    pub marks: Marks,
    size: usize,
    cache: Cache,
}

/// A record as it was made, or as the fast path kept it (parsed on first
/// read).
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a kept record lives inline: one allocation fewer per record on the proxy's thread"
)]
enum Record {
    Made(Box<Exchange>),
    Kept(Recorded, OnceLock<Box<Exchange>>),
}

impl Entry {
    /// The exchange's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The record (parsed on first read when the fast path kept it as
    /// bytes).
    pub fn exchange(&self) -> &Exchange {
        match &self.record {
            Record::Made(ex) => ex,
            Record::Kept(kept, parsed) => parsed.get_or_init(|| Box::new(kept.exchange(self.id))),
        }
    }

    /// What the key watcher's cheap test reads, without parsing a kept
    /// record.
    pub(crate) fn signals(&self) -> Signals<'_> {
        match &self.record {
            Record::Made(ex) => Signals::of(ex),
            Record::Kept(kept, _) => kept.signals(),
        }
    }

    /// The bytes charged to the store for this entry.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The entry's analysis cache, for [`crate::Analyzer`].
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

/// What changed in the store; the SSE endpoint turns these into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    /// An exchange with this id was recorded.
    Added(u64),
    /// Everything was deleted.
    Cleared,
    /// A fault rule change with this sequence number was recorded
    /// ([`Store::changes`]).
    FaultChange(u64),
}

/// A line of the persistence file: the record and its marks side by side.
#[derive(serde::Serialize)]
struct LineOut<'a> {
    #[serde(flatten)]
    exchange: &'a Exchange,
    #[serde(flatten)]
    marks: &'a Marks,
}

#[derive(serde::Deserialize)]
struct LineIn {
    #[serde(flatten)]
    exchange: Exchange,
    #[serde(flatten)]
    marks: Marks,
}

fn line_of(entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&LineOut {
        exchange: entry.exchange(),
        marks: &entry.marks,
    })
}

/// Counters for `GET /api/stats` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreStats {
    /// Exchanges held now.
    pub count: usize,
    /// Bytes charged now.
    pub bytes: usize,
    /// Exchanges evicted to respect the limits since start.
    pub evicted: u64,
    /// Exchanges recorded since start (including reloaded ones).
    pub recorded: u64,
    /// Records the persistence thread could not keep up with (not written).
    pub persist_dropped: u64,
    /// The configured limits.
    pub max_exchanges: usize,
    /// The configured byte limit.
    pub max_bytes: usize,
}

/// Errors of the persistence file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file exists but cannot be read.
    #[error("cannot read the capture file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file (or its compacted copy) cannot be written.
    #[error("cannot write the capture file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The persistence thread did not answer in time or is gone.
    #[error("the capture file writer for {path} is not responding")]
    Stalled {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<Arc<Entry>>,
    changes: VecDeque<FaultChange>,
    next_change: u64,
    bytes: usize,
    next_id: u64,
    evicted: u64,
    recorded: u64,
}

/// The bounded in-memory store, shared by the proxy, the API and the
/// persistence thread.
#[derive(Debug)]
pub struct Store {
    limits: StoreLimits,
    inner: Mutex<Inner>,
    events: broadcast::Sender<StoreEvent>,
    persist: OnceLock<Persister>,
    watch: OnceLock<Watch>,
}

/// The key watcher's queue: the entries it wants, as they are recorded.
#[derive(Debug)]
struct Watch {
    wants: fn(&Signals<'_>) -> bool,
    queue: Mutex<VecDeque<Arc<Entry>>>,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Persister {
    path: PathBuf,
    tx: SyncSender<PersistMsg>,
    dropped: AtomicU64,
}

enum PersistMsg {
    Append(Arc<Entry>),
    Clear,
    Flush(SyncSender<Result<(), String>>),
}

impl Store {
    /// An in-memory store.
    pub fn new(limits: StoreLimits) -> Arc<Self> {
        Arc::new(Self::bare(limits))
    }

    fn bare(limits: StoreLimits) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            limits: StoreLimits {
                max_exchanges: limits.max_exchanges.max(1),
                max_bytes: limits.max_bytes.max(1),
            },
            inner: Mutex::new(Inner {
                next_id: 1,
                ..Inner::default()
            }),
            events,
            persist: OnceLock::new(),
            watch: OnceLock::new(),
        }
    }

    /// A store backed by an append-only JSON-lines file: loads what the file
    /// holds (keeping the newest within the limits), rewrites the file with
    /// just those, then appends every new exchange from a background thread.
    /// The file is compacted again whenever it grows past about twice the
    /// byte limit. Lines that do not parse are skipped with a warning.
    ///
    /// # Errors
    /// [`PersistError`] when the file cannot be read, rewritten or opened.
    pub fn open(limits: StoreLimits, path: &Path) -> Result<Arc<Self>, PersistError> {
        let store = Arc::new(Self::bare(limits));
        let read_err = |source| PersistError::Read {
            path: path.to_owned(),
            source,
        };
        match File::open(path) {
            Ok(file) => {
                let mut skipped = 0usize;
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(read_err)?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<LineIn>(&line) {
                        Ok(l) => store.push_loaded(l.exchange, l.marks),
                        Err(_) => skipped += 1,
                    }
                }
                if skipped > 0 {
                    tracing::warn!(path = %path.display(), skipped, "skipped unreadable lines in the capture file");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_err(e)),
        }
        let writer = compact(path, &store.snapshot())?;
        let (tx, rx) = std::sync::mpsc::sync_channel(PERSIST_QUEUE);
        let weak = Arc::downgrade(&store);
        let thread_path = path.to_owned();
        let max_bytes = store.limits.max_bytes;
        std::thread::Builder::new()
            .name("inspector-persist".into())
            .spawn(move || persist_loop(&thread_path, writer, &rx, &weak, max_bytes))
            .map_err(|source| PersistError::Write {
                path: path.to_owned(),
                source,
            })?;
        let _ = store.persist.set(Persister {
            path: path.to_owned(),
            tx,
            dropped: AtomicU64::new(0),
        });
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a push or pop plus counters), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limits in force.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Records an exchange, assigning its id (the `id` field is ignored),
    /// evicting the oldest entries beyond the limits. Returns the id.
    pub fn push(&self, exchange: Exchange) -> u64 {
        self.push_marked(exchange, Marks::default())
    }

    /// [`Store::push`] with the inspector's marks.
    pub fn push_marked(&self, mut exchange: Exchange, marks: Marks) -> u64 {
        self.push_record(|id| {
            exchange.id = id;
            let size = exchange.approx_size();
            (Record::Made(Box::new(exchange)), marks, size)
        })
    }

    /// Stores what the fast path kept of an exchange.
    pub(crate) fn push_recorded(&self, kept: Recorded) -> u64 {
        let size = kept.approx_size();
        self.push_record(|_| (Record::Kept(kept, OnceLock::new()), Marks::default(), size))
    }

    /// Stores the record `make` makes for the next id, then tells
    /// subscribers, the key watcher and the persistence thread.
    fn push_record(&self, make: impl FnOnce(u64) -> (Record, Marks, usize)) -> u64 {
        let (id, entry) = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            let (record, marks, size) = make(id);
            let entry = self.insert(&mut inner, record, marks, size, id);
            (id, entry)
        };
        let _ = self.events.send(StoreEvent::Added(id));
        if let Some(w) = self.watch.get()
            && (w.wants)(&entry.signals())
        {
            let mut queue = w.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push_back(Arc::clone(&entry));
            if queue.len() > WATCH_QUEUE {
                queue.pop_front();
                w.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(p) = self.persist.get() {
            match p.tx.try_send(PersistMsg::Append(entry)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    p.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        id
    }

    fn push_loaded(&self, exchange: Exchange, marks: Marks) {
        let mut inner = self.lock();
        let id = exchange.id;
        // Compaction can race an append, so a file may repeat an id.
        if id < inner.next_id {
            return;
        }
        inner.next_id = id + 1;
        let size = exchange.approx_size();
        self.insert(
            &mut inner,
            Record::Made(Box::new(exchange)),
            marks,
            size,
            id,
        );
    }

    fn insert(
        &self,
        inner: &mut Inner,
        record: Record,
        marks: Marks,
        size: usize,
        id: u64,
    ) -> Arc<Entry> {
        let size = size + ENTRY_OVERHEAD;
        let entry = Arc::new(Entry {
            id,
            record,
            marks,
            size,
            cache: Cache::default(),
        });
        inner.entries.push_back(Arc::clone(&entry));
        inner.bytes += size;
        inner.recorded += 1;
        while inner.entries.len() > self.limits.max_exchanges
            || (inner.bytes > self.limits.max_bytes && inner.entries.len() > 1)
        {
            if let Some(old) = inner.entries.pop_front() {
                inner.bytes -= old.size;
                inner.evicted += 1;
            }
        }
        entry
    }

    /// The exchange with this id, if it is still held.
    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        let inner = self.lock();
        let idx = inner.entries.binary_search_by_key(&id, |e| e.id).ok()?;
        inner.entries.get(idx).cloned()
    }

    /// The entries with an id above `id`, oldest first, and the id the
    /// next exchange will get (one lock, however many there are).
    pub fn after(&self, id: u64) -> (Vec<Arc<Entry>>, u64) {
        let inner = self.lock();
        let from = inner.entries.partition_point(|e| e.id <= id);
        (
            inner.entries.range(from..).cloned().collect(),
            inner.next_id,
        )
    }

    /// From now on, queues every recorded entry that `wants` picks for one
    /// watcher to take ([`Store::watched`]), so it never reads the store
    /// under its lock; returns the entries held now that it picks. The
    /// first call sets `wants`.
    pub(crate) fn watch(&self, wants: fn(&Signals<'_>) -> bool) -> Vec<Arc<Entry>> {
        let _ = self.watch.set(Watch {
            wants,
            queue: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
        });
        let mut held = self.snapshot();
        held.retain(|e| wants(&e.signals()));
        held
    }

    /// The entries queued for the watcher since the last call, oldest
    /// first.
    pub(crate) fn watched(&self) -> Vec<Arc<Entry>> {
        self.watch.get().map_or_else(Vec::new, |w| {
            let taken = std::mem::take(&mut *w.queue.lock().unwrap_or_else(|e| e.into_inner()));
            taken.into()
        })
    }

    /// Entries dropped from the watcher's queue because it fell behind.
    pub(crate) fn watch_dropped(&self) -> u64 {
        self.watch
            .get()
            .map_or(0, |w| w.dropped.load(Ordering::Relaxed))
    }

    /// Every entry held now, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<Entry>> {
        self.lock().entries.iter().cloned().collect()
    }

    /// Records a fault rule change (its `seq` and time are assigned here)
    /// for the timeline; the oldest beyond 1000 are forgotten.
    pub fn record_change(&self, mut change: FaultChange) -> u64 {
        let seq = {
            let mut inner = self.lock();
            inner.next_change += 1;
            change.seq = inner.next_change;
            let now = jiff::Timestamp::now();
            change.at = format!("{now:.3}");
            change.at_us = now.as_microsecond();
            inner.changes.push_back(change);
            while inner.changes.len() > MAX_CHANGES {
                inner.changes.pop_front();
            }
            inner.next_change
        };
        let _ = self.events.send(StoreEvent::FaultChange(seq));
        seq
    }

    /// The fault rule changes held, oldest first.
    pub fn changes(&self) -> Vec<FaultChange> {
        self.lock().changes.iter().cloned().collect()
    }

    /// The change with sequence number `seq`, if still held.
    pub fn change(&self, seq: u64) -> Option<FaultChange> {
        self.lock().changes.iter().find(|c| c.seq == seq).cloned()
    }

    /// Deletes every exchange and rule change (and truncates the
    /// persistence file).
    pub fn clear(&self) {
        {
            let mut inner = self.lock();
            inner.entries.clear();
            inner.changes.clear();
            inner.bytes = 0;
        }
        if let Some(p) = self.persist.get() {
            // Blocking send: a clear must not be lost behind a full queue.
            let _ = p.tx.send(PersistMsg::Clear);
        }
        let _ = self.events.send(StoreEvent::Cleared);
    }

    /// Counters and limits.
    pub fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            count: inner.entries.len(),
            bytes: inner.bytes,
            evicted: inner.evicted,
            recorded: inner.recorded,
            persist_dropped: self
                .persist
                .get()
                .map_or(0, |p| p.dropped.load(Ordering::Relaxed)),
            max_exchanges: self.limits.max_exchanges,
            max_bytes: self.limits.max_bytes,
        }
    }

    /// Store events from now on. A slow receiver gets `Lagged` and should
    /// reload.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// Waits until every exchange recorded so far is in the persistence file
    /// (a no-op without one). Blocks the calling thread for up to 10 s.
    ///
    /// # Errors
    /// [`PersistError`] when the writer failed or did not answer.
    pub fn flush(&self) -> Result<(), PersistError> {
        let Some(p) = self.persist.get() else {
            return Ok(());
        };
        let stalled = || PersistError::Stalled {
            path: p.path.clone(),
        };
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        p.tx.send(PersistMsg::Flush(ack_tx))
            .map_err(|_| stalled())?;
        match ack_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(PersistError::Write {
                path: p.path.clone(),
                source: std::io::Error::other(msg),
            }),
            Err(_) => Err(stalled()),
        }
    }
}

/// Rewrites `path` with `entries` (temp file + rename) and opens it for
/// appending.
fn compact(path: &Path, entries: &[Arc<Entry>]) -> Result<BufWriter<File>, PersistError> {
    let write_err = |source| PersistError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut w = BufWriter::new(File::create(&tmp).map_err(write_err)?);
        for e in entries {
            let line = line_of(e).map_err(|e| write_err(std::io::Error::other(e)))?;
            w.write_all(&line).map_err(write_err)?;
            w.write_all(b"\n").map_err(write_err)?;
        }
        w.flush().map_err(write_err)?;
    }
    std::fs::rename(&tmp, path).map_err(write_err)?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(write_err)?;
    Ok(BufWriter::new(file))
}

fn persist_loop(
    path: &Path,
    mut writer: BufWriter<File>,
    rx: &Receiver<PersistMsg>,
    store: &Weak<Store>,
    max_bytes: usize,
) {
    let compact_at = max_bytes.saturating_mul(2).max(16 * 1024 * 1024) as u64;
    let mut written: u64 = 0;
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut acks = Vec::new();
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            match m {
                PersistMsg::Append(entry) => {
                    if failed.is_none() {
                        let line = line_of(&entry).unwrap_or_default();
                        written += line.len() as u64 + 1;
                        if let Err(e) = writer
                            .write_all(&line)
                            .and_then(|()| writer.write_all(b"\n"))
                        {
                            tracing::error!(path = %path.display(), error = %e, "cannot append to the capture file; persistence stopped");
                            failed = Some(e.to_string());
                        }
                    }
                }
                PersistMsg::Clear => match File::create(path) {
                    Ok(file) => {
                        writer = BufWriter::new(file);
                        written = 0;
                    }
                    Err(e) => failed = Some(e.to_string()),
                },
                PersistMsg::Flush(ack) => acks.push(ack),
            }
            msg = rx.try_recv().ok();
        }
        if failed.is_none()
            && let Err(e) = writer.flush()
        {
            failed = Some(e.to_string());
        }
        if failed.is_none()
            && written > compact_at
            && let Some(store) = store.upgrade()
        {
            match compact(path, &store.snapshot()) {
                Ok(w) => {
                    writer = w;
                    written = 0;
                }
                Err(e) => failed = Some(format!("{e}: {:?}", std::error::Error::source(&e))),
            }
        }
        for ack in acks {
            let _ = ack.send(failed.clone().map_or(Ok(()), Err));
        }
    }
    let _ = writer.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(body_len: usize) -> Exchange {
        Exchange::test_request(
            "a.example",
            "POST",
            "/inbox",
            &[("host", "a.example")],
            &vec![b'x'; body_len],
        )
    }

    #[test]
    fn hundred_thousand_pushes_keep_at_most_n_and_bounded_bytes() {
        let limits = StoreLimits {
            max_exchanges: 1000,
            max_bytes: 4 * 1024 * 1024,
        };
        let store = Store::new(limits);
        let mut max_seen = 0;
        for i in 0..100_000 {
            store.push(exchange(i % 4096));
            let s = store.stats();
            assert!(s.count <= 1000, "count {} after {i}", s.count);
            assert!(s.bytes <= limits.max_bytes, "bytes {} after {i}", s.bytes);
            max_seen = max_seen.max(s.bytes);
        }
        let s = store.stats();
        assert_eq!(s.recorded, 100_000);
        assert_eq!(s.evicted as usize + s.count, 100_000);
        // The byte limit, not the count, binds here: ~1000 entries of ~3 KiB
        // average would be ~4 MiB.
        assert!(max_seen > 3 * 1024 * 1024);
        // Newest kept, oldest evicted, ids in order.
        let snap = store.snapshot();
        assert_eq!(snap.last().map(|e| e.exchange().id), Some(100_000));
        assert!(
            snap.windows(2)
                .all(|w| w[0].exchange().id < w[1].exchange().id)
        );
        assert!(store.get(1).is_none());
        assert!(store.get(100_000).is_some());
    }

    #[test]
    fn count_limit_binds_when_bytes_allow() {
        let store = Store::new(StoreLimits {
            max_exchanges: 10,
            max_bytes: usize::MAX,
        });
        for _ in 0..25 {
            store.push(exchange(10));
        }
        let ids: Vec<u64> = store.snapshot().iter().map(|e| e.exchange().id).collect();
        assert_eq!(ids, (16..=25).collect::<Vec<_>>());
    }

    #[test]
    fn persistence_reloads_compacts_and_continues_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capture.jsonl");
        let limits = StoreLimits {
            max_exchanges: 5,
            max_bytes: usize::MAX,
        };
        {
            let store = Store::open(limits, &path).expect("open");
            for i in 0..8 {
                store.push(exchange(i));
            }
            store.flush().expect("flush");
        }
        let lines = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count();
        assert_eq!(lines, 8, "append-only while running");

        let store = Store::open(limits, &path).expect("reopen");
        let ids: Vec<u64> = store.snapshot().iter().map(|e| e.exchange().id).collect();
        assert_eq!(ids, vec![4, 5, 6, 7, 8]);
        assert_eq!(
            store
                .get(8)
                .map(|e| e.exchange().request.body.captured.len()),
            Some(7)
        );
        assert_eq!(store.push(exchange(1)), 9);
        store.flush().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 6, "compacted on load, then appended");

        store.clear();
        store.flush().expect("flush");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
        assert_eq!(store.stats().count, 0);
    }

    #[test]
    fn marks_are_persisted_beside_their_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capture.jsonl");
        let marks = Marks {
            fault: Some(crate::fault::FaultMark {
                rule: 3,
                action: crate::fault::Action {
                    status: Some(503),
                    ..crate::fault::Action::default()
                },
            }),
            replay_of: Some(1),
            edited: true,
        };
        {
            let store = Store::open(StoreLimits::default(), &path).expect("open");
            store.push(exchange(1));
            store.push_marked(exchange(2), marks.clone());
            store.flush().expect("flush");
        }
        let store = Store::open(StoreLimits::default(), &path).expect("reopen");
        let snap = store.snapshot();
        assert_eq!(snap[0].marks, Marks::default());
        assert_eq!(snap[1].marks, marks);
        assert_eq!(snap[1].exchange().request.body.captured.len(), 2);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capture.jsonl");
        let good = serde_json::to_string(&Exchange {
            id: 3,
            ..exchange(2)
        })
        .expect("json");
        std::fs::write(&path, format!("not json\n{good}\n{{\"id\":\n")).expect("write");
        let store = Store::open(StoreLimits::default(), &path).expect("open");
        assert_eq!(store.stats().count, 1);
        assert_eq!(store.push(exchange(0)), 4);
    }
}
