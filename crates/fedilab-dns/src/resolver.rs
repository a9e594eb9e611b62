//! The host side of lab names: the systemd-resolved drop-in that sends the
//! lab domain to `fedilab dns serve`. Pure: it says what to write and
//! where; the CLI writes it.
//!
//! Why a routing domain: names under `.local` belong to multicast DNS (RFC
//! 6762), and systemd-resolved sends them to mDNS unless a routing domain
//! (`~fediverse.local`) claims them for a DNS server.

use std::net::SocketAddr;
use std::path::PathBuf;

use fedilab_profile::Domain;

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
}
