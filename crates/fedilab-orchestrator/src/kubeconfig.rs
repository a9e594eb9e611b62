//! Which kubeconfig file(s) to use, decided like kubectl (plus k3s's own
//! file as the last resort). Pure: the caller passes the environment and a
//! way to test for files, so every rule has a test.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Where k3s writes its kubeconfig.
pub const K3S_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";

/// The chosen kubeconfig and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigSource {
    /// `--kubeconfig FILE`, used even if it does not exist (reading it then
    /// says so).
    Flag(PathBuf),
    /// The existing files of `KUBECONFIG` (colon-separated, merged in order,
    /// as kubectl does).
    Env(Vec<PathBuf>),
    /// `~/.kube/config`.
    Home(PathBuf),
    /// k3s's `/etc/rancher/k3s/k3s.yaml`.
    K3s(PathBuf),
}

impl KubeconfigSource {
    /// The files to read and merge, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            KubeconfigSource::Flag(p) | KubeconfigSource::Home(p) | KubeconfigSource::K3s(p) => {
                vec![p.clone()]
            }
            KubeconfigSource::Env(paths) => paths.clone(),
        }
    }
}

impl std::fmt::Display for KubeconfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        };
        match self {
            KubeconfigSource::Flag(p) => write!(f, "{} (--kubeconfig)", p.display()),
            KubeconfigSource::Env(p) => write!(f, "{} (KUBECONFIG)", join(p)),
            KubeconfigSource::Home(p) => write!(f, "{}", p.display()),
            KubeconfigSource::K3s(p) => write!(f, "{} (k3s)", p.display()),
        }
    }
}

/// Picks the kubeconfig: `--kubeconfig`, else the existing files listed in
/// `KUBECONFIG`, else `~/.kube/config`, else k3s's file. `None` when none
/// of these exists; the `Err` lists what was tried.
///
/// # Errors
/// The places looked at, in order, when no kubeconfig exists.
pub fn choose_kubeconfig(
    flag: Option<&Path>,
    kubeconfig_env: Option<&OsStr>,
    home: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> Result<KubeconfigSource, Vec<String>> {
    if let Some(path) = flag {
        return Ok(KubeconfigSource::Flag(path.to_owned()));
    }
    let mut tried = Vec::new();
    if let Some(env) = kubeconfig_env.filter(|e| !e.is_empty()) {
        let listed: Vec<PathBuf> = std::env::split_paths(env)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let present: Vec<PathBuf> = listed.iter().filter(|p| exists(p)).cloned().collect();
        if !present.is_empty() {
            return Ok(KubeconfigSource::Env(present));
        }
        tried.extend(
            listed
                .iter()
                .map(|p| format!("{} (KUBECONFIG)", p.display())),
        );
    }
    if let Some(home) = home {
        let path = home.join(".kube").join("config");
        if exists(&path) {
            return Ok(KubeconfigSource::Home(path));
        }
        tried.push(path.display().to_string());
    }
    let k3s = PathBuf::from(K3S_KUBECONFIG);
    if exists(&k3s) {
        return Ok(KubeconfigSource::K3s(k3s));
    }
    tried.push(format!("{K3S_KUBECONFIG} (k3s)"));
    Err(tried)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists_in(files: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p| files.iter().any(|f| Path::new(f) == p)
    }

    #[test]
    fn flag_wins_even_when_missing() {
        let got = choose_kubeconfig(
            Some(Path::new("/x/kc")),
            Some(OsStr::new("/env/kc")),
            Some(Path::new("/home/u")),
            exists_in(&["/env/kc", "/home/u/.kube/config", K3S_KUBECONFIG]),
        );
        assert_eq!(got, Ok(KubeconfigSource::Flag("/x/kc".into())));
    }

    #[test]
    fn env_keeps_existing_files_in_order() {
        let got = choose_kubeconfig(
            None,
            Some(OsStr::new("/a:/missing::/b")),
            Some(Path::new("/home/u")),
            exists_in(&["/a", "/b", "/home/u/.kube/config"]),
        );
        assert_eq!(
            got,
            Ok(KubeconfigSource::Env(vec!["/a".into(), "/b".into()]))
        );
    }

    #[test]
    fn env_without_existing_files_falls_through_to_home() {
        let got = choose_kubeconfig(
            None,
            Some(OsStr::new("/missing")),
            Some(Path::new("/home/u")),
            exists_in(&["/home/u/.kube/config"]),
        );
        assert_eq!(
            got,
            Ok(KubeconfigSource::Home("/home/u/.kube/config".into()))
        );
    }

    #[test]
    fn k3s_file_is_the_last_resort() {
        let got = choose_kubeconfig(
            None,
            Some(OsStr::new("")),
            Some(Path::new("/home/u")),
            exists_in(&[K3S_KUBECONFIG]),
        );
        assert_eq!(got, Ok(KubeconfigSource::K3s(K3S_KUBECONFIG.into())));
    }

    #[test]
    fn nothing_found_lists_every_place_tried() {
        let got = choose_kubeconfig(
            None,
            Some(OsStr::new("/e")),
            Some(Path::new("/h")),
            exists_in(&[]),
        );
        assert_eq!(
            got,
            Err(vec![
                "/e (KUBECONFIG)".to_owned(),
                "/h/.kube/config".to_owned(),
                format!("{K3S_KUBECONFIG} (k3s)"),
            ])
        );
    }
}
