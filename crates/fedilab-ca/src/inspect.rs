//! [`CertInfo`]: what `fedilab ca show` tells about a certificate (subject,
//! SHA-256 fingerprint, names, constraints, validity), read from its PEM.
//! No I/O.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::issue::{pem_to_der, san_dns};

/// The facts about one certificate that a person checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject, such as `CN=fedilab lab CA for fediverse.local, O=fedilab`.
    pub subject: String,
    /// The issuer, in the same form.
    pub issuer: String,
    /// SHA-256 of the DER certificate, as uppercase hex pairs joined by `:`
    /// (the form browsers and `openssl x509 -fingerprint -sha256` show).
    pub sha256_fingerprint: String,
    /// `notBefore`.
    pub not_before: SystemTime,
    /// `notAfter`.
    pub not_after: SystemTime,
    /// The SAN DNS names.
    pub dns_names: Vec<String>,
    /// Basic constraints: whether it is a CA, and its path length limit.
    pub ca: Option<Option<u32>>,
    /// Its name constraints, if any.
    pub name_constraints: Option<ConstraintsInfo>,
}

/// A CA's name constraints, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintsInfo {
    /// Whether the extension is marked critical (clients that do not
    /// understand it must then reject the CA rather than ignore it).
    pub critical: bool,
    /// Permitted subtrees, such as `DNS:fediverse.local`.
    pub permitted: Vec<String>,
    /// Excluded subtrees, such as `IP:0.0.0.0/0`.
    pub excluded: Vec<String>,
}

/// Why a certificate cannot be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// No `CERTIFICATE` PEM block.
    #[error("not a PEM certificate")]
    Pem,
    /// The DER does not parse.
    #[error("the certificate does not parse")]
    Der,
}

impl CertInfo {
    /// Reads the first certificate of `pem`.
    ///
    /// # Errors
    /// [`InspectError`] when `pem` holds no parseable certificate.
    pub fn from_pem(pem: &str) -> Result<CertInfo, InspectError> {
        let der = pem_to_der(pem).ok_or(InspectError::Pem)?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|_| InspectError::Der)?;
        let mut fingerprint = String::new();
        for (i, b) in Sha256::digest(&der).iter().enumerate() {
            if i > 0 {
                fingerprint.push(':');
            }
            let _ = write!(fingerprint, "{b:02X}");
        }
        let name_constraints = cert.name_constraints().ok().flatten().map(|nc| {
            let describe = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
                subtrees
                    .iter()
                    .flatten()
                    .map(|s| general_name(&s.base))
                    .collect()
            };
            ConstraintsInfo {
                critical: nc.critical,
                permitted: describe(&nc.value.permitted_subtrees),
                excluded: describe(&nc.value.excluded_subtrees),
            }
        });
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sha256_fingerprint: fingerprint,
            not_before: cert.validity().not_before.to_datetime().into(),
            not_after: cert.validity().not_after.to_datetime().into(),
            dns_names: san_dns(&cert),
            ca: cert
                .basic_constraints()
                .ok()
                .flatten()
                .filter(|bc| bc.value.ca)
                .map(|bc| bc.value.path_len_constraint),
            name_constraints,
        })
    }

    /// Whole days from `now` until `notAfter`, negative once expired.
    pub fn days_left(&self, now: SystemTime) -> i64 {
        (OffsetDateTime::from(self.not_after) - OffsetDateTime::from(now)).whole_days()
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::DirectoryName(n) => format!("dirName:{n}"),
        GeneralName::IPAddress(bytes) => format!("IP:{}", ip_subnet(bytes)),
        other => format!("{other:?}"),
    }
}

/// An address-and-mask constraint as `ADDRESS/PREFIX`.
fn ip_subnet(bytes: &[u8]) -> String {
    let prefix = |mask: &[u8]| mask.iter().map(|b| b.count_ones()).sum::<u32>();
    let (addr, mask) = bytes.split_at(bytes.len() / 2);
    if let Ok(v4) = <[u8; 4]>::try_from(addr) {
        format!("{}/{}", Ipv4Addr::from(v4), prefix(mask))
    } else if let Ok(v6) = <[u8; 16]>::try_from(addr) {
        format!("{}/{}", Ipv6Addr::from(v6), prefix(mask))
    } else {
        format!("{bytes:02x?}")
    }
}

/// `t` as RFC 3339 in UTC, to the second, such as `2035-01-31T12:00:00Z`.
pub fn format_time(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| format!("{} seconds after 1970", t.unix_timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, HostName};

    #[test]
    fn shows_the_root_constraints_and_a_leaf_names() {
        let domain = "fediverse.local".parse().unwrap();
        let now = SystemTime::now();
        let ca = Ca::generate(&domain, "builder", now).unwrap();
        let info = CertInfo::from_pem(ca.cert_pem()).unwrap();
        assert!(info.subject.contains("fediverse.local"), "{}", info.subject);
        assert!(info.subject.contains("builder"), "{}", info.subject);
        assert_eq!(info.ca, Some(Some(0)));
        assert_eq!(info.sha256_fingerprint.len(), 32 * 3 - 1);
        assert_eq!(
            info.name_constraints,
            Some(ConstraintsInfo {
                critical: true,
                permitted: vec!["DNS:fediverse.local".into()],
                excluded: vec!["IP:0.0.0.0/0".into(), "IP:::/0".into()],
            })
        );
        assert!((3649..=3650).contains(&info.days_left(now)));

        let host = HostName::new("mastodon1.fediverse.local", &domain).unwrap();
        let leaf = ca.issue_leaf(&[host], now).unwrap();
        let info = CertInfo::from_pem(&leaf.cert_pem).unwrap();
        assert_eq!(info.dns_names, ["mastodon1.fediverse.local"]);
        assert_eq!(info.ca, None);
        assert_eq!(info.name_constraints, None);
        assert!((89..=90).contains(&info.days_left(now)));
    }

    #[test]
    fn formats_times_in_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 + 1);
        assert_eq!(format_time(t), "1970-01-02T00:00:01Z");
    }
}
