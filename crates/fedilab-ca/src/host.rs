//! [`HostName`]: a DNS name a lab leaf may carry, checked to lie inside the
//! lab domain.
//!
//! The root's name constraints make every client reject a leaf for a name
//! outside the domain anyway; checking here turns that late, cryptic failure
//! into an early error that names the domain. No I/O.

use std::fmt;

use fedilab_profile::{Domain, Fqdn};

/// The longest DNS name, without the trailing dot.
const MAX_NAME_LEN: usize = 253;

/// A lowercase DNS name equal to the lab domain or under it, such as
/// `mastodon1.fediverse.local`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

/// Why a host name cannot go into a lab certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostNameError {
    /// Not a DNS name of the accepted form.
    #[error("{name:?} is not a host name: {rule}")]
    Invalid {
        /// The rejected name, as given.
        name: String,
        /// The rule it breaks, in words.
        rule: &'static str,
    },
    /// A valid name, but outside the lab domain.
    #[error(
        "{name} is outside the lab domain {domain}: the lab CA may only vouch for \
         {domain} and names under it, so every client would reject this certificate"
    )]
    OutsideDomain {
        /// The rejected name.
        name: String,
        /// The lab domain.
        domain: Domain,
    },
}

impl HostName {
    /// Checks `name` (any ASCII case, no trailing dot) and that it is `domain`
    /// or a name under it.
    ///
    /// # Errors
    /// [`HostNameError`] saying which rule `name` breaks.
    pub fn new(name: &str, domain: &Domain) -> Result<Self, HostNameError> {
        let invalid = |rule| {
            Err(HostNameError::Invalid {
                name: name.to_owned(),
                rule,
            })
        };
        if name.is_empty() {
            return invalid("it is empty");
        }
        if name.len() > MAX_NAME_LEN {
            return invalid("it is longer than 253 characters");
        }
        if name.ends_with('.') {
            return invalid("write it without the trailing dot");
        }
        let lower = name.to_ascii_lowercase();
        for label in lower.split('.') {
            if label.is_empty() || label.len() > 63 {
                return invalid("each dot-separated label must be 1-63 characters long");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return invalid("use only letters, digits, '-' and '.'");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return invalid("a label must not start or end with '-'");
            }
        }
        let host = HostName(lower);
        if !host.is_within(domain) {
            return Err(HostNameError::OutsideDomain {
                name: host.0,
                domain: domain.clone(),
            });
        }
        Ok(host)
    }

    /// An instance's host. Cannot fail for the instance hosts of a validated
    /// `LabSpec`, which are `<name>.<domain>` by construction.
    ///
    /// # Errors
    /// [`HostNameError::OutsideDomain`] when `fqdn` belongs to another domain.
    pub fn from_fqdn(fqdn: &Fqdn, domain: &Domain) -> Result<Self, HostNameError> {
        Self::new(fqdn.as_str(), domain)
    }

    /// Whether this name is `domain` or under it, label by label (so
    /// `xfediverse.local` is not under `fediverse.local`).
    pub fn is_within(&self, domain: &Domain) -> bool {
        let domain = domain.as_str();
        self.0 == domain
            || self
                .0
                .strip_suffix(domain)
                .is_some_and(|head| head.ends_with('.'))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        "fediverse.local".parse().unwrap()
    }

    #[test]
    fn accepts_names_in_the_domain_and_lowercases_them() {
        let host = HostName::new("Mastodon1.Fediverse.Local", &domain()).unwrap();
        assert_eq!(host.as_str(), "mastodon1.fediverse.local");
        assert!(HostName::new("fediverse.local", &domain()).is_ok());
        assert!(HostName::new("a.b.fediverse.local", &domain()).is_ok());
    }

    #[test]
    fn rejects_names_outside_the_domain_label_by_label() {
        for name in [
            "example.com",
            "xfediverse.local",
            "mastodon1.fediverse.local.example.com",
            "local",
        ] {
            let err = HostName::new(name, &domain()).unwrap_err();
            assert!(
                matches!(err, HostNameError::OutsideDomain { .. }),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn rejects_malformed_names() {
        for name in [
            "",
            "mastodon1.fediverse.local.",
            "a..fediverse.local",
            "-a.fediverse.local",
            "a_b.fediverse.local",
            "*.fediverse.local",
            "10.0.0.1",
        ] {
            assert!(
                HostName::new(name, &domain()).is_err(),
                "{name:?} was accepted"
            );
        }
    }
}
