//! Where an instance keeps its state, per server kind, and the plans that
//! move that state: snapshots and reset, backup, restore and import. A plan
//! is data (which container runs which command, with which SQL); the
//! orchestrator runs it through exec and the tests run the same SQL against
//! a local PostgreSQL and Redis. Pure: no I/O.
//!
//! The seam is [`KindState`]: one implementation per server kind (one
//! module each, like [`mastodon`]), so a new kind adds a module, not a
//! branch in every command.

pub mod archive;
pub mod import;
pub mod mastodon;
pub mod pg;
pub mod snapshot;

use fedilab_profile::names::Component;

/// An instance's PostgreSQL database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Database {
    /// The component whose pod runs PostgreSQL.
    pub component: Component,
    /// Its container, where `psql`, `pg_dump` and `pg_restore` run.
    pub container: &'static str,
    /// The database the server uses.
    pub name: &'static str,
    /// The role that owns it (a superuser in the lab's PostgreSQL).
    pub user: &'static str,
}

/// An instance's Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisPlace {
    /// The component whose pod runs Redis.
    pub component: Component,
    /// Its container, where `redis-cli` runs.
    pub container: &'static str,
    /// The logical database the server uses.
    pub db: u8,
}

/// Where an instance keeps uploaded and fetched media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPlace {
    /// A component whose pod mounts the media volume.
    pub component: Component,
    /// The container that mounts it (and has `tar` and `cp`).
    pub container: &'static str,
    /// The mount path.
    pub dir: &'static str,
}

/// A process that runs background jobs (deliveries among them): quieted
/// before an instance's state is replaced, restarted after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    /// The component whose pod runs it.
    pub component: Component,
    /// Its container (the worker is the container's main process).
    pub container: &'static str,
}

/// Where one server kind keeps its state.
pub trait KindState: Sync {
    /// The kind's name as profiles spell it (`mastodon`).
    fn kind(&self) -> &'static str;
    /// The PostgreSQL database.
    fn database(&self) -> Database;
    /// The Redis.
    fn redis(&self) -> RedisPlace;
    /// The media directory, if the kind keeps media on a volume.
    fn media(&self) -> Option<MediaPlace>;
    /// The background-job processes.
    fn workers(&self) -> Vec<Worker>;
}

/// The state places of a kind, by its profile name; `None` for a kind
/// without managed state (an attached external server).
pub fn for_kind(kind: &str) -> Option<&'static dyn KindState> {
    match kind {
        "mastodon" => Some(&mastodon::Mastodon),
        _ => None,
    }
}
