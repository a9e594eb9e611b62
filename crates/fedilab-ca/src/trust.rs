//! Installing the lab root into this host's trust stores, as a list of
//! [`Step`]s (commands) that the CLI prints (`--dry-run`) or runs.
//!
//! [`Probe::detect`] looks at the host (which tools exist, whether we are
//! root, which NSS databases the user has); [`trust_steps`] and
//! [`untrust_steps`] are pure functions of a [`Probe`], so every platform's
//! plan is tested here without touching the real store. Nothing here runs a
//! command: `fedilab_steps::run` does.
//!
//! - Debian/Ubuntu: copy to `/usr/local/share/ca-certificates/*.crt`, then
//!   `update-ca-certificates` (`--fresh` when removing).
//! - Fedora/RHEL: copy to `/etc/pki/ca-trust/source/anchors/`, then
//!   `update-ca-trust extract`.
//! - NSS (Chromium, Firefox): `certutil -A` into each database found, when
//!   `certutil` exists.

use std::path::{Path, PathBuf};

use fedilab_profile::Domain;

/// Debian's directory for local CA certificates (`*.crt`).
pub const DEBIAN_ANCHORS: &str = "/usr/local/share/ca-certificates";
/// Fedora's directory for local trust anchors.
pub const FEDORA_ANCHORS: &str = "/etc/pki/ca-trust/source/anchors";

/// The system trust store family of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemStore {
    /// `update-ca-certificates` (Debian, Ubuntu, Alpine, openSUSE).
    Debian,
    /// `update-ca-trust` (Fedora, RHEL, CentOS, Arch).
    Fedora,
}

/// What [`Probe::detect`] found out about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The system store, if a supported one exists.
    pub system: Option<SystemStore>,
    /// Whether we run as root.
    pub root: bool,
    /// Whether `sudo` exists (used for system steps when not root).
    pub sudo: bool,
    /// Whether NSS's `certutil` exists.
    pub certutil: bool,
    /// The user's NSS databases (directories holding `cert9.db`).
    pub nss_dbs: Vec<PathBuf>,
}

/// One command of a plan (shared with the resolver plan; run by
/// `fedilab_steps::run`).
pub use fedilab_steps::Step;

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Neither a supported system store nor NSS.
    #[error(
        "found neither update-ca-certificates (Debian/Ubuntu: apt-get install ca-certificates) \
         nor update-ca-trust (Fedora/RHEL: dnf install ca-certificates) nor NSS's certutil; \
         add {} to your trust store by hand",
        ca_pem.display()
    )]
    NoStore {
        /// The certificate to trust.
        ca_pem: PathBuf,
    },
    /// The system store needs root, and there is no sudo.
    #[error("changing the system trust store needs root and sudo is missing: run this as root")]
    NeedsRoot,
}

/// The file name the root gets in the system store.
pub fn system_file(store: SystemStore, domain: &Domain) -> PathBuf {
    match store {
        SystemStore::Debian => Path::new(DEBIAN_ANCHORS).join(format!("fedilab-{domain}.crt")),
        SystemStore::Fedora => Path::new(FEDORA_ANCHORS).join(format!("fedilab-{domain}.pem")),
    }
}

/// The nickname of the root in NSS databases.
pub fn nss_nickname(domain: &Domain) -> String {
    format!("fedilab lab CA for {domain}")
}

fn system_purpose(store: SystemStore) -> &'static str {
    match store {
        SystemStore::Debian => "system store (Debian/Ubuntu)",
        SystemStore::Fedora => "system store (Fedora/RHEL)",
    }
}

/// The command that rebuilds the system bundle. Removing needs Debian's
/// `--fresh`: without it the links to the removed file stay behind in
/// /etc/ssl/certs, and OpenSSL's `-CApath` lookups hit them.
fn refresh(store: SystemStore, removing: bool) -> (&'static str, Vec<String>) {
    match store {
        SystemStore::Debian if removing => ("update-ca-certificates", vec!["--fresh".into()]),
        SystemStore::Debian => ("update-ca-certificates", vec![]),
        SystemStore::Fedora => ("update-ca-trust", vec!["extract".into()]),
    }
}

fn privileged(
    probe: &Probe,
    purpose: &str,
    program: &str,
    args: Vec<String>,
) -> Result<Step, TrustError> {
    if !probe.root && !probe.sudo {
        return Err(TrustError::NeedsRoot);
    }
    Ok(Step::new(purpose, program, args).as_root(probe.root))
}

/// The commands that make this host trust `ca_pem`, the root of `domain`.
///
/// # Errors
/// [`TrustError`] when the host has no store we know, or the system store
/// needs root and sudo is missing.
pub fn trust_steps(probe: &Probe, domain: &Domain, ca_pem: &Path) -> Result<Vec<Step>, TrustError> {
    let mut steps = Vec::new();
    if let Some(store) = probe.system {
        let purpose = system_purpose(store);
        let target = system_file(store, domain);
        steps.push(privileged(
            probe,
            purpose,
            "install",
            vec![
                "-m".into(),
                "0644".into(),
                ca_pem.display().to_string(),
                target.display().to_string(),
            ],
        )?);
        let (program, args) = refresh(store, false);
        steps.push(privileged(probe, purpose, program, args)?);
    }
    if probe.certutil {
        for db in &probe.nss_dbs {
            steps.push(Step::new(
                &format!("NSS database {}", db.display()),
                "certutil",
                vec![
                    "-A".into(),
                    "-d".into(),
                    format!("sql:{}", db.display()),
                    "-t".into(),
                    "C,,".into(),
                    "-n".into(),
                    nss_nickname(domain),
                    "-i".into(),
                    ca_pem.display().to_string(),
                ],
            ));
        }
    }
    if steps.is_empty() {
        return Err(TrustError::NoStore {
            ca_pem: ca_pem.to_path_buf(),
        });
    }
    Ok(steps)
}

/// The commands that undo [`trust_steps`]. Removing what is not there is
/// harmless.
///
/// # Errors
/// As [`trust_steps`].
pub fn untrust_steps(
    probe: &Probe,
    domain: &Domain,
    ca_pem: &Path,
) -> Result<Vec<Step>, TrustError> {
    let mut steps = Vec::new();
    if let Some(store) = probe.system {
        let purpose = system_purpose(store);
        let target = system_file(store, domain);
        steps.push(privileged(
            probe,
            purpose,
            "rm",
            vec!["-f".into(), target.display().to_string()],
        )?);
        let (program, args) = refresh(store, true);
        steps.push(privileged(probe, purpose, program, args)?);
    }
    if probe.certutil {
        for db in &probe.nss_dbs {
            steps.push(
                Step::new(
                    &format!("NSS database {}", db.display()),
                    "certutil",
                    vec![
                        "-D".into(),
                        "-d".into(),
                        format!("sql:{}", db.display()),
                        "-n".into(),
                        nss_nickname(domain),
                    ],
                )
                .allowed_to_fail(),
            );
        }
    }
    if steps.is_empty() {
        return Err(TrustError::NoStore {
            ca_pem: ca_pem.to_path_buf(),
        });
    }
    Ok(steps)
}

impl Probe {
    /// Looks at this host: `PATH` (plus the sbin directories a user's `PATH`
    /// may lack) for the tools, `/proc/self` for our user id, and `HOME` for
    /// NSS databases (`~/.pki/nssdb`, Firefox profiles, snap's).
    pub fn detect() -> Probe {
        let system = if find_program("update-ca-certificates").is_some() {
            Some(SystemStore::Debian)
        } else if find_program("update-ca-trust").is_some() {
            Some(SystemStore::Fedora)
        } else {
            None
        };
        let root = running_as_root();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Probe {
            system,
            root,
            sudo: find_program("sudo").is_some(),
            certutil: find_program("certutil").is_some(),
            nss_dbs: home.as_deref().map(nss_dbs).unwrap_or_default(),
        }
    }
}

/// Whether this process runs as root (otherwise privileged steps use sudo).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` in `PATH`, `/usr/local/sbin`, `/usr/sbin` or `/sbin`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn nss_dbs(home: &Path) -> Vec<PathBuf> {
    let mut dbs = Vec::new();
    for dir in [".pki/nssdb", "snap/chromium/current/.pki/nssdb"] {
        let dir = home.join(dir);
        if dir.join("cert9.db").is_file() {
            dbs.push(dir);
        }
    }
    for profiles in [".mozilla/firefox", "snap/firefox/common/.mozilla/firefox"] {
        let Ok(entries) = std::fs::read_dir(home.join(profiles)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("cert9.db").is_file())
            .collect();
        found.sort();
        dbs.extend(found);
    }
    dbs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        "fediverse.local".parse().unwrap()
    }

    fn probe(system: Option<SystemStore>, root: bool) -> Probe {
        Probe {
            system,
            root,
            sudo: true,
            certutil: false,
            nss_dbs: vec![],
        }
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn debian_as_root() {
        let steps = trust_steps(
            &probe(Some(SystemStore::Debian), true),
            &domain(),
            Path::new("/d/ca.pem"),
        )
        .unwrap();
        assert_eq!(
            lines(&steps),
            [
                "install -m 0644 /d/ca.pem /usr/local/share/ca-certificates/fedilab-fediverse.local.crt",
                "update-ca-certificates",
            ]
        );
        let steps = untrust_steps(
            &probe(Some(SystemStore::Debian), true),
            &domain(),
            Path::new("/d/ca.pem"),
        )
        .unwrap();
        assert_eq!(
            lines(&steps),
            [
                "rm -f /usr/local/share/ca-certificates/fedilab-fediverse.local.crt",
                "update-ca-certificates --fresh",
            ]
        );
    }

    #[test]
    fn fedora_with_sudo_and_nss() {
        let mut p = probe(Some(SystemStore::Fedora), false);
        p.certutil = true;
        p.nss_dbs = vec![PathBuf::from("/home/u/.pki/nssdb")];
        let steps = trust_steps(&p, &domain(), Path::new("/d/ca.pem")).unwrap();
        assert_eq!(
            lines(&steps),
            [
                "sudo install -m 0644 /d/ca.pem /etc/pki/ca-trust/source/anchors/fedilab-fediverse.local.pem",
                "sudo update-ca-trust extract",
                "certutil -A -d sql:/home/u/.pki/nssdb -t C,, -n 'fedilab lab CA for fediverse.local' -i /d/ca.pem",
            ]
        );
        let steps = untrust_steps(&p, &domain(), Path::new("/d/ca.pem")).unwrap();
        assert!(steps[2].may_fail);
        assert_eq!(
            steps[2].to_string(),
            "certutil -D -d sql:/home/u/.pki/nssdb -n 'fedilab lab CA for fediverse.local'"
        );
    }

    #[test]
    fn no_store_or_no_root_is_an_error() {
        assert!(matches!(
            trust_steps(&probe(None, true), &domain(), Path::new("/d/ca.pem")),
            Err(TrustError::NoStore { .. })
        ));
        let mut p = probe(Some(SystemStore::Debian), false);
        p.sudo = false;
        assert_eq!(
            trust_steps(&p, &domain(), Path::new("/d/ca.pem")),
            Err(TrustError::NeedsRoot)
        );
    }

    #[test]
    fn finds_nss_databases_under_home() {
        let home = tempfile::tempdir().unwrap();
        let pki = home.path().join(".pki/nssdb");
        let ff = home.path().join(".mozilla/firefox/abc.default");
        let empty = home.path().join(".mozilla/firefox/empty");
        for dir in [&pki, &ff, &empty] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(pki.join("cert9.db"), b"").unwrap();
        std::fs::write(ff.join("cert9.db"), b"").unwrap();
        assert_eq!(nss_dbs(home.path()), [pki, ff]);
    }
}
