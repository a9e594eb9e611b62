//! Strong types for the names and values a lab is made of.
//!
//! Each type checks its rules at construction, so a `LabName` can never be
//! passed where an `InstanceName` is wanted, and nothing downstream checks a
//! name again. No I/O.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why a name or value was rejected. The message completes a sentence that
/// starts with the offending value's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The value is empty.
    #[error("must not be empty")]
    Empty,
    /// The value is longer than allowed.
    #[error("{value:?} is {len} characters long; the most is {max}")]
    TooLong {
        /// The rejected value.
        value: String,
        /// Its length.
        len: usize,
        /// The allowed maximum.
        max: usize,
    },
    /// The value is not a DNS label of the required form.
    #[error("{value:?} is not a valid name: {rule}")]
    Invalid {
        /// The rejected value.
        value: String,
        /// The rule it breaks, in words.
        rule: &'static str,
    },
}

fn check_label(value: &str, max: usize, must_start_with_letter: bool) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() > max {
        return Err(NameError::TooLong {
            value: value.to_owned(),
            len: value.len(),
            max,
        });
    }
    let invalid = |rule| {
        Err(NameError::Invalid {
            value: value.to_owned(),
            rule,
        })
    };
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("use only lowercase letters, digits and '-'");
    }
    let first = value.as_bytes()[0];
    if must_start_with_letter && !first.is_ascii_lowercase() {
        return invalid("start with a lowercase letter");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return invalid("start and end with a letter or digit");
    }
    Ok(())
}

/// Serializes a type as its `Display` text and deserializes it through its
/// `FromStr`, so a saved value is checked exactly as typed input is.
macro_rules! serde_as_text {
    ($name:ty) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> Result<(), NameError> = $check;
                check(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        serde_as_text!($name);
    };
}

/// The longest lab name: the namespace `fedilab-<lab>` and per-lab object
/// names must stay within Kubernetes' 63-character limits.
pub const MAX_LAB_NAME_LEN: usize = 40;
/// The longest instance name: `<instance>-streaming` and the StatefulSet's
/// pod names must stay within 63 characters.
pub const MAX_INSTANCE_NAME_LEN: usize = 40;

string_newtype!(
    /// A lab's name: a DNS-1123 label of at most 40 characters.
    LabName,
    |s| check_label(s, MAX_LAB_NAME_LEN, false)
);

string_newtype!(
    /// An instance's name, the first label of its host name. A DNS-1035 label
    /// (it names Services, so it starts with a letter) of at most 40
    /// characters.
    InstanceName,
    |s| check_label(s, MAX_INSTANCE_NAME_LEN, true)
);

fn check_domain(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    // Room for "<instance>." in front of it within the 253-character limit.
    let max = 253 - MAX_INSTANCE_NAME_LEN - 1;
    if s.len() > max {
        return Err(NameError::TooLong {
            value: s.to_owned(),
            len: s.len(),
            max,
        });
    }
    if s.ends_with('.') {
        return Err(NameError::Invalid {
            value: s.to_owned(),
            rule: "write it without the trailing dot",
        });
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return Err(NameError::Invalid {
            value: s.to_owned(),
            rule: "use at least two labels, such as fediverse.local or fediverse.test",
        });
    }
    for label in &labels {
        if check_label(label, 63, false).is_err() {
            return Err(NameError::Invalid {
                value: s.to_owned(),
                rule: "each dot-separated label must be 1-63 lowercase letters, digits or '-', \
                       not starting or ending with '-'",
            });
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NameError::Invalid {
            value: s.to_owned(),
            rule: "the last label must not be all digits",
        });
    }
    Ok(())
}

string_newtype!(
    /// The lab's DNS domain, such as `fediverse.local`: lowercase, at least
    /// two labels, no trailing dot.
    Domain,
    check_domain
);

/// A fully qualified host name inside the lab domain, such as
/// `mastodon1.fediverse.local` (written without the trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fqdn(String);

impl Fqdn {
    /// The host `<label>.<domain>`. Cannot fail: both parts are valid and
    /// their lengths are bounded so the sum is too.
    pub fn new(label: &InstanceName, domain: &Domain) -> Self {
        Self(format!("{label}.{domain}"))
    }

    /// The host name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Fqdn {
    type Err = NameError;
    /// A saved host name: a domain name with at least three labels (an
    /// instance label in front of a lab domain).
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (label, domain) = s.split_once('.').ok_or_else(|| NameError::Invalid {
            value: s.to_owned(),
            rule: "write a host name such as mastodon1.fediverse.local",
        })?;
        check_label(label, 63, false)?;
        check_domain(domain)?;
        Ok(Self(s.to_owned()))
    }
}

serde_as_text!(Fqdn);

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IP network in CIDR notation, such as `10.42.0.0/15`, with no host bits
/// set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not of the form `ADDRESS/PREFIX`.
    #[error("{0:?} is not a CIDR such as 10.42.0.0/15")]
    Syntax(String),
    /// The prefix is longer than the address.
    #[error("{value:?}: the prefix length must be at most {max}")]
    Prefix {
        /// The rejected value.
        value: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// Host bits are set below the prefix.
    #[error("{value:?} has host bits set; did you mean {suggestion}?")]
    HostBits {
        /// The rejected value.
        value: String,
        /// The network address with the host bits cleared.
        suggestion: Cidr,
    },
}

impl Cidr {
    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// Whether every address of this network is inside `other`.
    pub fn is_within(&self, other: &Cidr) -> bool {
        self.prefix >= other.prefix && other.contains(self.addr)
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError::Prefix {
                value: s.to_owned(),
                max,
            });
        }
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(u128::from(v6), prefix).into()),
        };
        let cidr = Cidr {
            addr: network,
            prefix,
        };
        if network != addr {
            return Err(CidrError::HostBits {
                value: s.to_owned(),
                suggestion: cidr,
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A Kubernetes resource quantity (`500m`, `1Gi`, `0.5`), kept as written
/// and parsed to a number for sums and comparisons by
/// [`parse_quantity`](crate::parse_quantity); it must be greater than zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl Quantity {
    /// The quantity as written, for the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its value in base units: bytes for memory, cores for CPU.
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl FromStr for Quantity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let value = crate::parse_quantity(s)
            .ok_or_else(|| format!("{s:?} is not a quantity such as 500m, 256Mi or 1Gi"))?;
        if value <= 0.0 {
            return Err(format!("{s:?} must be greater than zero"));
        }
        Ok(Quantity {
            text: s.to_owned(),
            value,
        })
    }
}

/// A Mastodon release tag such as `v4.4.8`, with the parts fedilab needs to
/// choose the right environment (OTP_SECRET for 4.3, for example).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MastodonVersion {
    tag: String,
    major: u32,
    minor: u32,
    patch: u32,
}

impl MastodonVersion {
    /// The oldest supported release line: 4.3 split out the streaming image
    /// and made the Active Record encryption keys mandatory.
    pub const OLDEST: (u32, u32) = (4, 3);

    /// The image tag, always with its leading `v`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `(major, minor, patch)`.
    pub fn parts(&self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }

    /// Whether this release needs `OTP_SECRET` (required by 4.3, removed in
    /// 4.4).
    pub fn needs_otp_secret(&self) -> bool {
        (self.major, self.minor) < (4, 4)
    }
}

impl FromStr for MastodonVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a Mastodon release tag such as v4.4.8");
        let bare = s.strip_prefix('v').unwrap_or(s);
        // A pre-release suffix (v4.5.0-beta.1) is allowed; the numbers decide.
        let (numbers, suffix) = match bare.split_once('-') {
            Some((n, rest)) if !rest.is_empty() => (n, Some(rest)),
            Some(_) => return Err(bad()),
            None => (bare, None),
        };
        if let Some(suffix) = suffix
            && !suffix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            return Err(bad());
        }
        let parts: Vec<&str> = numbers.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                Err(bad())
            } else {
                p.parse::<u32>().map_err(|_| bad())
            }
        };
        let (major, minor, patch) = (num(major)?, num(minor)?, num(patch)?);
        if (major, minor) < Self::OLDEST {
            return Err(format!(
                "{s:?} is older than Mastodon {}.{}, the oldest release fedilab supports",
                Self::OLDEST.0,
                Self::OLDEST.1
            ));
        }
        Ok(MastodonVersion {
            tag: format!("v{bare}"),
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for MastodonVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)
    }
}

/// A release of a server other than Mastodon, as its image is tagged:
/// numbers separated by dots, no `v` (Misskey `2026.6.0`, GoToSocial
/// `0.20.2`). [`Release::parse`] checks the shape and the oldest release
/// fedilab supports for the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    tag: String,
    parts: (u32, u32, u32),
}

impl Release {
    /// Parses `text` as a release of `server` (for messages) with
    /// `example` as a well-formed one, refusing anything older than
    /// `oldest`.
    ///
    /// # Errors
    /// A message for the user: not a release tag, or too old.
    pub fn parse(
        text: &str,
        server: &str,
        example: &str,
        oldest: (u32, u32, u32),
    ) -> Result<Release, String> {
        let bad = || format!("{text:?} is not a {server} release tag such as {example}");
        let numbers: Vec<&str> = text.split('.').collect();
        let [a, b, c] = numbers.as_slice() else {
            return Err(bad());
        };
        let num = |p: &str| {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                Err(bad())
            } else {
                p.parse::<u32>().map_err(|_| bad())
            }
        };
        let parts = (num(a)?, num(b)?, num(c)?);
        if parts < oldest {
            return Err(format!(
                "{text:?} is older than {server} {}.{}.{}, the oldest release fedilab supports",
                oldest.0, oldest.1, oldest.2
            ));
        }
        Ok(Release {
            tag: text.to_owned(),
            parts,
        })
    }

    /// The image tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The three numbers.
    pub fn parts(&self) -> (u32, u32, u32) {
        self.parts
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)
    }
}

/// Where a server outside the cluster listens, as the inspector reaches it
/// from the host: `http://HOST:PORT`, such as `http://127.0.0.1:3000`. The
/// scheme is `http` (Traefik terminates TLS with the lab's certificate; the
/// inspector speaks plain HTTP to the server), the port is explicit, and
/// there is no path, query, fragment or user info. HOST is an IP address
/// (IPv6 in brackets) or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalUrl {
    host: String,
    port: u16,
}

impl ExternalUrl {
    /// The host: an IP address (IPv6 without brackets) or a DNS name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for ExternalUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let example = "such as http://127.0.0.1:3000";
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!("{s:?} is not a URL {example}"));
        };
        if scheme.eq_ignore_ascii_case("https") {
            return Err(format!(
                "{s:?} uses https; give the server's plain-HTTP address ({example}): \
                 Traefik terminates TLS with the lab's certificate and the inspector \
                 speaks HTTP to the server"
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(format!(
                "{s:?} is not an http URL; give the server's address {example}"
            ));
        }
        // Only a bare trailing slash may follow the authority.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(format!(
                "{s:?} has a path, query or fragment; give only http://HOST:PORT \
                 (the lab host's paths map one to one onto the server's)"
            ));
        }
        if authority.contains('@') {
            return Err(format!("{s:?} has user info; give only http://HOST:PORT"));
        }
        let no_port = || format!("{s:?} has no port; write it explicitly, {example}");
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (v6, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: an IPv6 address needs a closing ']'"))?;
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{s:?}: {v6:?} is not an IPv6 address"));
            }
            let port = after.strip_prefix(':').ok_or_else(no_port)?;
            (v6.to_owned(), port)
        } else {
            let (host, port) = authority.rsplit_once(':').ok_or_else(no_port)?;
            if host.contains(':') {
                return Err(format!(
                    "{s:?}: write an IPv6 address in brackets, such as http://[::1]:3000"
                ));
            }
            let host = host.to_ascii_lowercase();
            let is_ip = host.parse::<std::net::Ipv4Addr>().is_ok();
            let is_name = !host.is_empty()
                && host.len() <= 253
                && host
                    .split('.')
                    .all(|label| check_label(label, 63, false).is_ok());
            if !is_ip && !is_name {
                return Err(format!(
                    "{s:?}: {host:?} is not an IP address or a host name"
                ));
            }
            (host, port)
        };
        if port.is_empty() {
            return Err(no_port());
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(format!("{s:?}: the port must be a number from 1 to 65535")),
        };
        Ok(ExternalUrl { host, port })
    }
}

serde_as_text!(ExternalUrl);

impl fmt::Display for ExternalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn releases_are_three_numbers_no_older_than_the_kinds_oldest() {
        let parse = |t: &str| Release::parse(t, "Misskey", "2026.6.0", (2024, 10, 0));
        let r = parse("2026.6.0").expect("valid");
        assert_eq!((r.tag(), r.parts()), ("2026.6.0", (2026, 6, 0)));
        assert!(parse("v2026.6.0").is_err());
        assert!(parse("2026.6").is_err());
        assert!(parse("latest").is_err());
        assert!(
            parse("2024.9.0")
                .expect_err("too old")
                .contains("older than Misskey 2024.10.0")
        );
    }

    use super::*;

    #[test]
    fn labels_follow_dns_rules() {
        assert!("mastodon1".parse::<InstanceName>().is_ok());
        assert!("a-b".parse::<LabName>().is_ok());
        assert!("1lab".parse::<LabName>().is_ok());
        assert!(matches!(
            "1abc".parse::<InstanceName>(),
            Err(NameError::Invalid { .. })
        ));
        for bad in ["Mastodon", "a_b", "-a", "a-", "a.b", "ä"] {
            assert!(bad.parse::<InstanceName>().is_err(), "{bad} accepted");
        }
        assert_eq!("".parse::<LabName>(), Err(NameError::Empty));
        let long = "a".repeat(MAX_LAB_NAME_LEN + 1);
        assert!(matches!(
            long.parse::<LabName>(),
            Err(NameError::TooLong {
                len: 41,
                max: 40,
                ..
            })
        ));
    }

    #[test]
    fn domains_need_two_valid_labels() {
        for good in [
            "fediverse.local",
            "fediverse.test",
            "a.b.c",
            "x1.y-2.example",
        ] {
            assert!(good.parse::<Domain>().is_ok(), "{good} rejected");
        }
        for bad in [
            "local",
            "fediverse.local.",
            "Fediverse.local",
            "a..b",
            "-a.b",
            "a.123",
            "",
        ] {
            assert!(bad.parse::<Domain>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn fqdn_joins_label_and_domain() {
        let host = Fqdn::new(
            &"mastodon1".parse().expect("valid"),
            &"fediverse.local".parse().expect("valid"),
        );
        assert_eq!(host.as_str(), "mastodon1.fediverse.local");
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "10.42.0.0/15".parse().expect("valid");
        assert!(c.contains("10.43.0.10".parse().expect("ip")));
        assert!(c.contains("10.42.255.1".parse().expect("ip")));
        assert!(!c.contains("10.44.0.1".parse().expect("ip")));
        assert!(!c.contains("::1".parse().expect("ip")));
        let v6: Cidr = "fd00::/8".parse().expect("valid");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert_eq!(c.to_string(), "10.42.0.0/15");
        assert!(c.is_within(&"10.0.0.0/8".parse().expect("valid")));
        assert!(!"10.0.0.0/8".parse::<Cidr>().expect("valid").is_within(&c));
    }

    #[test]
    fn cidr_errors_explain() {
        match "10.43.0.0/15".parse::<Cidr>() {
            Err(CidrError::HostBits { suggestion, .. }) => {
                assert_eq!(suggestion.to_string(), "10.42.0.0/15")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 32, .. })
        ));
        for bad in ["10.0.0.0", "10.0.0/8", "10.0.0.0/", "10.0.0.0/+8", "x/8"] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn quantities_parse_to_base_units() {
        let q: Quantity = "512Mi".parse().expect("valid");
        assert_eq!(q.value(), 512.0 * 1024.0 * 1024.0);
        assert_eq!("250m".parse::<Quantity>().expect("valid").value(), 0.25);
        assert_eq!("1.5".parse::<Quantity>().expect("valid").value(), 1.5);
        assert_eq!("1G".parse::<Quantity>().expect("valid").value(), 1e9);
        for bad in ["", "Mi", "1.2.3", "-1", "0", "1Xi", "1 Gi"] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn mastodon_versions() {
        let v: MastodonVersion = "4.4.8".parse().expect("valid");
        assert_eq!(v.tag(), "v4.4.8");
        assert!(!v.needs_otp_secret());
        let v: MastodonVersion = "v4.3.21".parse().expect("valid");
        assert!(v.needs_otp_secret());
        assert_eq!(v.parts(), (4, 3, 21));
        assert!("v4.5.0-beta.1".parse::<MastodonVersion>().is_ok());
        let err = "v4.2.10".parse::<MastodonVersion>().expect_err("too old");
        assert!(err.contains("oldest release"), "{err}");
        for bad in ["latest", "v4.4", "v4.4.x", "v4.4.8-", "v4.4.8-a/b"] {
            assert!(bad.parse::<MastodonVersion>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn external_urls_are_plain_http_with_a_port() {
        for (text, shown) in [
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://127.0.0.1:3000/", "http://127.0.0.1:3000"),
            ("HTTP://LocalHost:8080", "http://localhost:8080"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("http://dev.example:1", "http://dev.example:1"),
        ] {
            let url: ExternalUrl = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(url.to_string(), shown);
        }
        let url: ExternalUrl = "http://[::1]:3000".parse().expect("valid");
        assert_eq!(url.ip(), Some("::1".parse().expect("ip")));
        assert_eq!((url.host(), url.port()), ("::1", 3000));
        for (bad, says) in [
            ("https://127.0.0.1:3000", "Traefik terminates TLS"),
            ("http://127.0.0.1", "no port"),
            ("http://127.0.0.1:", "no port"),
            ("http://127.0.0.1:0", "1 to 65535"),
            ("http://127.0.0.1:70000", "1 to 65535"),
            ("http://127.0.0.1:+80", "1 to 65535"),
            ("http://127.0.0.1:3000/app", "path"),
            ("http://127.0.0.1:3000?x=1", "query"),
            ("http://u:p@127.0.0.1:3000", "user info"),
            ("http://::1:3000", "brackets"),
            ("http://[::1:3000", "closing"),
            ("http://[zz]:3000", "not an IPv6"),
            ("http://a_b:3000", "not an IP address or a host name"),
            ("ftp://127.0.0.1:21", "not an http URL"),
            ("127.0.0.1:3000", "not a URL"),
        ] {
            let err = bad.parse::<ExternalUrl>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
