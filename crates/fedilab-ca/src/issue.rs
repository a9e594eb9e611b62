//! Issuance, with no I/O: the lab root ([`Ca::generate`]), its leaves
//! ([`Ca::issue_leaf`]) and the rule that decides whether a stored leaf may be
//! reused ([`Ca::check_leaf`]).
//!
//! Every function takes `now` so tests can move time. Private keys live in
//! [`KeyPem`], whose `Debug` never shows them.

use std::collections::BTreeSet;
use std::fmt;
use std::time::SystemTime;

use fedilab_profile::Domain;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::host::HostName;

/// How long the root is valid: 10 years.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a leaf is valid: 90 days.
pub const LEAF_VALIDITY: Duration = Duration::days(90);
/// A stored leaf is reused while it stays valid for longer than this.
pub const RENEW_BEFORE: Duration = Duration::days(30);
/// How far `notBefore` lies before `now`, for clocks a little behind ours.
const BACKDATE: Duration = Duration::hours(1);

/// A private key in PKCS#8 PEM. `Debug` shows `[redacted]`; there is no
/// `Display`, so it cannot slip into a message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(String);

impl KeyPem {
    /// Wraps PEM text read from a key file.
    pub fn new(pem: String) -> Self {
        KeyPem(pem)
    }

    /// The PEM text, for writing to a 0600 file or a Kubernetes Secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem([redacted])")
    }
}

/// Why issuing a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// A leaf needs at least one name.
    #[error("a certificate needs at least one host name")]
    NoNames,
    /// A name outside the CA's domain (checked again here in case the
    /// [`HostName`] was made for another domain).
    #[error("{name} is outside {domain}, the only domain this CA may vouch for")]
    OutsideDomain {
        /// The name.
        name: String,
        /// The CA's domain.
        domain: Domain,
    },
    /// `now` is outside the range X.509 dates can express.
    #[error("the clock reads a time X.509 cannot express")]
    Clock,
    /// The CA's own certificate does not parse (it did when loaded).
    #[error("the CA certificate does not parse")]
    CaCert,
    /// rcgen refused the parameters or failed to sign.
    #[error("cannot build the certificate")]
    Rcgen(#[source] rcgen::Error),
}

/// Why stored CA material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaParseError {
    /// The certificate is not a PEM X.509 certificate.
    #[error("the CA certificate is not a PEM certificate")]
    CertPem,
    /// The certificate does not parse.
    #[error("the CA certificate does not parse")]
    CertDer,
    /// The key is not a PEM P-256 key rcgen can sign with.
    #[error("the CA key is not a PEM PKCS#8 key")]
    Key(#[source] rcgen::Error),
    /// Certificate and key do not belong together.
    #[error("the CA key does not belong to the CA certificate")]
    KeyMismatch,
    /// The certificate is not a root constrained to `domain`.
    #[error(
        "the CA certificate is not a root constrained to {domain} \
         (its permitted DNS names are {permitted:?})"
    )]
    WrongDomain {
        /// The domain it was expected to serve.
        domain: Domain,
        /// The DNS subtrees it permits.
        permitted: Vec<String>,
    },
    /// rcgen cannot use the certificate as an issuer.
    #[error("the CA certificate cannot sign")]
    Issuer(#[source] rcgen::Error),
}

/// A leaf certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The certificate (PEM), alone: the CA is trusted separately.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: KeyPem,
}

/// Why a stored leaf must be reissued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reissue {
    /// No leaf is stored yet.
    Missing,
    /// The stored certificate or key does not parse.
    Unreadable,
    /// The certificate was not signed by this CA (the CA was re-created).
    OtherCa,
    /// The key does not belong to the certificate.
    KeyMismatch,
    /// The certificate carries other names than the ones wanted.
    NamesChanged {
        /// The names it carries.
        had: Vec<String>,
    },
    /// It is not valid yet (the clock moved back).
    NotYetValid,
    /// It expires within [`RENEW_BEFORE`] (or already has).
    ExpiresSoon {
        /// Its `notAfter`.
        not_after: SystemTime,
    },
}

impl fmt::Display for Reissue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reissue::Missing => f.write_str("none yet"),
            Reissue::Unreadable => f.write_str("the stored files do not parse"),
            Reissue::OtherCa => f.write_str("it was signed by an earlier CA"),
            Reissue::KeyMismatch => f.write_str("its key file belongs to another certificate"),
            Reissue::NamesChanged { had } => {
                write!(f, "its names changed (was {})", had.join(", "))
            }
            Reissue::NotYetValid => f.write_str("it is not valid yet"),
            Reissue::ExpiresSoon { not_after } => {
                write!(f, "it expires {}", crate::inspect::format_time(*not_after))
            }
        }
    }
}

/// The lab root: certificate and signing key, for one domain.
pub struct Ca {
    domain: Domain,
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("domain", &self.domain)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn offset_time(t: SystemTime) -> Result<OffsetDateTime, IssueError> {
    let t = OffsetDateTime::from(t);
    t.replace_nanosecond(0).map_err(|_| IssueError::Clock)
}

impl Ca {
    /// Makes a new root for `domain`: ECDSA P-256, self-signed, CA with path
    /// length 0, keyCertSign and cRLSign, and critical name constraints that
    /// permit `domain` and the names under it and exclude every IP address.
    /// Valid for [`CA_VALIDITY`] from `now`. The subject names the domain and
    /// `made_on`, the host it was made on, so a user who finds it in a trust
    /// store knows where it came from.
    ///
    /// # Errors
    /// [`IssueError`] when key generation or signing fails.
    pub fn generate(domain: &Domain, made_on: &str, now: SystemTime) -> Result<Ca, IssueError> {
        let now = offset_time(now)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(IssueError::Rcgen)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("fedilab lab CA for {domain}"));
        dn.push(DnType::OrganizationName, "fedilab");
        dn.push(
            DnType::OrganizationalUnitName,
            format!("{domain} lab, made on {made_on}"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName(domain.to_string())],
            // A DNS constraint says nothing about IP SANs: exclude them all.
            excluded_subtrees: vec![
                GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
                GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
            ],
        });
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).map_err(IssueError::Rcgen)?;
        Ok(Ca {
            domain: domain.clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// Loads a stored root and checks that the key belongs to the
    /// certificate and that the certificate permits exactly `domain`.
    ///
    /// # Errors
    /// [`CaParseError`] saying what does not fit.
    pub fn from_pem(domain: &Domain, cert_pem: &str, key_pem: &KeyPem) -> Result<Ca, CaParseError> {
        let cert_der = pem_to_der(cert_pem).ok_or(CaParseError::CertPem)?;
        let key = KeyPair::from_pem(key_pem.expose()).map_err(CaParseError::Key)?;
        let (_, cert) = X509Certificate::from_der(&cert_der).map_err(|_| CaParseError::CertDer)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CaParseError::KeyMismatch);
        }
        let permitted = permitted_dns(&cert);
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca || permitted != [domain.as_str()] {
            return Err(CaParseError::WrongDomain {
                domain: domain.clone(),
                permitted,
            });
        }
        Ok(Ca {
            domain: domain.clone(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key,
        })
    }

    /// The domain this root may vouch for.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The root certificate (PEM): what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The root's private key (PKCS#8 PEM), for its 0600 file.
    pub fn key_pem(&self) -> KeyPem {
        KeyPem(self.key.serialize_pem())
    }

    /// Issues a leaf for `names` (the first is its subject): serverAuth,
    /// SAN DNS names, subject and authority key identifiers, valid for
    /// [`LEAF_VALIDITY`] from `now` but never past the root.
    ///
    /// # Errors
    /// [`IssueError::NoNames`], [`IssueError::OutsideDomain`], or a signing
    /// failure.
    pub fn issue_leaf(&self, names: &[HostName], now: SystemTime) -> Result<Leaf, IssueError> {
        let first = names.first().ok_or(IssueError::NoNames)?;
        if let Some(outside) = names.iter().find(|n| !n.is_within(&self.domain)) {
            return Err(IssueError::OutsideDomain {
                name: outside.to_string(),
                domain: self.domain.clone(),
            });
        }
        let now = offset_time(now)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.clone().into(), &self.key)
            .map_err(IssueError::Rcgen)?;
        let ca_not_after = X509Certificate::from_der(&self.cert_der)
            .map(|(_, c)| c.validity().not_after.to_datetime())
            .map_err(|_| IssueError::CaCert)?;

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(IssueError::Rcgen)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| {
                n.as_str()
                    .to_owned()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(IssueError::Rcgen)
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = (now + LEAF_VALIDITY).min(ca_not_after);
        let cert = params.signed_by(&key, &issuer).map_err(IssueError::Rcgen)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: KeyPem(key.serialize_pem()),
        })
    }

    /// Whether a stored leaf may be reused for `names` at `now`: signed by
    /// this root, with its own key, carrying exactly these names (in any
    /// order), already valid and still valid for longer than
    /// [`RENEW_BEFORE`].
    ///
    /// # Errors
    /// The [`Reissue`] reason when it may not.
    pub fn check_leaf(
        &self,
        cert_pem: &str,
        key_pem: &KeyPem,
        names: &[HostName],
        now: SystemTime,
    ) -> Result<(), Reissue> {
        let der = pem_to_der(cert_pem).ok_or(Reissue::Unreadable)?;
        let (_, leaf) = X509Certificate::from_der(&der).map_err(|_| Reissue::Unreadable)?;
        let (_, root) =
            X509Certificate::from_der(&self.cert_der).map_err(|_| Reissue::Unreadable)?;
        if leaf.issuer() != root.subject()
            || leaf.verify_signature(Some(root.public_key())).is_err()
        {
            return Err(Reissue::OtherCa);
        }
        let key = KeyPair::from_pem(key_pem.expose()).map_err(|_| Reissue::Unreadable)?;
        if leaf.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(Reissue::KeyMismatch);
        }
        let had = san_dns(&leaf);
        let want: BTreeSet<&str> = names.iter().map(HostName::as_str).collect();
        if had.iter().map(String::as_str).collect::<BTreeSet<_>>() != want {
            return Err(Reissue::NamesChanged { had });
        }
        let now = OffsetDateTime::from(now);
        let validity = leaf.validity();
        if now < validity.not_before.to_datetime() {
            return Err(Reissue::NotYetValid);
        }
        let not_after = validity.not_after.to_datetime();
        if not_after - now <= RENEW_BEFORE {
            return Err(Reissue::ExpiresSoon {
                not_after: not_after.into(),
            });
        }
        Ok(())
    }
}

/// The first `CERTIFICATE` block of `pem`, as DER.
pub(crate) fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|d| d.to_vec())
}

/// The DNS names of a certificate's SAN extension, in order.
pub(crate) fn san_dns(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The DNS subtrees a CA certificate's name constraints permit.
pub(crate) fn permitted_dns(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.name_constraints()
        .ok()
        .flatten()
        .and_then(|nc| nc.value.permitted_subtrees.as_ref())
        .map(|subtrees| {
            subtrees
                .iter()
                .filter_map(|s| match s.base {
                    GeneralName::DNSName(d) => Some(d.to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        "fediverse.local".parse().unwrap()
    }

    fn host(name: &str) -> HostName {
        HostName::new(name, &domain()).unwrap()
    }

    #[test]
    fn key_pem_debug_is_redacted() {
        let ca = Ca::generate(&domain(), "testhost", SystemTime::now()).unwrap();
        let shown = format!("{:?} {:?}", ca.key_pem(), ca);
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn a_stored_root_round_trips_and_must_match_its_domain() {
        let now = SystemTime::now();
        let ca = Ca::generate(&domain(), "testhost", now).unwrap();
        let again = Ca::from_pem(&domain(), ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());

        let other: Domain = "fediverse.test".parse().unwrap();
        let err = Ca::from_pem(&other, ca.cert_pem(), &ca.key_pem()).unwrap_err();
        assert!(matches!(err, CaParseError::WrongDomain { .. }), "{err}");

        let stranger = Ca::generate(&domain(), "testhost", now).unwrap();
        let err = Ca::from_pem(&domain(), ca.cert_pem(), &stranger.key_pem()).unwrap_err();
        assert!(matches!(err, CaParseError::KeyMismatch), "{err}");
    }

    #[test]
    fn leaf_checks_follow_the_reuse_rule() {
        let now = SystemTime::now();
        let ca = Ca::generate(&domain(), "testhost", now).unwrap();
        let names = [host("mastodon1.fediverse.local")];
        let leaf = ca.issue_leaf(&names, now).unwrap();
        assert_eq!(
            ca.check_leaf(&leaf.cert_pem, &leaf.key_pem, &names, now),
            Ok(())
        );

        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            ca.check_leaf(&leaf.cert_pem, &leaf.key_pem, &names, now + 59 * day),
            Ok(())
        );
        assert!(matches!(
            ca.check_leaf(&leaf.cert_pem, &leaf.key_pem, &names, now + 61 * day),
            Err(Reissue::ExpiresSoon { .. })
        ));
        assert!(matches!(
            ca.check_leaf(&leaf.cert_pem, &leaf.key_pem, &names, now - day),
            Err(Reissue::NotYetValid)
        ));
        let more = [names[0].clone(), host("media.fediverse.local")];
        assert!(matches!(
            ca.check_leaf(&leaf.cert_pem, &leaf.key_pem, &more, now),
            Err(Reissue::NamesChanged { .. })
        ));
        let other_leaf = ca.issue_leaf(&names, now).unwrap();
        assert_eq!(
            ca.check_leaf(&leaf.cert_pem, &other_leaf.key_pem, &names, now),
            Err(Reissue::KeyMismatch)
        );
        let new_ca = Ca::generate(&domain(), "testhost", now).unwrap();
        assert_eq!(
            new_ca.check_leaf(&leaf.cert_pem, &leaf.key_pem, &names, now),
            Err(Reissue::OtherCa)
        );
        assert_eq!(
            ca.check_leaf("garbage", &leaf.key_pem, &names, now),
            Err(Reissue::Unreadable)
        );
    }

    #[test]
    fn a_leaf_never_outlives_its_root() {
        let now = SystemTime::now();
        let ca = Ca::generate(&domain(), "testhost", now).unwrap();
        let late = now + std::time::Duration::from_secs(86_400 * (3650 - 10));
        let leaf = ca
            .issue_leaf(&[host("mastodon1.fediverse.local")], late)
            .unwrap();
        let der = pem_to_der(&leaf.cert_pem).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let (_, root) = X509Certificate::from_der(ca.cert_der()).unwrap();
        assert_eq!(cert.validity().not_after, root.validity().not_after);
    }

    #[test]
    fn a_host_of_another_domain_is_refused() {
        let ca = Ca::generate(&domain(), "testhost", SystemTime::now()).unwrap();
        let other: Domain = "example.com".parse().unwrap();
        let stranger = HostName::new("www.example.com", &other).unwrap();
        let err = ca.issue_leaf(&[stranger], SystemTime::now()).unwrap_err();
        assert!(matches!(err, IssueError::OutsideDomain { .. }), "{err}");
        assert!(matches!(
            ca.issue_leaf(&[], SystemTime::now()),
            Err(IssueError::NoNames)
        ));
    }
}
