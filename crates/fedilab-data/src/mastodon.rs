//! Where a Mastodon instance keeps its state: the `mastodon` database in
//! the instance's PostgreSQL, Redis's database 0 (Sidekiq's queues, retry
//! and schedule sets, timelines and caches share it), media on the volume
//! mounted in the web and Sidekiq pods, and Sidekiq as the job worker. The
//! names come from the objects `fedilab-manifest` renders.

use fedilab_manifest::{DB_NAME, DB_USER, MEDIA_DIR};
use fedilab_profile::names::Component;

use crate::{Database, KindState, MediaPlace, RedisPlace, Worker};

/// Mastodon's [`KindState`].
#[derive(Debug, Clone, Copy)]
pub struct Mastodon;

impl KindState for Mastodon {
    fn kind(&self) -> &'static str {
        "mastodon"
    }

    fn database(&self) -> Database {
        Database {
            component: Component::Postgres,
            container: "postgres",
            name: DB_NAME,
            user: DB_USER,
        }
    }

    fn redis(&self) -> RedisPlace {
        RedisPlace {
            component: Component::Redis,
            container: "redis",
            db: 0,
        }
    }

    fn media(&self) -> Option<MediaPlace> {
        Some(MediaPlace {
            component: Component::Web,
            container: "web",
            dir: MEDIA_DIR,
        })
    }

    fn workers(&self) -> Vec<Worker> {
        vec![Worker {
            component: Component::Sidekiq,
            container: "sidekiq",
        }]
    }
}
