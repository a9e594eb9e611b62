//! A throwaway Redis: `redis-server` on a free loopback port, without
//! persistence, its working directory temporary; killed on drop.

use std::io;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, run};

/// How long the server may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running Redis of its own; see the module documentation.
#[derive(Debug)]
pub struct TempRedis {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl TempRedis {
    /// Starts a server (16 logical databases, as Redis's default).
    ///
    /// # Errors
    /// `redis-server` is missing (`scripts/install-test-deps.sh` installs
    /// it) or did not answer in time.
    pub fn start() -> io::Result<TempRedis> {
        let dir = tempfile::Builder::new()
            .prefix("fedilab-redis-")
            .tempdir()?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            match start_on(&dir, port) {
                Ok(child) => {
                    return Ok(TempRedis {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis-cli` aimed at this server.
    pub fn command(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        command
    }

    /// Runs one command with `redis-cli` and returns its output. Note that
    /// redis-cli exits 0 on a Redis error reply: check the text.
    ///
    /// # Errors
    /// redis-cli could not run or failed to connect.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        run(self.command().args(args))
    }
}

/// Starts redis-server on `port` and waits until it answers PING.
fn start_on(dir: &TempDir, port: u16) -> io::Result<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run redis-server: {e} (scripts/install-test-deps.sh installs it)"),
            )
        })?;
    let deadline = Instant::now() + START_LIMIT;
    loop {
        let ping = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
            .output();
        if ping.is_ok_and(|o| o.stdout.starts_with(b"PONG")) {
            return Ok(child);
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "redis-server on port {port} did not answer PING"
            )));
        }
        sleep(Duration::from_millis(20));
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
