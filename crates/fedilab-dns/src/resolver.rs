//! The host side of lab names: the systemd-resolved drop-in that sends the
//! lab domain to `fedilab dns serve`, and the plans ([`install_steps`],
//! [`uninstall_steps`]) that write or remove it and restart resolved. Pure:
//! it says what to run; `fedilab_steps::run` runs it.
//!
//! Why a routing domain: names under `.local` belong to multicast DNS (RFC
//! 6762), and systemd-resolved sends them to mDNS unless a routing domain
//! (`~fediverse.local`) claims them for a DNS server.

use std::net::SocketAddr;
use std::path::PathBuf;

use fedilab_profile::Domain;
use fedilab_steps::Step;

/// Where systemd-resolved reads drop-ins.
pub const DROP_IN_DIR: &str = "/etc/systemd/resolved.conf.d";

/// The drop-in file for `domain`.
pub fn drop_in_path(domain: &Domain) -> PathBuf {
    PathBuf::from(DROP_IN_DIR).join(format!("fedilab-{domain}.conf"))
}

/// The drop-in's text: the lab domain, as a routing domain, to `listen`.
pub fn drop_in_text(domain: &Domain, listen: SocketAddr) -> String {
    format!(
        "# Written by `fedilab dns install-resolver`; `fedilab dns uninstall-resolver` \
         removes it.\n\
         # Queries for {domain} and names under it go to `fedilab dns serve` at {listen}.\n\
         # ~ makes it a routing domain: no search suffix, and .local names reach DNS\n\
         # instead of multicast DNS (RFC 6762).\n\
         [Resolve]\n\
         DNS={listen}\n\
         Domains=~{domain}\n"
    )
}

const DROP_IN_PURPOSE: &str = "systemd-resolved drop-in";

/// The restart that makes resolved read its drop-ins again.
fn restart(root: bool) -> Step {
    Step::new(
        "systemd-resolved",
        "systemctl",
        vec!["restart".into(), "systemd-resolved".into()],
    )
    .as_root(root)
}

/// The commands that send `domain` to `listen`: write the drop-in (through
/// `sudo` unless `root`), restart systemd-resolved.
pub fn install_steps(domain: &Domain, listen: SocketAddr, root: bool) -> Vec<Step> {
    let path = drop_in_path(domain).display().to_string();
    vec![
        Step::new(
            DROP_IN_PURPOSE,
            "mkdir",
            vec!["-p".into(), DROP_IN_DIR.into()],
        )
        .as_root(root),
        Step::new(DROP_IN_PURPOSE, "tee", vec![path])
            .as_root(root)
            .with_stdin(drop_in_text(domain, listen)),
        restart(root),
    ]
}

/// The commands that undo [`install_steps`]: remove the drop-in, restart
/// systemd-resolved.
pub fn uninstall_steps(domain: &Domain, root: bool) -> Vec<Step> {
    let path = drop_in_path(domain).display().to_string();
    vec![
        Step::new(DROP_IN_PURPOSE, "rm", vec!["-f".into(), path]).as_root(root),
        restart(root),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_in_routes_only_the_lab_domain_to_the_listen_address() {
        let domain: Domain = "fediverse.local".parse().expect("domain");
        let listen: SocketAddr = "127.0.0.1:5353".parse().expect("addr");
        assert_eq!(
            drop_in_path(&domain),
            PathBuf::from("/etc/systemd/resolved.conf.d/fedilab-fediverse.local.conf")
        );
        let text = drop_in_text(&domain, listen);
        assert!(text.contains("\n[Resolve]\nDNS=127.0.0.1:5353\nDomains=~fediverse.local\n"));
    }

    #[test]
    fn the_plans_write_or_remove_the_drop_in_and_restart_resolved() {
        let domain: Domain = "fediverse.test".parse().expect("domain");
        let listen: SocketAddr = "127.0.0.1:5300".parse().expect("addr");
        let lines = |steps: Vec<Step>| steps.iter().map(ToString::to_string).collect::<Vec<_>>();
        let file = "/etc/systemd/resolved.conf.d/fedilab-fediverse.test.conf";
        assert_eq!(
            lines(install_steps(&domain, listen, false)),
            [
                "sudo mkdir -p /etc/systemd/resolved.conf.d".to_owned(),
                format!(
                    "sudo tee {file} >/dev/null <<'EOF'\n{}EOF",
                    drop_in_text(&domain, listen)
                ),
                "sudo systemctl restart systemd-resolved".to_owned(),
            ]
        );
        assert_eq!(
            lines(uninstall_steps(&domain, true)),
            [
                format!("rm -f {file}"),
                "systemctl restart systemd-resolved".to_owned(),
            ]
        );
    }
}
