//! Changes to this host (trust stores, the resolver) as plans of [`Step`]s:
//! commands with their arguments and input, printable as a shell script for
//! `--dry-run`; and [`run`], the one runner that executes a plan.
//!
//! The plans are built elsewhere by pure functions (`fedilab_ca::trust`,
//! `fedilab_dns::resolver`); [`Step`] and its `Display` are pure. Only
//! [`run`] does I/O: it spawns the commands and writes what it does to the
//! log it is given. Nothing here decides what to run.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

use std::fmt;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

/// One command of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it is for, such as `system store (Debian/Ubuntu)`.
    pub purpose: String,
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Text fed to its standard input (its output is then discarded).
    pub stdin: Option<String>,
    /// When true, a failure is reported and the plan goes on (removing a
    /// certificate that is not there, for instance).
    pub may_fail: bool,
}

impl Step {
    /// `program args...` for `purpose`, no input, must succeed.
    pub fn new(purpose: &str, program: &str, args: Vec<String>) -> Step {
        Step {
            purpose: purpose.to_owned(),
            program: program.to_owned(),
            args,
            stdin: None,
            may_fail: false,
        }
    }

    /// The same step through `sudo` unless `root`.
    #[must_use]
    pub fn as_root(mut self, root: bool) -> Step {
        if !root {
            self.args
                .insert(0, std::mem::replace(&mut self.program, "sudo".to_owned()));
        }
        self
    }

    /// The same step fed `text` on its standard input.
    #[must_use]
    pub fn with_stdin(mut self, text: String) -> Step {
        self.stdin = Some(text);
        self
    }

    /// The same step, allowed to fail.
    #[must_use]
    pub fn allowed_to_fail(mut self) -> Step {
        self.may_fail = true;
        self
    }

    /// The command line as a shell would take it, without its input.
    pub fn command_line(&self) -> String {
        let mut line = shell_quote(&self.program);
        for arg in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        line
    }
}

impl fmt::Display for Step {
    /// The command as a shell would take it, with a here-document for its
    /// input.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command_line())?;
        if let Some(text) = &self.stdin {
            write!(f, " >/dev/null <<'EOF'\n{text}EOF")?;
        }
        Ok(())
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=,@%+-".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A step that had to succeed did not.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The command could not be started or fed its input.
    #[error("cannot run `{command}`{}", purpose_suffix(.purpose))]
    Spawn {
        /// The command line.
        command: String,
        /// Its purpose.
        purpose: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed ({status}){}", purpose_suffix(.purpose))]
    Failed {
        /// The command line.
        command: String,
        /// Its purpose.
        purpose: String,
        /// How it ended.
        status: ExitStatus,
    },
}

fn purpose_suffix(purpose: &str) -> String {
    if purpose.is_empty() {
        String::new()
    } else {
        format!(" ({purpose})")
    }
}

/// Runs `steps` in order, writing `+ COMMAND` to `log` before each and a
/// warning for each allowed failure; stops at the first step that had to
/// succeed and did not.
///
/// # Errors
/// [`StepError`] for that step.
pub fn run(steps: &[Step], log: &mut dyn Write) -> Result<(), StepError> {
    for step in steps {
        // The log is for the user; failing to write it must not stop a plan
        // half-way.
        let _ = writeln!(log, "+ {}", step.command_line());
        match run_one(step) {
            Ok(()) => {}
            Err(e) if step.may_fail => {
                let _ = writeln!(log, "warning: {}; going on", one_line(&e));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn one_line(e: &StepError) -> String {
    match e {
        StepError::Spawn {
            command, source, ..
        } => format!("cannot run `{command}`: {source}"),
        StepError::Failed {
            command, status, ..
        } => format!("`{command}` failed ({status})"),
    }
}

fn run_one(step: &Step) -> Result<(), StepError> {
    let spawn_error = |source| StepError::Spawn {
        command: step.command_line(),
        purpose: step.purpose.clone(),
        source,
    };
    let mut command = Command::new(&step.program);
    command.args(&step.args);
    if step.stdin.is_some() {
        command.stdin(Stdio::piped()).stdout(Stdio::null());
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    if let (Some(text), Some(mut stdin)) = (&step.stdin, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    let status = child.wait().map_err(spawn_error)?;
    if status.success() {
        Ok(())
    } else {
        Err(StepError::Failed {
            command: step.command_line(),
            purpose: step.purpose.clone(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(program: &str, args: &[&str]) -> Step {
        Step::new(
            "test",
            program,
            args.iter().map(|a| (*a).to_owned()).collect(),
        )
    }

    #[test]
    fn a_step_prints_as_a_shell_command_with_its_input() {
        let s = step("tee", &["/x"])
            .as_root(false)
            .with_stdin("a\n".to_owned());
        assert_eq!(s.to_string(), "sudo tee /x >/dev/null <<'EOF'\na\nEOF");
        assert_eq!(s.command_line(), "sudo tee /x");
        assert_eq!(
            step("rm", &["-f", "/x"]).as_root(true).to_string(),
            "rm -f /x"
        );
    }

    #[test]
    fn arguments_are_quoted_only_when_a_shell_needs_it() {
        let s = step("certutil", &["-n", "lab CA", "-t", "C,,", "it's", ""]);
        assert_eq!(s.to_string(), r"certutil -n 'lab CA' -t C,, 'it'\''s' ''");
    }

    #[test]
    fn the_runner_feeds_input_logs_and_stops_at_a_failure() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("out");
        let path = file.display().to_string();
        let plan = [
            step("sh", &["-c", "cat > \"$0\"", &path]).with_stdin("hello\n".to_owned()),
            step("false", &[]).allowed_to_fail(),
            step("false", &[]),
            step("touch", &[&format!("{path}.never")]),
        ];
        let mut log = Vec::new();
        let err = run(&plan, &mut log).expect_err("the third step fails");
        assert!(matches!(err, StepError::Failed { .. }), "{err}");
        assert_eq!(err.to_string(), "`false` failed (exit status: 1) (test)");
        assert_eq!(std::fs::read_to_string(&file).expect("written"), "hello\n");
        assert!(
            !dir.path().join("out.never").exists(),
            "ran past the failure"
        );
        let log = String::from_utf8(log).expect("utf-8");
        assert_eq!(
            log,
            format!(
                "+ sh -c 'cat > \"$0\"' {path}\n+ false\n\
                 warning: `false` failed (exit status: 1); going on\n+ false\n"
            )
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(&[step("/nonexistent/fedilab-x", &[])], &mut Vec::new())
            .expect_err("no such program");
        assert!(matches!(err, StepError::Spawn { .. }), "{err}");
    }
}
