//! The hot path: read a query's header, question and OPT record straight
//! from the packet, and write the response around a precomputed [`Answer`].
//!
//! No allocation, no I/O, no panics on any input: every read is bounds
//! checked, and a packet that is not a query we can answer is either
//! dropped (no readable header, or a response) or answered FORMERR/NOTIMP.
//! The zone decides what to answer ([`Compiled::answer`]); this module only
//! frames it.

use crate::MAX_UDP_PAYLOAD;
use crate::zone::{Answer, Compiled, rcode};

/// The DNS header's length.
pub(crate) const HEADER_LEN: usize = 12;
/// The longest question: a 255-byte name, type and class.
pub(crate) const MAX_QUESTION_LEN: usize = 255 + 4;
/// Our OPT record: root owner, type, class, TTL, empty RDATA.
pub(crate) const OPT_LEN: usize = 11;
/// UDP responses without EDNS are limited to 512 bytes (RFC 1035).
const CLASSIC_UDP_PAYLOAD: usize = 512;

const TYPE_OPT: u16 = 41;
const MAX_NAME_LEN: usize = 255;
/// A name of 255 bytes has at most 127 labels and the root.
const MAX_LABELS: usize = 128;

// Header flag bits (RFC 1035 4.1.1, RFC 4035 3.2).
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;
const OPCODE_MASK: u16 = 0x7800;
const OPCODE_QUERY: u16 = 0;
/// EDNS DO bit in the OPT TTL's flags half.
const EDNS_DO: u16 = 0x8000;

/// The transport a query came over: it sets the response size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// UDP: 512 bytes, or the EDNS payload size up to [`MAX_UDP_PAYLOAD`].
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// What [`respond`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response was appended.
    Reply {
        /// The query type, when the question could be read.
        qtype: Option<u16>,
        /// The response code, extended (BADVERS is 16).
        rcode: u16,
        /// The answer did not fit and was sent with TC set.
        truncated: bool,
    },
    /// Nothing to send: no readable header, or not a query.
    Drop,
}

/// A parsed question: the name lowercased, with its label offsets.
pub(crate) struct Question {
    lower: [u8; MAX_NAME_LEN],
    len: usize,
    starts: [u8; MAX_LABELS],
    labels: usize,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
}

impl Question {
    /// The name in wire form, lowercase, root label included.
    pub(crate) fn lower_name(&self) -> &[u8] {
        &self.lower[..self.len]
    }

    /// The offset of each label in [`Self::lower_name`], root included.
    pub(crate) fn label_starts(&self) -> &[u8] {
        &self.starts[..self.labels]
    }
}

/// Reads the question starting at offset 12. Returns it and the offset
/// just past it, or `None` when it is malformed (a compression pointer, an
/// extended label type, a name over 255 bytes, or not enough bytes).
fn parse_question(packet: &[u8]) -> Option<(Question, usize)> {
    let mut q = Question {
        lower: [0; MAX_NAME_LEN],
        len: 0,
        starts: [0; MAX_LABELS],
        labels: 0,
        qtype: 0,
        qclass: 0,
    };
    let mut pos = HEADER_LEN;
    loop {
        let label_len = usize::from(*packet.get(pos)?);
        // 0x40..=0xff are compression pointers and extended label types,
        // neither of which belongs in a question at offset 12.
        if label_len > 63 || q.labels == MAX_LABELS || q.len + label_len + 1 > MAX_NAME_LEN {
            return None;
        }
        // q.len < 255 here, checked above.
        q.starts[q.labels] = q.len as u8;
        q.labels += 1;
        let label = packet.get(pos + 1..pos + 1 + label_len)?;
        q.lower[q.len] = label_len as u8;
        for (dst, src) in q.lower[q.len + 1..q.len + 1 + label_len]
            .iter_mut()
            .zip(label)
        {
            *dst = src.to_ascii_lowercase();
        }
        q.len += label_len + 1;
        pos += label_len + 1;
        if label_len == 0 {
            break;
        }
    }
    q.qtype = read_u16(packet, pos)?;
    q.qclass = read_u16(packet, pos + 2)?;
    Some((q, pos + 4))
}

/// The requester's EDNS: what its OPT record said.
#[derive(Debug, Clone, Copy)]
struct Edns {
    payload: u16,
    version: u8,
    dnssec_ok: bool,
}

/// Walks `count` resource records from `pos` and returns the OPT record's
/// fields, if there is one. `Err` for a malformed section or a second OPT
/// (RFC 6891 6.1.1: FORMERR).
fn parse_additional(packet: &[u8], mut pos: usize, count: u16) -> Result<Option<Edns>, ()> {
    let mut edns = None;
    for _ in 0..count {
        let owner_start = pos;
        pos = skip_name(packet, pos).ok_or(())?;
        let rtype = read_u16(packet, pos).ok_or(())?;
        let class = read_u16(packet, pos + 2).ok_or(())?;
        let ttl_high = read_u16(packet, pos + 4).ok_or(())?;
        let ttl_low = read_u16(packet, pos + 6).ok_or(())?;
        let rdlength = usize::from(read_u16(packet, pos + 8).ok_or(())?);
        pos += 10;
        if packet.len() < pos + rdlength {
            return Err(());
        }
        pos += rdlength;
        if rtype == TYPE_OPT {
            // The OPT owner is the root; there is only one.
            if edns.is_some() || packet.get(owner_start) != Some(&0) {
                return Err(());
            }
            edns = Some(Edns {
                payload: class,
                version: (ttl_high & 0xff) as u8,
                dnssec_ok: ttl_low & EDNS_DO != 0,
            });
        }
    }
    Ok(edns)
}

/// Skips a possibly compressed name; the offset past it.
fn skip_name(packet: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *packet.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            1..=63 => pos += usize::from(len) + 1,
            // A pointer ends the name where it stands.
            0xc0..=0xff => {
                packet.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

fn read_u16(packet: &[u8], pos: usize) -> Option<u16> {
    let bytes = packet.get(pos..pos + 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Answers `packet` from `zone`, appending the response to `out`.
///
/// Never panics and never allocates beyond `out`'s growth.
pub(crate) fn respond(
    packet: &[u8],
    zone: &Compiled,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    let Some(header) = packet.get(..HEADER_LEN) else {
        return Outcome::Drop;
    };
    let id = u16::from_be_bytes([header[0], header[1]]);
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & FLAG_QR != 0 {
        // A response: answering it could start a loop between two servers.
        return Outcome::Drop;
    }
    let counts = |i: usize| u16::from_be_bytes([header[4 + 2 * i], header[5 + 2 * i]]);
    let (qdcount, ancount, nscount, arcount) = (counts(0), counts(1), counts(2), counts(3));
    // Copied into every response: opcode, RD and CD (RFC 1035, RFC 4035).
    let echoed = flags & (OPCODE_MASK | FLAG_RD | FLAG_CD);

    if flags & OPCODE_MASK != OPCODE_QUERY {
        write_bare(out, id, echoed, rcode::NOTIMP);
        return reply(None, rcode::NOTIMP, false);
    }
    if qdcount != 1 || ancount != 0 || nscount != 0 {
        write_bare(out, id, echoed, rcode::FORMERR);
        return reply(None, rcode::FORMERR, false);
    }
    let Some((question, question_end)) = parse_question(packet) else {
        write_bare(out, id, echoed, rcode::FORMERR);
        return reply(None, rcode::FORMERR, false);
    };
    let qtype = Some(question.qtype);
    let Ok(edns) = parse_additional(packet, question_end, arcount) else {
        write_bare(out, id, echoed, rcode::FORMERR);
        return reply(qtype, rcode::FORMERR, false);
    };
    let question_bytes = &packet[HEADER_LEN..question_end];

    if let Some(e) = edns.filter(|e| e.version != 0) {
        // RFC 6891 6.1.3: we speak EDNS version 0 only.
        let start = out.len();
        write_header(out, id, echoed, rcode::BADVERS, 1, 0, 0, 1);
        out.extend_from_slice(question_bytes);
        write_opt(out, rcode::BADVERS, e.dnssec_ok);
        debug_assert!(out.len() > start);
        return reply(qtype, rcode::BADVERS, false);
    }

    let answer: &Answer = zone.answer(&question);
    let limit = match (transport, edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => CLASSIC_UDP_PAYLOAD,
        (Transport::Udp, Some(e)) => {
            usize::from(e.payload).clamp(CLASSIC_UDP_PAYLOAD, usize::from(MAX_UDP_PAYLOAD))
        }
    };
    let opt_len = if edns.is_some() { OPT_LEN } else { 0 };
    let full_len = HEADER_LEN + question_bytes.len() + answer.body.len() + opt_len;
    let truncated = full_len > limit;
    let mut response_flags = echoed;
    if answer.authoritative {
        response_flags |= FLAG_AA;
    }
    let (answer_count, authority_count) = if truncated {
        // RFC 2181 9: the answer does not fit, so send none of it and let
        // the client retry over TCP.
        response_flags |= FLAG_TC;
        (0, 0)
    } else {
        (answer.answer_count, answer.authority_count)
    };
    write_header(
        out,
        id,
        response_flags,
        answer.rcode,
        1,
        answer_count,
        authority_count,
        u16::from(edns.is_some()),
    );
    out.extend_from_slice(question_bytes);
    if !truncated {
        out.extend_from_slice(&answer.body);
    }
    if let Some(e) = edns {
        write_opt(out, answer.rcode, e.dnssec_ok);
    }
    reply(qtype, answer.rcode, truncated)
}

/// Answers FORMERR to a packet that cannot be read whole (it arrived cut),
/// or drops it like [`respond`] would: no header, or not a query.
pub(crate) fn formerr(packet: &[u8], out: &mut Vec<u8>) -> Outcome {
    let Some(header) = packet.get(..HEADER_LEN) else {
        return Outcome::Drop;
    };
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & FLAG_QR != 0 {
        return Outcome::Drop;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    write_bare(
        out,
        id,
        flags & (OPCODE_MASK | FLAG_RD | FLAG_CD),
        rcode::FORMERR,
    );
    reply(None, rcode::FORMERR, false)
}

fn reply(qtype: Option<u16>, rcode: u16, truncated: bool) -> Outcome {
    Outcome::Reply {
        qtype,
        rcode,
        truncated,
    }
}

/// A header-only response (FORMERR, NOTIMP): no question, no records.
fn write_bare(out: &mut Vec<u8>, id: u16, flags: u16, rcode: u16) {
    write_header(out, id, flags, rcode, 0, 0, 0, 0);
}

#[allow(clippy::too_many_arguments)]
fn write_header(
    out: &mut Vec<u8>,
    id: u16,
    flags: u16,
    rcode: u16,
    qd: u16,
    an: u16,
    ns: u16,
    ar: u16,
) {
    // QR set, RA never (we do not recurse), the low four bits of the rcode.
    let flags = FLAG_QR | flags | (rcode & 0x0f);
    for field in [id, flags, qd, an, ns, ar] {
        out.extend_from_slice(&field.to_be_bytes());
    }
}

/// Our OPT record: the payload we accept, the upper bits of the rcode,
/// version 0, DO echoed (RFC 3225), no options.
fn write_opt(out: &mut Vec<u8>, rcode: u16, dnssec_ok: bool) {
    out.push(0); // root owner
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    out.push((rcode >> 4) as u8);
    out.push(0); // version
    out.extend_from_slice(&(if dnssec_ok { EDNS_DO } else { 0 }).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // RDLENGTH
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use fedilab_profile::{DEFAULT_PROFILE_YAML, LabSpec, Overrides};
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;

    fn lab_zone(answer: &[&str]) -> crate::Zone {
        let spec = LabSpec::from_yaml(DEFAULT_PROFILE_YAML, "default", &Overrides::default())
            .expect("default profile");
        let answer: Vec<IpAddr> = answer.iter().map(|a| a.parse().expect("ip")).collect();
        crate::zone(&spec, &answer).expect("zone")
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.edns = Some(e);
        }
        m.to_vec().expect("encode")
    }

    fn ask(zone: &crate::Zone, packet: &[u8], transport: Transport) -> (Outcome, Message) {
        let mut out = Vec::new();
        let outcome = respond(packet, &zone.compiled, transport, &mut out);
        let message = Message::from_vec(&out).expect("our response parses");
        (outcome, message)
    }

    #[test]
    fn answers_an_instance_with_its_address_and_echoes_the_header() {
        let zone = lab_zone(&["10.0.0.1"]);
        let (_, m) = ask(
            &zone,
            &query("MASTODON1.Fediverse.Local.", RecordType::A, None),
            Transport::Udp,
        );
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative);
        assert!(m.metadata.recursion_desired);
        assert!(!m.metadata.recursion_available);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        // The question comes back as asked, case and all.
        assert_eq!(
            m.queries[0].name().to_string(),
            "MASTODON1.Fediverse.Local."
        );
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name.to_string(), "MASTODON1.Fediverse.Local.");
        assert_eq!(m.answers[0].data, RData::A("10.0.0.1".parse().expect("ip")));
        assert!(m.edns.is_none());
    }

    #[test]
    fn echoes_edns_with_our_payload_size() {
        let zone = lab_zone(&["10.0.0.1"]);
        let (_, m) = ask(
            &zone,
            &query("fediverse.local.", RecordType::SOA, Some(4096)),
            Transport::Udp,
        );
        let edns = m.edns.expect("OPT in the response");
        assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn names_below_an_existing_name_are_nxdomain_and_wildcard_names_are_not() {
        let zone = lab_zone(&["10.0.0.1"]);
        let rcode = |name: &str, t| {
            let (_, m) = ask(&zone, &query(name, t, None), Transport::Udp);
            m.metadata.response_code
        };
        assert_eq!(
            rcode("a.b.c.fediverse.local.", RecordType::A),
            ResponseCode::NoError
        );
        assert_eq!(
            rcode("x.fediverse.local.", RecordType::TXT),
            ResponseCode::NoError
        );
        // RFC 4592 2.2.1: the wildcard does not reach below existing names.
        assert_eq!(
            rcode("a.mastodon1.fediverse.local.", RecordType::A),
            ResponseCode::NXDomain
        );
        assert_eq!(
            rcode("ghost.*.fediverse.local.", RecordType::A),
            ResponseCode::NXDomain
        );
        // Label boundaries, not byte suffixes.
        assert_eq!(
            rcode("xfediverse.local.", RecordType::A),
            ResponseCode::Refused
        );
        assert_eq!(rcode("local.", RecordType::A), ResponseCode::Refused);
        assert_eq!(rcode(".", RecordType::NS), ResponseCode::Refused);
    }

    #[test]
    fn a_label_that_hides_the_origin_in_its_bytes_is_refused() {
        let zone = lab_zone(&["10.0.0.1"]);
        // One label "a\x09fediverse" then "local": its last bytes spell the
        // origin's wire form, but not on a label boundary.
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(b"\x0ba\x09fediverse\x05local\x00");
        packet.extend_from_slice(&[0, 1, 0, 1]);
        let (_, m) = ask(&zone, &packet, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
    }

    #[test]
    fn truncates_over_udp_only() {
        let many: Vec<String> = (1..=60).map(|i| format!("10.0.1.{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let zone = lab_zone(&refs);
        let packet = query("mastodon2.fediverse.local.", RecordType::A, None);
        let (outcome, m) = ask(&zone, &packet, Transport::Udp);
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        assert!(matches!(
            outcome,
            Outcome::Reply {
                truncated: true,
                ..
            }
        ));
        let (_, m) = ask(&zone, &packet, Transport::Tcp);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 60);
        // With EDNS the same answer fits in 1232 bytes.
        let packet = query("mastodon2.fediverse.local.", RecordType::A, Some(1232));
        let (_, m) = ask(&zone, &packet, Transport::Udp);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 60);
    }

    #[test]
    fn formerr_notimp_badvers_and_drops() {
        let zone = lab_zone(&["10.0.0.1"]);
        let mut out = Vec::new();
        assert_eq!(
            respond(&[1, 2, 3], &zone.compiled, Transport::Udp, &mut out),
            Outcome::Drop
        );
        assert!(out.is_empty());

        // A response is never answered.
        let mut packet = query("fediverse.local.", RecordType::A, None);
        packet[2] |= 0x80;
        assert_eq!(
            respond(&packet, &zone.compiled, Transport::Udp, &mut out),
            Outcome::Drop
        );

        // NOTIFY (opcode 4).
        let mut packet = query("fediverse.local.", RecordType::SOA, None);
        packet[2] |= 4 << 3;
        let (_, m) = ask(&zone, &packet, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(m.metadata.op_code, OpCode::Notify);

        // A label running past the end.
        let mut packet = query("fediverse.local.", RecordType::A, None);
        packet.truncate(20);
        let (_, m) = ask(&zone, &packet, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

        // A compression pointer in the question.
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1];
        let (_, m) = ask(&zone, &packet, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

        // Two questions.
        packet[5] = 2;
        let (_, m) = ask(&zone, &packet, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

        // EDNS version 1.
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("fediverse.local.").expect("n"),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.set_version(1);
        m.edns = Some(e);
        let (outcome, m) = ask(&zone, &m.to_vec().expect("encode"), Transport::Udp);
        // 16 is BADVERS in an OPT and BADSIG in a TSIG; hickory says BADSIG.
        assert_eq!(u16::from(m.metadata.response_code), rcode::BADVERS);
        assert!(matches!(
            outcome,
            Outcome::Reply {
                rcode: rcode::BADVERS,
                ..
            }
        ));
    }

    #[test]
    fn random_input_never_panics() {
        let zone = lab_zone(&["10.0.0.1", "fd00::1"]);
        let base = query("mastodon1.fediverse.local.", RecordType::A, Some(1232));
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for round in 0..20_000 {
            let mut packet = if round % 2 == 0 {
                base.clone()
            } else {
                (0..(next() % 80)).map(|_| next() as u8).collect()
            };
            if !packet.is_empty() {
                for _ in 0..(next() % 4) {
                    let i = (next() as usize) % packet.len();
                    packet[i] = next() as u8;
                }
                packet.truncate((next() as usize) % (packet.len() + 1));
            }
            out.clear();
            let _ = respond(&packet, &zone.compiled, Transport::Udp, &mut out);
            assert!(out.len() <= usize::from(MAX_UDP_PAYLOAD));
        }
    }
}
