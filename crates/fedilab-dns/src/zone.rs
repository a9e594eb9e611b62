//! The lab zone: built from a [`LabSpec`] by a pure function, and compiled
//! into one precomputed answer per (name, type) the zone can be asked about.
//!
//! This module does no I/O. It decides every answer the server gives
//! (including REFUSED, NODATA and NXDOMAIN); `wire` only frames them.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use fedilab_profile::LabSpec;
use hickory_proto::ProtoError;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::wire::{self, Question};

/// The TTL of every record, and the negative-caching TTL (SOA minimum): one
/// minute, so a changed lab is seen quickly.
pub const DEFAULT_TTL: u32 = 60;

/// The label of the zone's name server, `ns.<domain>`, named by the NS and
/// SOA records and answered with the same addresses as everything else.
pub const NS_LABEL: &str = "ns";

/// The SOA RNAME's label: `hostmaster.<domain>` (RFC 2142).
const HOSTMASTER_LABEL: &str = "hostmaster";
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86_400;

/// The most answer bytes one response may carry: a TCP message is at most
/// 65535 bytes, less the header, the longest question and an OPT record.
const MAX_BODY: usize = 65_535 - wire::HEADER_LEN - wire::MAX_QUESTION_LEN - wire::OPT_LEN;

/// Why a zone could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// No address to answer with.
    #[error("the zone needs at least one address to answer with (give --answer IP)")]
    NoAddress,
    /// A name from the spec is not a valid DNS name (a bug: the spec is
    /// validated).
    #[error("{name:?} is not a valid DNS name")]
    Name {
        /// The name.
        name: String,
        /// hickory-proto's reason.
        #[source]
        source: ProtoError,
    },
    /// A host that is not one label under the domain: the zone answers
    /// `NAME.DOMAIN` only.
    #[error("{host:?} is not a name directly under {domain:?} (expected NAME.{domain})")]
    NotInZone {
        /// The host.
        host: String,
        /// The zone's domain.
        domain: String,
    },
    /// A record's data could not be encoded.
    #[error("cannot encode the {rtype} record of {name}")]
    Encode {
        /// The record's owner.
        name: String,
        /// Its type.
        rtype: RecordType,
        /// hickory-proto's reason.
        #[source]
        source: ProtoError,
    },
    /// So many addresses that an answer would not fit in a DNS message.
    #[error(
        "{addresses} answer addresses make a {rtype} answer of {len} bytes at {name}, \
         more than the {MAX_BODY} a DNS message can carry"
    )]
    TooLarge {
        /// How many addresses were given.
        addresses: usize,
        /// The name whose answer is too large.
        name: String,
        /// The query type.
        rtype: RecordType,
        /// The answer's size in bytes.
        len: usize,
    },
}

/// A lab's zone: its records, and every answer compiled to wire bytes.
///
/// Build one with [`zone()`]; serve it with [`crate::Server`].
pub struct Zone {
    origin: Name,
    serial: u32,
    records: Vec<Record>,
    pub(crate) compiled: Compiled,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zone")
            .field("origin", &self.origin)
            .field("serial", &self.serial)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl Zone {
    /// The apex, such as `fediverse.local.`.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA serial: a hash of the zone's records, so that a rebuilt zone
    /// with other data shows another serial (`dig SOA` tells whether a
    /// reload took effect). There are no secondaries (transfers are refused),
    /// so it need not increase.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Every record, SOA first, then NS, then addresses by owner.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The zone as an RFC 1035 master file, for people and for other
    /// servers (the benchmark loads it into Knot).
    pub fn to_zone_file(&self) -> String {
        let mut out = format!(
            "; lab zone {origin} serial {serial}, written by fedilab\n\
             $ORIGIN {origin}\n$TTL {DEFAULT_TTL}\n",
            origin = self.origin,
            serial = self.serial,
        );
        for record in &self.records {
            // Writing into a String cannot fail.
            let _ = writeln!(out, "{record}");
        }
        out
    }
}

/// Builds the zone of `spec`'s domain, answering with `answer` (the node
/// address where Traefik listens; IPv4 gives A records, IPv6 AAAA).
///
/// Records, all with TTL [`DEFAULT_TTL`]:
/// - `DOMAIN` SOA `ns.DOMAIN. hostmaster.DOMAIN.` and NS `ns.DOMAIN.`;
/// - A/AAAA for `DOMAIN`, `ns.DOMAIN`, every instance host and
///   `*.DOMAIN`.
///
/// Pure: the same spec and addresses give the same zone, serial included.
/// [`zone_for_hosts`] does the same from a domain and host names.
///
/// # Errors
/// [`ZoneError::NoAddress`] when `answer` is empty, [`ZoneError::TooLarge`]
/// when so many addresses are given that an answer would exceed 64 KiB.
pub fn zone(spec: &LabSpec, answer: &[IpAddr]) -> Result<Zone, ZoneError> {
    zone_for_hosts(
        spec.domain.as_str(),
        spec.instances.iter().map(|i| i.host.as_str()),
        answer,
    )
}

/// Builds the zone of `domain` with address records for each of `hosts`
/// (instance hosts, external and attached servers alike), answering with
/// `answer`: what [`zone()`] builds from a spec, for callers that hold only
/// names (the lab state that `fedilab serve` reads).
///
/// Each host must be one label under `domain` (`mastodon1.fediverse.local`
/// in `fediverse.local`); a trailing dot and letter case do not matter.
/// Repeated hosts are answered once.
///
/// # Errors
/// [`ZoneError::NoAddress`] when `answer` is empty, [`ZoneError::Name`] for
/// a name that is not a DNS name, [`ZoneError::NotInZone`] for a host that
/// is not one label under `domain`, [`ZoneError::TooLarge`] when an answer
/// would exceed 64 KiB.
pub fn zone_for_hosts<'a>(
    domain: &str,
    hosts: impl IntoIterator<Item = &'a str>,
    answer: &[IpAddr],
) -> Result<Zone, ZoneError> {
    let mut addresses: Vec<IpAddr> = Vec::with_capacity(answer.len());
    for ip in answer {
        if !addresses.contains(ip) {
            addresses.push(*ip);
        }
    }
    if addresses.is_empty() {
        return Err(ZoneError::NoAddress);
    }

    let origin = name(&format!("{}.", domain.trim_end_matches('.')))?;
    let ns = child(&origin, NS_LABEL)?;
    let hostmaster = child(&origin, HOSTMASTER_LABEL)?;
    let wildcard = child(&origin, "*")?;

    // Owners of address records, in order, without duplicates (an instance
    // called "ns" is the name server's name too).
    let mut owners = vec![origin.clone(), ns.clone()];
    for host in hosts {
        let host_name = name(&format!("{}.", host.trim_end_matches('.')))?.to_lowercase();
        if host_name.num_labels() != origin.num_labels() + 1
            || !origin.to_lowercase().zone_of(&host_name)
        {
            return Err(ZoneError::NotInZone {
                host: host.to_owned(),
                domain: domain.to_owned(),
            });
        }
        if !owners.contains(&host_name) {
            owners.push(host_name);
        }
    }
    owners.push(wildcard);

    let address_rdata: Vec<RData> = addresses
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        })
        .collect();

    let mut records = Vec::new();
    records.push(Record::from_rdata(
        origin.clone(),
        DEFAULT_TTL,
        RData::NS(NS(ns.clone())),
    ));
    for owner in &owners {
        for rdata in &address_rdata {
            records.push(Record::from_rdata(
                owner.clone(),
                DEFAULT_TTL,
                rdata.clone(),
            ));
        }
    }
    let serial = fnv1a(&records);
    let soa = Record::from_rdata(
        origin.clone(),
        DEFAULT_TTL,
        RData::SOA(SOA::new(
            ns,
            hostmaster,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            DEFAULT_TTL,
        )),
    );
    records.insert(0, soa);

    let compiled = Compiled::new(&origin, &records, addresses.len())?;
    Ok(Zone {
        origin,
        serial,
        records,
        compiled,
    })
}

fn name(text: &str) -> Result<Name, ZoneError> {
    Name::from_ascii(text).map_err(|source| ZoneError::Name {
        name: text.to_owned(),
        source,
    })
}

fn child(parent: &Name, label: &str) -> Result<Name, ZoneError> {
    parent
        .prepend_label(label)
        .map_err(|source| ZoneError::Name {
            name: format!("{label}.{parent}"),
            source,
        })
}

/// FNV-1a over the records' text: stable across runs and platforms.
fn fnv1a(records: &[Record]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for record in records {
        for byte in record.to_string().bytes().chain([b'\n']) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    // Serial 0 reads as "unset" to some tools.
    hash.max(1)
}

// ---------------------------------------------------------------------------
// Compiled answers.

/// The DNS class IN.
pub(crate) const CLASS_IN: u16 = 1;
const TYPE_ANY: u16 = 255;
const TYPE_AXFR: u16 = 252;
const TYPE_IXFR: u16 = 251;

/// Response codes this zone gives.
pub(crate) mod rcode {
    pub(crate) const NOERROR: u16 = 0;
    pub(crate) const FORMERR: u16 = 1;
    pub(crate) const NXDOMAIN: u16 = 3;
    pub(crate) const NOTIMP: u16 = 4;
    pub(crate) const REFUSED: u16 = 5;
    pub(crate) const BADVERS: u16 = 16;
}

/// One precomputed answer: everything after the question, and the header
/// fields that go with it.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) rcode: u16,
    pub(crate) authoritative: bool,
    pub(crate) answer_count: u16,
    pub(crate) authority_count: u16,
    /// The answer and authority sections. Owners in the answer section are
    /// a pointer to the question's name (offset 12), so the same bytes serve
    /// any query name, wildcard-synthesised ones included; every other name
    /// is written in full, so nothing depends on where the bytes land.
    pub(crate) body: Box<[u8]>,
}

impl Answer {
    fn empty(rcode: u16, authoritative: bool) -> Self {
        Self {
            rcode,
            authoritative,
            answer_count: 0,
            authority_count: 0,
            body: Box::new([]),
        }
    }
}

/// One owner name's answers.
#[derive(Debug)]
struct Node {
    by_type: Vec<(u16, Answer)>,
}

/// Every answer of a zone, and how to find the one for a question.
#[derive(Debug)]
pub(crate) struct Compiled {
    /// The apex in wire form, lowercase.
    origin: Box<[u8]>,
    nodes: Vec<Node>,
    apex: usize,
    wildcard: usize,
    /// The labels directly under the apex that own data (`ns`, instances,
    /// `*`), in wire form (length byte, lowercase), to their node.
    children: HashMap<Box<[u8]>, usize>,
    /// NOERROR, no answer, the SOA in authority (RFC 2308 NODATA).
    nodata: Answer,
    /// NXDOMAIN with the SOA in authority.
    nxdomain: Answer,
    refused: Answer,
}

impl Compiled {
    fn new(origin: &Name, records: &[Record], addresses: usize) -> Result<Self, ZoneError> {
        let origin_wire = name_wire(origin)?;
        let soa = records
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| rr(Owner::Name(&origin_wire), r))
            .transpose()?
            .unwrap_or_default();

        // Group records by owner, keeping the order of first appearance.
        let mut owners: Vec<(&Name, Vec<&Record>)> = Vec::new();
        for record in records {
            match owners.iter_mut().find(|(n, _)| **n == record.name) {
                Some((_, list)) => list.push(record),
                None => owners.push((&record.name, vec![record])),
            }
        }

        let mut nodes = Vec::with_capacity(owners.len());
        let mut children = HashMap::with_capacity(owners.len());
        let mut apex = None;
        let mut wildcard = None;
        for (owner, owned) in &owners {
            let node = compile_node(owner, owned, addresses)?;
            let index = nodes.len();
            nodes.push(node);
            if *owner == origin {
                apex = Some(index);
            } else {
                // Every other owner is one label under the apex.
                let wire = name_wire(owner)?;
                let label_len = usize::from(wire.first().copied().unwrap_or(0)) + 1;
                let label: Box<[u8]> = wire[..label_len].into();
                if &*label == b"\x01*" {
                    wildcard = Some(index);
                }
                children.insert(label, index);
            }
        }
        // zone() always creates both; an empty node answers NODATA if not.
        let apex = apex.unwrap_or_else(|| push_empty(&mut nodes));
        let wildcard = wildcard.unwrap_or_else(|| push_empty(&mut nodes));

        let negative = |rcode| Answer {
            rcode,
            authoritative: true,
            answer_count: 0,
            authority_count: 1,
            body: soa.clone().into_boxed_slice(),
        };
        Ok(Self {
            origin: origin_wire.into_boxed_slice(),
            nodes,
            apex,
            wildcard,
            children,
            nodata: negative(rcode::NOERROR),
            nxdomain: negative(rcode::NXDOMAIN),
            refused: Answer::empty(rcode::REFUSED, false),
        })
    }

    /// The answer to a question, by RFC 1034 section 4.3.2 as clarified by
    /// RFC 4592 for wildcards:
    ///
    /// - outside the zone, a class other than IN, or a zone transfer:
    ///   REFUSED;
    /// - a name that exists: its data, or NODATA;
    /// - a name whose closest encloser is the apex (`x.DOMAIN`,
    ///   `a.b.DOMAIN` when `b.DOMAIN` does not exist): synthesised from
    ///   `*.DOMAIN`, with NODATA for types the wildcard has no data for;
    /// - a name below an existing name other than the apex
    ///   (`a.mastodon1.DOMAIN`, `a.*.DOMAIN`): NXDOMAIN, since no wildcard
    ///   exists there.
    pub(crate) fn answer(&self, q: &Question) -> &Answer {
        if q.qclass != CLASS_IN || q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR {
            return &self.refused;
        }
        let name = q.lower_name();
        let Some(cut) = name.len().checked_sub(self.origin.len()) else {
            return &self.refused;
        };
        if name[cut..] != *self.origin {
            return &self.refused;
        }
        // The origin must start on a label boundary: "\x01a\x03com\0" ends
        // with "\x03com\0" bytes whichever way the labels fall.
        let Some(origin_label) = q
            .label_starts()
            .iter()
            .rposition(|&s| usize::from(s) == cut)
        else {
            return &self.refused;
        };
        let node = if origin_label == 0 {
            self.apex
        } else {
            let child_start = usize::from(q.label_starts()[origin_label - 1]);
            match self.children.get(&name[child_start..cut]) {
                Some(&node) if origin_label == 1 => node,
                Some(_) => return &self.nxdomain,
                None => self.wildcard,
            }
        };
        self.nodes[node]
            .by_type
            .iter()
            .find(|(t, _)| *t == q.qtype)
            .map_or(&self.nodata, |(_, answer)| answer)
    }
}

fn push_empty(nodes: &mut Vec<Node>) -> usize {
    nodes.push(Node {
        by_type: Vec::new(),
    });
    nodes.len() - 1
}

fn compile_node(owner: &Name, records: &[&Record], addresses: usize) -> Result<Node, ZoneError> {
    // The types present, in record order; ANY answers with all of them.
    let mut types: Vec<RecordType> = Vec::new();
    for record in records {
        if !types.contains(&record.record_type()) {
            types.push(record.record_type());
        }
    }
    let mut by_type = Vec::with_capacity(types.len() + 1);
    let mut any = Vec::new();
    let mut any_count: u16 = 0;
    for rtype in types {
        let mut body = Vec::new();
        let mut count: u16 = 0;
        for record in records.iter().filter(|r| r.record_type() == rtype) {
            body.extend_from_slice(&rr(Owner::Question, record)?);
            count = count.saturating_add(1);
        }
        any.extend_from_slice(&body);
        any_count = any_count.saturating_add(count);
        by_type.push((
            u16::from(rtype),
            positive(owner, rtype, addresses, count, body)?,
        ));
    }
    by_type.push((
        TYPE_ANY,
        positive(owner, RecordType::ANY, addresses, any_count, any)?,
    ));
    Ok(Node { by_type })
}

fn positive(
    owner: &Name,
    rtype: RecordType,
    addresses: usize,
    count: u16,
    body: Vec<u8>,
) -> Result<Answer, ZoneError> {
    if body.len() > MAX_BODY {
        return Err(ZoneError::TooLarge {
            addresses,
            name: owner.to_string(),
            rtype,
            len: body.len(),
        });
    }
    Ok(Answer {
        rcode: rcode::NOERROR,
        authoritative: true,
        answer_count: count,
        authority_count: 0,
        body: body.into_boxed_slice(),
    })
}

/// Where a resource record's owner name comes from.
enum Owner<'a> {
    /// A compression pointer to the question's name at offset 12.
    Question,
    /// This name, in wire form.
    Name(&'a [u8]),
}

/// One resource record in wire form; RDATA by hickory-proto, names in it
/// uncompressed.
fn rr(owner: Owner<'_>, record: &Record) -> Result<Vec<u8>, ZoneError> {
    let encode_error = |source| ZoneError::Encode {
        name: record.name.to_string(),
        rtype: record.record_type(),
        source,
    };
    let mut rdata = Vec::new();
    {
        let mut encoder = BinEncoder::new(&mut rdata);
        // Canonical form writes names in full: the bytes must not depend on
        // their offset in the message.
        encoder.set_canonical_form(true);
        record.data.emit(&mut encoder).map_err(encode_error)?;
    }
    let rdlength = u16::try_from(rdata.len())
        .map_err(|_| encode_error(ProtoError::from(format!("RDATA of {} bytes", rdata.len()))))?;
    let mut out = Vec::with_capacity(rdata.len() + 32);
    match owner {
        Owner::Question => out.extend_from_slice(&[0xc0, wire::HEADER_LEN as u8]),
        Owner::Name(wire) => out.extend_from_slice(wire),
    }
    out.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&record.ttl.to_be_bytes());
    out.extend_from_slice(&rdlength.to_be_bytes());
    out.extend_from_slice(&rdata);
    Ok(out)
}

/// A name in uncompressed, lowercase wire form.
fn name_wire(name: &Name) -> Result<Vec<u8>, ZoneError> {
    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_canonical_form(true);
    name.to_lowercase()
        .emit(&mut encoder)
        .map_err(|source| ZoneError::Name {
            name: name.to_string(),
            source,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use fedilab_profile::{DEFAULT_PROFILE_YAML, InstanceCounts, Overrides};

    use super::*;

    fn spec(instances: usize, domain: &str) -> LabSpec {
        let overrides = Overrides {
            instances: Some(InstanceCounts::Total(instances)),
            domain: Some(domain.to_owned()),
            ..Overrides::default()
        };
        LabSpec::from_yaml(DEFAULT_PROFILE_YAML, "default", &overrides).expect("valid spec")
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("ip")).collect()
    }

    #[test]
    fn the_zone_file_lists_soa_ns_and_addresses_for_every_name() {
        let zone = zone(&spec(2, "fediverse.test"), &ips(&["10.0.0.1", "fd00::1"])).expect("zone");
        let text = zone.to_zone_file();
        let serial = zone.serial();
        let expected = format!(
            "; lab zone fediverse.test. serial {serial}, written by fedilab\n\
             $ORIGIN fediverse.test.\n$TTL 60\n\
             fediverse.test. 60 IN SOA ns.fediverse.test. hostmaster.fediverse.test. {serial} 3600 600 86400 60\n\
             fediverse.test. 60 IN NS ns.fediverse.test.\n\
             fediverse.test. 60 IN A 10.0.0.1\n\
             fediverse.test. 60 IN AAAA fd00::1\n\
             ns.fediverse.test. 60 IN A 10.0.0.1\n\
             ns.fediverse.test. 60 IN AAAA fd00::1\n\
             mastodon1.fediverse.test. 60 IN A 10.0.0.1\n\
             mastodon1.fediverse.test. 60 IN AAAA fd00::1\n\
             mastodon2.fediverse.test. 60 IN A 10.0.0.1\n\
             mastodon2.fediverse.test. 60 IN AAAA fd00::1\n\
             *.fediverse.test. 60 IN A 10.0.0.1\n\
             *.fediverse.test. 60 IN AAAA fd00::1\n"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn the_serial_is_stable_and_follows_the_data() {
        let a = zone(&spec(2, "fediverse.local"), &ips(&["10.0.0.1"])).expect("zone");
        let b = zone(&spec(2, "fediverse.local"), &ips(&["10.0.0.1"])).expect("zone");
        let c = zone(&spec(3, "fediverse.local"), &ips(&["10.0.0.1"])).expect("zone");
        let d = zone(&spec(2, "fediverse.local"), &ips(&["10.0.0.2"])).expect("zone");
        assert_eq!(a.serial(), b.serial());
        assert_ne!(a.serial(), c.serial());
        assert_ne!(a.serial(), d.serial());
    }

    #[test]
    fn duplicate_addresses_are_answered_once_and_none_is_an_error() {
        let z = zone(&spec(1, "fediverse.local"), &ips(&["10.0.0.1", "10.0.0.1"])).expect("zone");
        let apex_a = z
            .records()
            .iter()
            .filter(|r| r.name == *z.origin() && r.record_type() == RecordType::A)
            .count();
        assert_eq!(apex_a, 1);
        assert!(matches!(
            zone(&spec(1, "fediverse.local"), &[]),
            Err(ZoneError::NoAddress)
        ));
    }

    #[test]
    fn a_zone_from_names_matches_the_spec_and_takes_extra_hosts() {
        let answer = ips(&["10.0.0.1"]);
        let from_spec = zone(&spec(2, "fediverse.test"), &answer).expect("zone");
        let from_names = zone_for_hosts(
            "fediverse.test",
            ["mastodon1.fediverse.test", "Mastodon2.fediverse.test."],
            &answer,
        )
        .expect("zone");
        assert_eq!(from_spec.to_zone_file(), from_names.to_zone_file());

        let with_attached = zone_for_hosts(
            "fediverse.test",
            ["mastodon1.fediverse.test", "mine.fediverse.test"],
            &answer,
        )
        .expect("zone");
        assert!(
            with_attached
                .to_zone_file()
                .contains("mine.fediverse.test. 60 IN A 10.0.0.1")
        );
        for bad in [
            "mastodon1.example.org",
            "a.b.fediverse.test",
            "fediverse.test",
        ] {
            let err = zone_for_hosts("fediverse.test", [bad], &answer).expect_err(bad);
            assert!(matches!(err, ZoneError::NotInZone { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn too_many_addresses_for_one_message_is_an_error() {
        let many: Vec<IpAddr> = (0..5000u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .collect();
        let err = zone(&spec(1, "fediverse.local"), &many).expect_err("too large");
        assert!(matches!(err, ZoneError::TooLarge { .. }), "{err}");
    }
}
