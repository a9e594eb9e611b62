//! What several commands print: credentials, timings, the line about the
//! lab's `fedilab serve`, and live progress during `up`. Text is built by
//! pure functions (tested below); the `print_*` wrappers only write it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use clap::ValueEnum;
use fedilab_lab::Event;
use fedilab_orchestrator::readiness::InstanceProgress;
use fedilab_orchestrator::{Cluster, InstanceCredentials, PhaseTiming, WaveTiming};
use fedilab_profile::{InstanceName, LabName};
use fedilab_serve::daemon::ServeStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Output formats of credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum CredsFormat {
    /// Readable text.
    #[default]
    Text,
    /// JSON, for scripts.
    Json,
}

/// Credentials as text: per instance its URL, login, password and token.
pub fn credentials_text(creds: &[InstanceCredentials]) -> String {
    let mut out = String::new();
    for c in creds {
        let _ = writeln!(out, "{}  {}", c.instance, c.url);
        let _ = writeln!(out, "  login      {}", c.username);
        let _ = writeln!(out, "  password   {}", c.password);
        let _ = writeln!(out, "  API token  {}", c.api_token);
    }
    out
}

/// Prints credentials as text or JSON.
///
/// # Errors
/// When JSON cannot be written.
pub fn print_credentials(creds: &[InstanceCredentials], format: CredsFormat) -> anyhow::Result<()> {
    match format {
        CredsFormat::Json => println!("{}", serde_json::to_string_pretty(creds)?),
        CredsFormat::Text => print!("{}", credentials_text(creds)),
    }
    Ok(())
}

/// Phase timings as text: fedilab's own time is wall minus API time; the
/// apply phase's waves below it (their requests run together, so their API
/// time is summed and can exceed the wall time).
pub fn timings_text(phases: &[PhaseTiming], waves: &[WaveTiming], requests: u64) -> String {
    let mut out = String::from("timings (fedilab's own time = wall - api):\n");
    for t in phases {
        // With requests in flight together (apply's waves) the API time is
        // a sum that exceeds the wall time, and wall - api means nothing.
        let own = if t.api > t.wall {
            "      - ms".to_owned()
        } else {
            format!(
                "{:>7.1} ms",
                t.wall.saturating_sub(t.api).as_secs_f64() * 1000.0
            )
        };
        let _ = writeln!(
            out,
            "  {:<10} wall {:>8.1} ms  api {:>8.1} ms  own {own}  {:>4} requests",
            t.phase,
            t.wall.as_secs_f64() * 1000.0,
            t.api.as_secs_f64() * 1000.0,
            t.requests
        );
        if t.phase == "apply" {
            for w in waves {
                let _ = writeln!(
                    out,
                    "    wave {:<16} {:>3} objects  wall {:>8.1} ms  api (summed) {:>8.1} ms  {:>4} requests",
                    w.wave,
                    w.objects,
                    w.wall.as_secs_f64() * 1000.0,
                    w.api.as_secs_f64() * 1000.0,
                    w.requests
                );
            }
        }
    }
    let _ = writeln!(out, "  total requests: {requests}");
    out
}

/// Prints phase timings on stderr, so stdout stays parseable.
pub fn print_timings(timings: &fedilab_orchestrator::Timings, cluster: &Cluster) {
    eprint!(
        "{}",
        timings_text(
            &timings.phases(),
            &timings.waves(),
            cluster.counter.requests()
        )
    );
}

/// One line on the lab's `serve`: how it runs and where it listens, or
/// that it does not run and what to do.
pub fn serve_line(status: &ServeStatus, lab: &LabName) -> String {
    match status {
        ServeStatus::Running {
            pid,
            addresses,
            how,
            ..
        } => {
            let mut line = format!(
                "fedilab serve runs ({how}, pid {pid}): DNS {}",
                addresses.dns
            );
            if let Some(proxy) = addresses.proxy {
                let _ = write!(line, ", proxy {proxy}");
            }
            if let Some(ui) = addresses.ui {
                let _ = write!(line, ", inspector UI http://{ui}/");
            }
            line
        }
        ServeStatus::Starting { pid } => format!("fedilab serve is starting (pid {pid})"),
        ServeStatus::Stopped => format!(
            "fedilab serve is not running: host DNS and the inspector are down; \
             `fedilab up --lab {lab}` starts it, `fedilab serve --lab {lab}` runs it in a terminal"
        ),
        ServeStatus::Stale { pid } => format!(
            "fedilab serve is not running (it was pid {pid}): host DNS and the inspector are down; \
             `fedilab up --lab {lab}` starts it again"
        ),
    }
}

/// The note that a lab CA was just created, and how to trust it.
pub fn ca_created_text(domain: &fedilab_profile::Domain, dir: &std::path::Path) -> String {
    format!(
        "note: created a lab CA for {domain} in {}; run `fedilab ca trust --domain {domain}` \
         to trust it on this host",
        dir.display()
    )
}

/// One instance's progress in words.
pub fn progress_text(progress: &InstanceProgress) -> String {
    match progress {
        InstanceProgress::Waiting { phase } => phase.waiting_for().to_owned(),
        InstanceProgress::Ready => "ready".to_owned(),
        InstanceProgress::Failed { phase, reason } => {
            format!("{} failed: {reason}", phase.as_str())
        }
    }
}

/// `up`'s live output: events on stderr; during the wait one spinner per
/// instance on a terminal, plain lines otherwise.
pub struct UpProgress {
    lab: LabName,
    server: String,
    multi: Option<MultiProgress>,
    bars: Mutex<BTreeMap<InstanceName, ProgressBar>>,
}

impl UpProgress {
    /// Spinners when stdout is a terminal; `server` is the API server's
    /// address.
    pub fn new(lab: LabName, server: String) -> UpProgress {
        UpProgress {
            lab,
            server,
            multi: std::io::stdout().is_terminal().then(MultiProgress::new),
            bars: Mutex::default(),
        }
    }

    fn add_bars(&self, instances: &[InstanceName]) {
        let (Some(multi), Ok(mut bars)) = (&self.multi, self.bars.lock()) else {
            return;
        };
        let style = ProgressStyle::with_template("{spinner} {prefix:<14} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        for instance in instances {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(instance.to_string());
            bar.set_message("applied");
            bar.enable_steady_tick(Duration::from_millis(120));
            bars.insert(instance.clone(), bar);
        }
    }

    /// Stops the spinners (the wait ended, well or not).
    pub fn finish(&self) {
        if let Ok(bars) = self.bars.lock() {
            for bar in bars.values().filter(|b| !b.is_finished()) {
                bar.abandon();
            }
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// What `up` says about an event, on stderr; `None` for events shown
/// otherwise (the wait's spinners).
pub fn event_text(event: &Event<'_>, lab: &LabName, server: &str) -> Option<String> {
    match event {
        Event::CaCreated { domain, dir } => Some(ca_created_text(domain, dir)),
        Event::Warning(w) => Some(format!("warning: {w}")),
        Event::Applied { report } => Some(format!(
            "applied {} objects to {server} (lab {lab}, namespace {}){}",
            report.objects.len(),
            fedilab_profile::names::namespace(lab),
            if report.coredns_restarted {
                "; restarted CoreDNS"
            } else {
                ""
            }
        )),
        Event::Serve(status) => Some(serve_line(status, lab)),
        Event::Waiting(_) => None,
    }
}

impl fedilab_orchestrator::Progress for UpProgress {
    fn update(&self, instance: &InstanceName, progress: &InstanceProgress) {
        let text = progress_text(progress);
        if self.multi.is_none() {
            println!("{instance}: {text}");
            return;
        }
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(instance)
        {
            match progress {
                InstanceProgress::Ready => bar.finish_with_message(text),
                _ => bar.set_message(text),
            }
        }
    }
}

impl fedilab_lab::Progress for UpProgress {
    fn event(&self, event: &Event<'_>) {
        if let Event::Waiting(instances) = event {
            self.add_bars(instances);
        }
        if let Some(text) = event_text(event, &self.lab, &self.server) {
            eprintln!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_text_lists_every_way_in() {
        let text = credentials_text(&[InstanceCredentials {
            instance: "mastodon1".to_owned(),
            url: "https://mastodon1.fediverse.local/".to_owned(),
            username: "labadmin".to_owned(),
            password: "pw".to_owned(),
            api_token: "tok".to_owned(),
        }]);
        assert_eq!(
            text,
            "mastodon1  https://mastodon1.fediverse.local/\n  login      labadmin\n  \
             password   pw\n  API token  tok\n"
        );
    }

    #[test]
    fn timings_text_shows_own_time_per_phase() {
        let text = timings_text(
            &[PhaseTiming {
                phase: "apply".to_owned(),
                wall: Duration::from_millis(30),
                api: Duration::from_millis(20),
                requests: 4,
            }],
            &[WaveTiming {
                wave: "objects".to_owned(),
                objects: 3,
                wall: Duration::from_millis(10),
                requests: 3,
                api: Duration::from_millis(25),
            }],
            9,
        );
        let concurrent = timings_text(
            &[PhaseTiming {
                phase: "apply".to_owned(),
                wall: Duration::from_millis(10),
                api: Duration::from_millis(25),
                requests: 3,
            }],
            &[],
            3,
        );
        assert!(concurrent.contains("own       - ms"), "{concurrent}");
        assert!(
            text.contains(
                "\n    wave objects            3 objects  wall     10.0 ms  api (summed)     25.0 ms     3 requests\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "apply      wall     30.0 ms  api     20.0 ms  own    10.0 ms     4 requests"
            ),
            "{text}"
        );
        assert!(text.ends_with("total requests: 9\n"), "{text}");
    }

    #[test]
    fn a_stopped_serve_says_how_to_start_it() {
        let lab: LabName = "exp".parse().expect("lab");
        let line = serve_line(&ServeStatus::Stopped, &lab);
        assert!(line.contains("`fedilab up --lab exp` starts it"), "{line}");
        assert!(!line.contains("  "), "{line}");
    }
}
