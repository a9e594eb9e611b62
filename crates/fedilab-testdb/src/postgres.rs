//! A throwaway PostgreSQL cluster: `initdb` in a temporary directory, the
//! server on a free loopback port, stopped (immediate mode) on drop.
//!
//! PostgreSQL refuses to run as root: as root, the cluster's files belong
//! to the `postgres` user (which Debian's package creates) and the server
//! runs as that user; clients connect over TCP as the `postgres` role with
//! trust authentication, so they may run as anyone.

use std::fs;
use std::io;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, run};

/// How long the server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running PostgreSQL cluster of its own; see the module documentation.
#[derive(Debug)]
pub struct TempPostgres {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
}

impl TempPostgres {
    /// Creates and starts a cluster (superuser `postgres`, UTF-8, fsync off).
    ///
    /// # Errors
    /// PostgreSQL's server binaries are missing (`scripts/install-test-deps.sh`
    /// installs them), or initdb or the server failed (their output is in
    /// the error).
    pub fn start() -> io::Result<TempPostgres> {
        let bindir = bindir()?;
        let dir = tempfile::Builder::new().prefix("fedilab-pg-").tempdir()?;
        let owner = if is_root() {
            let ids = postgres_user()?;
            chown(dir.path(), Some(ids.0), Some(ids.1))?;
            Some(ids)
        } else {
            None
        };
        let mut pg = TempPostgres {
            dir,
            bindir,
            port: 0,
            owner,
        };
        let data = pg.data_dir();
        run(pg.as_owner(Command::new(pg.bin("initdb")).args([
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])))?;
        let mut last = None;
        for _ in 0..3 {
            pg.port = free_port()?;
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("PostgreSQL did not start")))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start_server(&self) -> io::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let started = run(self.as_owner(Command::new(self.bin("pg_ctl")).args([
            "-D",
            &self.data_dir().to_string_lossy(),
            "-l",
            &log.to_string_lossy(),
            "-o",
            &options,
            "-w",
            "-t",
            &START_LIMIT.as_secs().to_string(),
            "start",
        ])));
        if let Err(e) = started {
            let log = fs::read_to_string(&log).unwrap_or_default();
            return Err(io::Error::other(format!("{e}\nserver log:\n{log}")));
        }
        let deadline = Instant::now() + START_LIMIT;
        while self.psql("postgres", "SELECT 1").is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other("PostgreSQL does not accept connections"));
            }
            sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn as_owner<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid).current_dir(self.dir.path());
        }
        command
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A PostgreSQL program of the server's version (`pg_dump`,
    /// `pg_restore`, `psql`...).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// The environment a client needs to reach this server as `postgres`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), "127.0.0.1".into()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
        ]
    }

    /// `name` (a program of [`TempPostgres::bin`]) with [`TempPostgres::env`] set.
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin(name));
        command.envs(self.env());
        command
    }

    /// Runs `sql` in database `db` with psql (`-X -A -t -q`, stop at the
    /// first error) and returns what it printed.
    ///
    /// # Errors
    /// psql failed; its stderr is in the error.
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        run(self
            .command("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
            ])
            .arg(sql))
    }

    /// Creates database `name`.
    ///
    /// # Errors
    /// As [`TempPostgres::psql`].
    pub fn create_db(&self, name: &str) -> io::Result<()> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(drop)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner(Command::new(self.bin("pg_ctl")).args([
                "-D",
                &self.data_dir().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ]))
            .output();
    }
}

/// The newest server installation: `FEDILAB_PG_BINDIR`, else the highest
/// `/usr/lib/postgresql/N/bin` (Debian's layout).
fn bindir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FEDILAB_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .max();
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL server under /usr/lib/postgresql/*/bin \
             (run scripts/install-test-deps.sh, or set FEDILAB_PG_BINDIR)",
        )
    })
}

fn is_root() -> bool {
    // The effective uid, the second field of `Uid:`.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> io::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&"postgres"))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "running as root and there is no `postgres` user to run PostgreSQL as \
                 (Debian's postgresql package creates it)",
            )
        })
}
