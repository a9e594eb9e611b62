//! Shared by the CLI integration tests: each test gets a temporary data
//! directory and a `fedilab` command that uses it (ripgrep's `rgtest!` idea).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A temporary data directory and commands that use it.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        TestDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `fedilab ARGS`, with FEDILAB_DATA_DIR in this test's directory and the
    /// repository root as working directory.
    pub fn fedilab(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedilab"));
        cmd.args(args)
            .current_dir(repo_root())
            .env("FEDILAB_DATA_DIR", self.dir.path().join("data"))
            .env_remove("FEDILAB_LOG");
        cmd
    }

    /// Runs `fedilab ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.fedilab(args).output().expect("fedilab runs")
    }

    /// Writes a file in the test directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the test file's directory");
        }
        std::fs::write(&path, text).expect("write test file");
        path
    }
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A kubeconfig pointing at a loopback port nobody listens on.
pub fn dead_kubeconfig(t: &TestDir) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\n\
         current-context: c\n"
    );
    t.write("kubeconfig", &text).display().to_string()
}
