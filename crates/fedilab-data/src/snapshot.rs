//! Named snapshots of an instance's state and the reset to one, as plans:
//! which container runs which command (psql statements, a Redis Lua
//! script, a shell script over the media volume, a signal to the job
//! worker). The orchestrator runs the [`Step`]s through exec; the tests run
//! the same argv against a local PostgreSQL, Redis and a temp directory.
//! Pure: this module builds commands and parses their output, it runs
//! nothing.
//!
//! Where a snapshot lives, all inside the instance's own pods (restoring
//! needs no transfer to the host):
//! - PostgreSQL: a template database `fedilab_snap_<name>` (`IS_TEMPLATE`,
//!   `ALLOW_CONNECTIONS false`, its save time in the database comment),
//!   cloned from the live one with `CREATE DATABASE .. TEMPLATE`.
//! - Redis: a logical database (2 up to the server's last, 15 by default:
//!   14 snapshots) marked by the key [`MARKER_KEY`] holding the name;
//!   database 1 is the staging area of a reset.
//! - Media: a copy of the volume's files in `<media>/.fedilab/snapshots/<name>`,
//!   a directory kept at mode 000 between commands so the web server (same
//!   uid, not root) cannot serve it.
//!
//! A reset is [`prepare_reset`] (builds the new state beside the live one:
//! a `next` database, Redis's staging database, a staging media tree; the
//! server keeps running on the old state) then [`commit_reset`] (swaps:
//! `pg::swap`'s one transaction, `SWAPDB`, media renames rolled forward),
//! with the job workers quiet in between ([`quiet_workers`],
//! [`workers_probe`], [`restart_workers`]).

use std::fmt;
use std::str::FromStr;

use fedilab_profile::names::Component;

use crate::{Database, KindState, MediaPlace, RedisPlace, Worker, pg};

/// The snapshot `up` records once setup is done.
pub const FRESH: &str = "fresh";

/// The Redis key that marks a logical database as the snapshot named by
/// its value (never copied into the live database).
pub const MARKER_KEY: &str = "fedilab:snapshot";

/// Redis's staging database for a reset.
pub const STAGING_DB: u8 = 1;

/// The first Redis database that holds snapshots.
pub const FIRST_SNAPSHOT_DB: u8 = 2;

/// Longest snapshot name (PostgreSQL names are at most 63 bytes).
pub const MAX_NAME: usize = 40;

/// A snapshot's name: lowercase letters, digits and `-`, starting with a
/// letter or digit, at most [`MAX_NAME`] characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName(String);

/// Why a snapshot name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snapshot name {:?} is not valid: use lowercase letters, digits and '-', \
             starting with a letter or digit, at most {MAX_NAME} characters",
            self.0
        )
    }
}

impl std::error::Error for NameError {}

impl FromStr for SnapshotName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(SnapshotName(s.to_owned()))
        } else {
            Err(NameError(s.to_owned()))
        }
    }
}

impl SnapshotName {
    /// `fresh`: the state right after setup.
    pub fn fresh() -> SnapshotName {
        SnapshotName(FRESH.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which part of the state a step touches (for timings and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// PostgreSQL.
    Database,
    /// Redis.
    Redis,
    /// The media files.
    Media,
    /// The job workers.
    Workers,
}

impl Part {
    /// `database`, `redis`, `media`, `workers`.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Database => "database",
            Part::Redis => "redis",
            Part::Media => "media",
            Part::Workers => "workers",
        }
    }
}

/// One command in one container of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it touches.
    pub part: Part,
    /// The component whose pod runs it.
    pub component: Component,
    /// The container.
    pub container: &'static str,
    /// The command (no shell unless it is `sh -c`).
    pub argv: Vec<String>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

// ---------------------------------------------------------------- PostgreSQL

/// The template database of snapshot `name`.
pub fn snapshot_database(name: &SnapshotName) -> String {
    format!("fedilab_snap_{name}")
}

const SNAPSHOT_PREFIX: &str = "fedilab_snap_";

/// The database a reset prepares beside `live`.
pub fn next_database(live: &str) -> String {
    format!("{live}_fedilab_next")
}

/// The name `live` has between a swap's rename and its drop.
pub fn old_database(live: &str) -> String {
    format!("{live}_fedilab_old")
}

/// Drops database `db` even if it is a template.
fn drop_template(db: &str) -> Vec<String> {
    vec![
        format!(
            "DO $fedilab$ BEGIN IF EXISTS (SELECT FROM pg_database WHERE datname = {}) THEN \
             ALTER DATABASE {} WITH IS_TEMPLATE false; END IF; END $fedilab$",
            pg::quote_literal(db),
            pg::quote_ident(db)
        ),
        pg::drop_database(db),
    ]
}

/// `psql` in the database's container, connected to the `postgres`
/// maintenance database, one `-c` per statement (one session: a `BEGIN` in
/// one and a `COMMIT` in a later one make one transaction), stopping at
/// the first error with a non-zero exit.
pub fn psql(db: &Database, statements: &[String]) -> Vec<String> {
    let mut argv = strings(&[
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        db.user,
        "-d",
        "postgres",
    ]);
    for s in statements {
        argv.push("-c".to_owned());
        argv.push(s.clone());
    }
    argv
}

/// Saves the live database as snapshot `name` (replacing one of that
/// name): the live database is closed for the moment of the copy (its
/// clients are cut and reconnect), the copy gets its flags and comment
/// under a temporary name, then takes the snapshot's name in one
/// transaction. After a failure run [`pg_undo`].
pub fn pg_save(live: &str, name: &SnapshotName, saved_at: &str) -> Vec<String> {
    let snap = snapshot_database(name);
    let tmp = format!("{snap}_new");
    let old = format!("{snap}_old");
    let mut sql = drop_template(&tmp);
    sql.extend(pg::close(live));
    sql.push(format!(
        "CREATE DATABASE {} TEMPLATE {}",
        pg::quote_ident(&tmp),
        pg::quote_ident(live)
    ));
    sql.push(pg::reopen(live));
    sql.push(format!(
        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        pg::quote_ident(&tmp)
    ));
    sql.push(format!(
        "COMMENT ON DATABASE {} IS {}",
        pg::quote_ident(&tmp),
        pg::quote_literal(saved_at)
    ));
    sql.extend(drop_template(&old));
    sql.push("BEGIN".to_owned());
    sql.push(format!(
        "DO $fedilab$ BEGIN IF EXISTS (SELECT FROM pg_database WHERE datname = {}) THEN \
         ALTER DATABASE {} RENAME TO {}; END IF; END $fedilab$",
        pg::quote_literal(&snap),
        pg::quote_ident(&snap),
        pg::quote_ident(&old)
    ));
    sql.push(format!(
        "ALTER DATABASE {} RENAME TO {}",
        pg::quote_ident(&tmp),
        pg::quote_ident(&snap)
    ));
    sql.push("COMMIT".to_owned());
    sql.extend(drop_template(&old));
    sql
}

/// Builds the `next` database from snapshot `name` (nobody is connected
/// to a snapshot, so the clone never waits); the live database is not
/// touched. Fails when the snapshot does not exist.
pub fn pg_prepare(live: &str, name: &SnapshotName) -> Vec<String> {
    let next = next_database(live);
    vec![
        pg::drop_database(&next),
        format!(
            "CREATE DATABASE {} TEMPLATE {}",
            pg::quote_ident(&next),
            pg::quote_ident(&snapshot_database(name))
        ),
    ]
}

/// Puts `next` under the live name ([`pg::swap`]).
pub fn pg_commit(live: &str) -> Vec<String> {
    pg::swap(live, &next_database(live), &old_database(live))
}

/// After any failure: the live database accepts connections again (it
/// names the old data if the swap's transaction did not commit, the new
/// if it did).
pub fn pg_undo(live: &str) -> Vec<String> {
    vec![pg::reopen(live)]
}

/// Drops snapshot `name` (no error when it does not exist).
pub fn pg_delete(name: &SnapshotName) -> Vec<String> {
    drop_template(&snapshot_database(name))
}

/// Lists the snapshot databases: one `name|comment` line each.
pub fn pg_list() -> Vec<String> {
    vec![format!(
        "SELECT substr(datname, {}) || '|' || coalesce(shobj_description(oid, 'pg_database'), '') \
         FROM pg_database WHERE datname LIKE 'fedilab\\_snap\\_%' ORDER BY 1",
        SNAPSHOT_PREFIX.len() + 1
    )]
}

/// Reads [`pg_list`]'s output: `(name, saved at)`; temporary databases of
/// an interrupted save (`_new`, `_old`) are not snapshots and are skipped.
pub fn parse_pg_list(stdout: &str) -> Vec<(SnapshotName, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, comment) = line.split_once('|')?;
            Some((name.parse().ok()?, comment.trim().to_owned()))
        })
        .collect()
}

// --------------------------------------------------------------------- Redis

/// Finds the database marked with ARGV[1] (or a free one), from
/// FIRST_SNAPSHOT_DB up to the server's last database (SELECT fails past
/// it). Shared by the scripts below.
const FIND_LUA: &str = r"
local function find(name, first, want_free)
  local i, free = first, nil
  while true do
    local ok = redis.pcall('SELECT', i)
    if type(ok) == 'table' and ok.err then break end
    local m = redis.call('GET', MARK)
    if m == name then return i, i - first end
    if (not m) and (not free) then free = i end
    i = i + 1
  end
  if want_free then return free, i - first end
  return nil, i - first
end
";

/// Saves database ARGV[2] as snapshot ARGV[1] (replacing one of that
/// name): flush the target, copy every key (values and expiry), mark it.
const SAVE_LUA: &str = r"
local name, src, first = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local target, slots = find(name, first, true)
if not target then
  return redis.error_reply('ERR no free Redis database for snapshot ' .. name ..
    ' (all ' .. slots .. ' hold snapshots; delete one)')
end
redis.call('SELECT', target)
redis.call('FLUSHDB')
redis.call('SELECT', src)
local n = 0
for _, k in ipairs(redis.call('KEYS', '*')) do
  redis.call('COPY', k, k, 'DB', target)
  n = n + 1
end
redis.call('SELECT', target)
redis.call('SET', MARK, name)
return 'saved ' .. name .. ' db ' .. target .. ' keys ' .. n
";

/// Copies snapshot ARGV[1] into the staging database ARGV[2] (flushed
/// first), without its marker. The live database is not touched.
const PREPARE_LUA: &str = r"
local name, staging, first = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local source = find(name, first, false)
if not source then
  return redis.error_reply('ERR no Redis snapshot ' .. name)
end
redis.call('SELECT', staging)
redis.call('FLUSHDB')
redis.call('SELECT', source)
local n = 0
for _, k in ipairs(redis.call('KEYS', '*')) do
  if k ~= MARK then
    redis.call('COPY', k, k, 'DB', staging)
    n = n + 1
  end
end
return 'prepared ' .. name .. ' keys ' .. n
";

/// Swaps the live database ARGV[1] with the staging one ARGV[2] (atomic:
/// every client sees the old keys or the new), then empties staging.
const COMMIT_LUA: &str = r"
local live, staging = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('SWAPDB', live, staging)
redis.call('SELECT', staging)
redis.call('FLUSHDB')
return 'swapped'
";

/// Empties the database holding snapshot ARGV[1].
const DELETE_LUA: &str = r"
local name, first = ARGV[1], tonumber(ARGV[2])
local db = find(name, first, false)
if not db then return 'absent' end
redis.call('SELECT', db)
redis.call('FLUSHDB')
return 'deleted'
";

/// Every snapshot: `name db keys` lines.
const LIST_LUA: &str = r"
local first = tonumber(ARGV[1])
local out, i = {}, first
while true do
  local ok = redis.pcall('SELECT', i)
  if type(ok) == 'table' and ok.err then break end
  local m = redis.call('GET', MARK)
  if m then table.insert(out, m .. ' ' .. i .. ' ' .. (redis.call('DBSIZE') - 1)) end
  i = i + 1
end
return out
";

/// Sidekiq's view from Redis: `processes quiet busy queued`, counting the
/// processes whose heartbeat is under 30 s old (Sidekiq beats every 10 s
/// and writes `quiet` and its busy count with each beat).
const WORKERS_LUA: &str = r"
local now = tonumber(redis.call('TIME')[1])
local live, quiet, busy, queued = 0, 0, 0, 0
for _, id in ipairs(redis.call('SMEMBERS', 'processes')) do
  local v = redis.call('HMGET', id, 'beat', 'quiet', 'busy')
  if v[1] and math.abs(now - tonumber(v[1])) < 30 then
    live = live + 1
    if v[2] == 'true' then quiet = quiet + 1 end
    busy = busy + (tonumber(v[3]) or 0)
  end
end
for _, q in ipairs(redis.call('SMEMBERS', 'queues')) do
  queued = queued + redis.call('LLEN', 'queue:' .. q)
end
return live .. ' ' .. quiet .. ' ' .. busy .. ' ' .. queued
";

fn lua(body: &str, with_find: bool) -> String {
    let mark = format!("local MARK = '{MARKER_KEY}'\n");
    if with_find {
        format!("{mark}{FIND_LUA}{body}")
    } else {
        format!("{mark}{body}")
    }
}

/// `redis-cli` in Redis's container running `script` with `args` (`-e`:
/// an error reply is a non-zero exit).
pub fn redis_eval(place: &RedisPlace, script: &str, args: &[String]) -> Vec<String> {
    let mut argv = strings(&["redis-cli", "-e", "-n"]);
    argv.push(place.db.to_string());
    argv.extend(strings(&["EVAL"]));
    argv.push(script.to_owned());
    argv.push("0".to_owned());
    argv.extend(args.iter().cloned());
    argv
}

/// Saves the live Redis database as snapshot `name`.
pub fn redis_save(place: &RedisPlace, name: &SnapshotName) -> Vec<String> {
    redis_eval(
        place,
        &lua(SAVE_LUA, true),
        &[
            name.to_string(),
            place.db.to_string(),
            FIRST_SNAPSHOT_DB.to_string(),
        ],
    )
}

/// Copies snapshot `name` into the staging database.
pub fn redis_prepare(place: &RedisPlace, name: &SnapshotName) -> Vec<String> {
    redis_eval(
        place,
        &lua(PREPARE_LUA, true),
        &[
            name.to_string(),
            STAGING_DB.to_string(),
            FIRST_SNAPSHOT_DB.to_string(),
        ],
    )
}

/// Swaps staging in as the live database.
pub fn redis_commit(place: &RedisPlace) -> Vec<String> {
    redis_eval(
        place,
        &lua(COMMIT_LUA, false),
        &[place.db.to_string(), STAGING_DB.to_string()],
    )
}

/// Deletes snapshot `name` (prints `absent` when there is none).
pub fn redis_delete(place: &RedisPlace, name: &SnapshotName) -> Vec<String> {
    redis_eval(
        place,
        &lua(DELETE_LUA, true),
        &[name.to_string(), FIRST_SNAPSHOT_DB.to_string()],
    )
}

/// Lists the snapshots: `name db keys` lines.
pub fn redis_list(place: &RedisPlace) -> Vec<String> {
    redis_eval(
        place,
        &lua(LIST_LUA, false),
        &[FIRST_SNAPSHOT_DB.to_string()],
    )
}

/// Reads [`redis_list`]'s output: `(name, key count)`.
pub fn parse_redis_list(stdout: &str) -> Vec<(SnapshotName, u64)> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let name = f.next()?.parse().ok()?;
            let _db = f.next()?;
            let keys = f.next()?.parse().ok()?;
            Some((name, keys))
        })
        .collect()
}

// --------------------------------------------------------------------- Media

/// Shared by the media scripts: `$d` the volume, `$f` fedilab's directory
/// on it (mode 000 between commands), and `finish`, which completes a swap
/// an earlier command left half done (roll forward: `incoming` exists
/// until every live entry moved to `old`; `moving-in` until every new
/// entry moved to the volume).
const MEDIA_SH: &str = r#"set -eu
d=$1; f="$d/.fedilab"
mkdir -p "$f"; chmod 700 "$f"
trap 'chmod 000 "$f"' EXIT
mkdir -p "$f/snapshots"
entries() { for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do [ -e "$e" ] || [ -L "$e" ] || continue; [ "$e" = "$f" ] && continue; printf '%s\n' "$e"; done; }
finish() {
  if [ -d "$f/incoming" ]; then
    mkdir -p "$f/old"
    entries "$d" | while IFS= read -r e; do mv "$e" "$f/old/"; done
    mv "$f/incoming" "$f/moving-in"
  fi
  if [ -d "$f/moving-in" ]; then
    entries "$f/moving-in" | while IFS= read -r e; do mv "$e" "$d/"; done
    rmdir "$f/moving-in"
  fi
  rm -rf "$f/old"
}
finish
"#;

const MEDIA_SAVE_SH: &str = r#"name=$2; t="$f/snapshots/.tmp-$name"
rm -rf "$t" "$f/snapshots/.old-$name"; mkdir "$t"
entries "$d" | while IFS= read -r e; do cp -a "$e" "$t/"; done
if [ -e "$f/snapshots/$name" ]; then mv "$f/snapshots/$name" "$f/snapshots/.old-$name"; fi
mv "$t" "$f/snapshots/$name"; rm -rf "$f/snapshots/.old-$name"
echo "saved $name files $(find "$f/snapshots/$name" -type f | wc -l)"
"#;

const MEDIA_PREPARE_SH: &str = r#"name=$2
if [ ! -d "$f/snapshots/$name" ]; then echo "no media snapshot $name" >&2; exit 3; fi
rm -rf "$f/staging" "$f/staging.tmp"
cp -a "$f/snapshots/$name" "$f/staging.tmp"
mv "$f/staging.tmp" "$f/staging"
echo "prepared $name"
"#;

const MEDIA_COMMIT_SH: &str = r#"if [ ! -d "$f/staging" ]; then echo "no prepared media" >&2; exit 3; fi
mv "$f/staging" "$f/incoming"
finish
echo swapped
"#;

const MEDIA_DELETE_SH: &str = r#"name=$2
if [ -e "$f/snapshots/$name" ]; then rm -rf "$f/snapshots/$name"; echo deleted; else echo absent; fi
"#;

const MEDIA_LIST_SH: &str = r#"for s in "$f/snapshots"/*; do [ -d "$s" ] || continue; echo "$(basename "$s") $(find "$s" -type f | wc -l)"; done
"#;

fn media_sh(place: &MediaPlace, body: &str, name: Option<&SnapshotName>) -> Vec<String> {
    let mut argv = strings(&["sh", "-c"]);
    argv.push(format!("{MEDIA_SH}{body}"));
    argv.push("sh".to_owned());
    argv.push(place.dir.to_owned());
    if let Some(name) = name {
        argv.push(name.to_string());
    }
    argv
}

/// Copies the media files into snapshot `name` (replacing one of that
/// name; the old copy goes only once the new one is complete).
pub fn media_save(place: &MediaPlace, name: &SnapshotName) -> Vec<String> {
    media_sh(place, MEDIA_SAVE_SH, Some(name))
}

/// Copies snapshot `name` into the staging tree (the live files stay).
pub fn media_prepare(place: &MediaPlace, name: &SnapshotName) -> Vec<String> {
    media_sh(place, MEDIA_PREPARE_SH, Some(name))
}

/// Swaps the staging tree in: one rename decides (`staging` ->
/// `incoming`), then the moves are rolled forward, by this command or,
/// if it is cut short, by the next media command.
pub fn media_commit(place: &MediaPlace) -> Vec<String> {
    media_sh(place, MEDIA_COMMIT_SH, None)
}

/// Deletes snapshot `name`'s files (prints `absent` when there are none).
pub fn media_delete(place: &MediaPlace, name: &SnapshotName) -> Vec<String> {
    media_sh(place, MEDIA_DELETE_SH, Some(name))
}

/// Lists the media snapshots: `name files` lines.
pub fn media_list(place: &MediaPlace) -> Vec<String> {
    media_sh(place, MEDIA_LIST_SH, None)
}

/// Reads [`media_list`]'s output: `(name, file count)`.
pub fn parse_media_list(stdout: &str) -> Vec<(SnapshotName, u64)> {
    parse_redis_list_like(stdout)
}

fn parse_redis_list_like(stdout: &str) -> Vec<(SnapshotName, u64)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, n) = line.split_once(' ')?;
            Some((name.parse().ok()?, n.trim().parse().ok()?))
        })
        .collect()
}

// ------------------------------------------------------------------- Workers

/// Quiets the worker: `TSTP` to the container's main process (Sidekiq
/// stops fetching jobs and its scheduler; jobs in flight finish). Sent
/// again on every poll: idempotent, and it reaches a process that was
/// still booting at the first one.
pub fn quiet_worker(_worker: &Worker) -> Vec<String> {
    strings(&["sh", "-c", "kill -TSTP 1"])
}

/// Restarts the worker: `TERM` to the container's main process; it exits
/// and its container restarts (the pod stays) with a fresh process on the
/// current state.
pub fn restart_worker(_worker: &Worker) -> Vec<String> {
    strings(&["sh", "-c", "kill -TERM 1"])
}

/// The workers' state as Redis shows it: see [`WorkersState`].
pub fn workers_probe(place: &RedisPlace) -> Vec<String> {
    redis_eval(place, &lua(WORKERS_LUA, false), &[])
}

/// What [`workers_probe`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkersState {
    /// Worker processes with a heartbeat under 30 s old.
    pub processes: u32,
    /// How many of them report quiet.
    pub quiet: u32,
    /// Jobs in flight, summed.
    pub busy: u32,
    /// Jobs waiting in the queues.
    pub queued: u64,
}

impl WorkersState {
    /// Every live process is quiet with nothing in flight (at least one
    /// reported: a booting process has not heard the signal yet).
    pub fn quiet_and_idle(&self) -> bool {
        self.processes > 0 && self.quiet == self.processes && self.busy == 0
    }

    /// The queues are empty and nothing runs.
    pub fn drained(&self) -> bool {
        self.queued == 0 && self.busy == 0
    }
}

/// Reads [`workers_probe`]'s output.
pub fn parse_workers(stdout: &str) -> Option<WorkersState> {
    let mut f = stdout.split_whitespace();
    let state = WorkersState {
        processes: f.next()?.parse().ok()?,
        quiet: f.next()?.parse().ok()?,
        busy: f.next()?.parse().ok()?,
        queued: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some(state)
}

// --------------------------------------------------------------- Per kind

fn db_step(db: &Database, statements: &[String]) -> Step {
    Step {
        part: Part::Database,
        component: db.component,
        container: db.container,
        argv: psql(db, statements),
    }
}

fn redis_step(place: &RedisPlace, argv: Vec<String>) -> Step {
    Step {
        part: Part::Redis,
        component: place.component,
        container: place.container,
        argv,
    }
}

fn media_step(place: &MediaPlace, argv: Vec<String>) -> Step {
    Step {
        part: Part::Media,
        component: place.component,
        container: place.container,
        argv,
    }
}

/// Saves the instance's state as `name`: database, Redis, media (run with
/// the workers quiet).
pub fn save(kind: &dyn KindState, name: &SnapshotName, saved_at: &str) -> Vec<Step> {
    let db = kind.database();
    let redis = kind.redis();
    let mut steps = vec![
        db_step(&db, &pg_save(db.name, name, saved_at)),
        redis_step(&redis, redis_save(&redis, name)),
    ];
    if let Some(media) = kind.media() {
        steps.push(media_step(&media, media_save(&media, name)));
    }
    steps
}

/// Builds snapshot `name`'s state beside the live one (the server keeps
/// running on the old state; safe to run before the workers are quiet).
pub fn prepare_reset(kind: &dyn KindState, name: &SnapshotName) -> Vec<Step> {
    let db = kind.database();
    let redis = kind.redis();
    let mut steps = vec![
        db_step(&db, &pg_prepare(db.name, name)),
        redis_step(&redis, redis_prepare(&redis, name)),
    ];
    if let Some(media) = kind.media() {
        steps.push(media_step(&media, media_prepare(&media, name)));
    }
    steps
}

/// Swaps the prepared state in (run with the workers quiet).
pub fn commit_reset(kind: &dyn KindState) -> Vec<Step> {
    let db = kind.database();
    let redis = kind.redis();
    let mut steps = vec![
        db_step(&db, &pg_commit(db.name)),
        redis_step(&redis, redis_commit(&redis)),
    ];
    if let Some(media) = kind.media() {
        steps.push(media_step(&media, media_commit(&media)));
    }
    steps
}

/// Run after a failed save or reset: the live database accepts
/// connections again.
pub fn undo(kind: &dyn KindState) -> Vec<Step> {
    let db = kind.database();
    vec![db_step(&db, &pg_undo(db.name))]
}

/// Deletes snapshot `name` everywhere (absent parts are no error).
pub fn delete(kind: &dyn KindState, name: &SnapshotName) -> Vec<Step> {
    let db = kind.database();
    let redis = kind.redis();
    let mut steps = vec![
        db_step(&db, &pg_delete(name)),
        redis_step(&redis, redis_delete(&redis, name)),
    ];
    if let Some(media) = kind.media() {
        steps.push(media_step(&media, media_delete(&media, name)));
    }
    steps
}

/// Lists the snapshots, one step per part; read each output with
/// [`parse_list`].
pub fn list(kind: &dyn KindState) -> Vec<Step> {
    let db = kind.database();
    let redis = kind.redis();
    let mut steps = vec![
        db_step(&db, &pg_list()),
        redis_step(&redis, redis_list(&redis)),
    ];
    if let Some(media) = kind.media() {
        steps.push(media_step(&media, media_list(&media)));
    }
    steps
}

/// A snapshot as one part of an instance lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The snapshot.
    pub name: SnapshotName,
    /// The part.
    pub part: Part,
    /// The database's save time; the number of Redis keys or media files.
    pub detail: String,
}

/// Reads the output of a [`list`] step.
pub fn parse_list(part: Part, stdout: &str) -> Vec<Listed> {
    let numbered = |v: Vec<(SnapshotName, u64)>| -> Vec<Listed> {
        v.into_iter()
            .map(|(name, n)| Listed {
                name,
                part,
                detail: n.to_string(),
            })
            .collect()
    };
    match part {
        Part::Database => parse_pg_list(stdout)
            .into_iter()
            .map(|(name, saved)| Listed {
                name,
                part,
                detail: saved,
            })
            .collect(),
        Part::Redis => numbered(parse_redis_list(stdout)),
        Part::Media => numbered(parse_media_list(stdout)),
        Part::Workers => Vec::new(),
    }
}

/// Quiets every worker of the kind.
pub fn quiet_workers(kind: &dyn KindState) -> Vec<Step> {
    worker_steps(kind, quiet_worker)
}

/// Restarts every worker of the kind.
pub fn restart_workers(kind: &dyn KindState) -> Vec<Step> {
    worker_steps(kind, restart_worker)
}

fn worker_steps(kind: &dyn KindState, argv: fn(&Worker) -> Vec<String>) -> Vec<Step> {
    kind.workers()
        .iter()
        .map(|w| Step {
            part: Part::Workers,
            component: w.component,
            container: w.container,
            argv: argv(w),
        })
        .collect()
}

/// The probe of the kind's workers (read with [`parse_workers`]); `None`
/// for a kind without workers.
pub fn probe_workers(kind: &dyn KindState) -> Option<Step> {
    if kind.workers().is_empty() {
        return None;
    }
    let redis = kind.redis();
    Some(Step {
        part: Part::Workers,
        component: redis.component,
        container: redis.container,
        argv: workers_probe(&redis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mastodon::Mastodon;

    #[test]
    fn names_are_checked() {
        for good in ["fresh", "a", "before-follow-2", &"x".repeat(40)] {
            assert!(good.parse::<SnapshotName>().is_ok(), "{good}");
        }
        for bad in ["", "-a", "A", "a_b", "a b", "a/b", ".x", &"x".repeat(41)] {
            let err = bad.parse::<SnapshotName>().expect_err(bad);
            assert!(err.to_string().contains("lowercase letters"), "{err}");
        }
        // The longest name still makes a PostgreSQL name with its suffixes.
        let long: SnapshotName = "x".repeat(40).parse().expect("name");
        assert!(format!("{}_new", snapshot_database(&long)).len() <= 63);
    }

    #[test]
    fn mastodon_steps_run_in_the_pods_that_hold_the_state() {
        let fresh = SnapshotName::fresh();
        let where_ = |steps: Vec<Step>| -> Vec<(Part, &'static str, String)> {
            steps
                .into_iter()
                .map(|s| (s.part, s.container, s.argv[0].clone()))
                .collect()
        };
        let expected = vec![
            (Part::Database, "postgres", "psql".to_owned()),
            (Part::Redis, "redis", "redis-cli".to_owned()),
            (Part::Media, "web", "sh".to_owned()),
        ];
        assert_eq!(where_(save(&Mastodon, &fresh, "t")), expected);
        assert_eq!(where_(prepare_reset(&Mastodon, &fresh)), expected);
        assert_eq!(where_(commit_reset(&Mastodon)), expected);
        assert_eq!(where_(delete(&Mastodon, &fresh)), expected);
        assert_eq!(
            where_(quiet_workers(&Mastodon)),
            [(Part::Workers, "sidekiq", "sh".to_owned())]
        );
        let psql = &save(&Mastodon, &fresh, "t")[0].argv;
        assert!(psql.windows(2).any(|w| w == ["-U", "mastodon"]));
        assert!(psql.windows(2).any(|w| w == ["-d", "postgres"]));
    }

    #[test]
    fn the_snapshot_takes_its_name_in_one_transaction() {
        let sql = pg_save("mastodon", &SnapshotName::fresh(), "2026-01-01T00:00:00Z");
        let begin = sql.iter().position(|s| s == "BEGIN").expect("BEGIN");
        let commit = sql.iter().position(|s| s == "COMMIT").expect("COMMIT");
        let renames: Vec<usize> = (0..sql.len())
            .filter(|&i| sql[i].contains("RENAME"))
            .collect();
        assert_eq!(renames.len(), 2);
        assert!(renames.iter().all(|&i| begin < i && i < commit));
        // The live database is opened again right after the copy.
        let create = sql.iter().position(|s| s.starts_with("CREATE")).expect("c");
        assert!(sql[create + 1].contains("ALLOW_CONNECTIONS true"));
    }

    #[test]
    fn outputs_are_parsed_and_garbage_is_skipped() {
        let listed = parse_pg_list("fresh|2026-01-01\nfresh_new|x\nb-1|\n");
        assert_eq!(
            listed,
            [
                ("fresh".parse().expect("n"), "2026-01-01".to_owned()),
                ("b-1".parse().expect("n"), String::new())
            ]
        );
        assert_eq!(
            parse_redis_list("fresh 2 600\nnope\n"),
            [("fresh".parse().expect("n"), 600)]
        );
        assert_eq!(
            parse_media_list("fresh 3\n.tmp-x 1\n"),
            [("fresh".parse().expect("n"), 3)]
        );
        let state = parse_workers("1 1 0 4\n").expect("state");
        assert!(state.quiet_and_idle() && !state.drained());
        assert!(!parse_workers("0 0 0 0").expect("s").quiet_and_idle());
        assert_eq!(parse_workers("1 2 3"), None);
        assert_eq!(parse_workers("ERR x"), None);
    }
}
