//! Counters of what the server answered: by query type, by response code,
//! truncations and dropped packets.
//!
//! Each worker counts into its own [`Counters`] (plain integers, no atomics
//! on the hot path); they are merged into [`Stats`] when the workers stop.

use std::collections::BTreeMap;
use std::fmt;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::wire::Outcome;

/// What a server answered while it ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    by_qtype: BTreeMap<u16, u64>,
    by_rcode: BTreeMap<u16, u64>,
    truncated: u64,
    dropped: u64,
    tcp_connections: u64,
}

impl Stats {
    /// Responses sent.
    pub fn answers(&self) -> u64 {
        self.by_rcode.values().sum()
    }

    /// Responses by query type (responses to unreadable questions, FORMERR
    /// or NOTIMP, have none and are not counted here).
    pub fn by_qtype(&self) -> impl Iterator<Item = (RecordType, u64)> + '_ {
        self.by_qtype
            .iter()
            .map(|(&t, &n)| (RecordType::from(t), n))
    }

    /// Responses by response code.
    pub fn by_rcode(&self) -> impl Iterator<Item = (ResponseCode, u64)> + '_ {
        self.by_rcode
            .iter()
            .map(|(&r, &n)| (<ResponseCode as From<u16>>::from(r), n))
    }

    /// Responses of one code.
    pub fn rcode(&self, rcode: ResponseCode) -> u64 {
        self.by_rcode.get(&u16::from(rcode)).copied().unwrap_or(0)
    }

    /// UDP responses sent with TC set because the answer did not fit.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Packets dropped unanswered: shorter than a header, or responses.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// TCP connections accepted.
    pub fn tcp_connections(&self) -> u64 {
        self.tcp_connections
    }

    pub(crate) fn merge(&mut self, counters: &Counters) {
        for (qtype, &n) in counters.qtype_low.iter().enumerate() {
            if n > 0 {
                *self.by_qtype.entry(qtype as u16).or_default() += n;
            }
        }
        for (&qtype, &n) in &counters.qtype_high {
            *self.by_qtype.entry(qtype).or_default() += n;
        }
        for (rcode, &n) in counters.rcode.iter().enumerate() {
            if n > 0 {
                *self.by_rcode.entry(rcode as u16).or_default() += n;
            }
        }
        self.truncated += counters.truncated;
        self.dropped += counters.dropped;
        self.tcp_connections += counters.tcp_connections;
    }
}

impl fmt::Display for Stats {
    /// `12 answers (A 10, AAAA 2; NOERROR 11, REFUSED 1), 0 truncated, 3 dropped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answers (", self.answers())?;
        let mut sep = "";
        for (t, n) in self.by_qtype() {
            write!(f, "{sep}{t} {n}")?;
            sep = ", ";
        }
        sep = if sep.is_empty() { "" } else { "; " };
        for (&r, &n) in &self.by_rcode {
            write!(f, "{sep}{} {n}", RcodeName(r))?;
            sep = ", ";
        }
        write!(
            f,
            "), {} truncated, {} dropped, {} TCP connections",
            self.truncated, self.dropped, self.tcp_connections
        )
    }
}

/// A response code's mnemonic, as dig prints it. 16 is BADVERS here (hickory
/// calls it BADSIG, its TSIG meaning): this server only sends it in an OPT.
struct RcodeName(u16);

impl fmt::Display for RcodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            16 => "BADVERS",
            other => return write!(f, "RCODE{other}"),
        };
        f.write_str(name)
    }
}

/// One worker's counters.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    qtype_low: Box<[u64; 256]>,
    qtype_high: BTreeMap<u16, u64>,
    /// Indexed by the extended rcode; the codes we send are all below 32.
    rcode: [u64; 32],
    truncated: u64,
    dropped: u64,
    pub(crate) tcp_connections: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            qtype_low: Box::new([0; 256]),
            qtype_high: BTreeMap::new(),
            rcode: [0; 32],
            truncated: 0,
            dropped: 0,
            tcp_connections: 0,
        }
    }
}

impl Counters {
    /// Counts one outcome of [`crate::wire::respond`].
    #[inline]
    pub(crate) fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Drop => self.dropped += 1,
            Outcome::Reply {
                qtype,
                rcode,
                truncated,
            } => {
                match qtype {
                    Some(t) if t < 256 => self.qtype_low[usize::from(t)] += 1,
                    Some(t) => *self.qtype_high.entry(t).or_default() += 1,
                    None => {}
                }
                if let Some(n) = self.rcode.get_mut(usize::from(rcode)) {
                    *n += 1;
                }
                self.truncated += u64::from(truncated);
            }
        }
    }

    /// Adds another worker's counts to these.
    pub(crate) fn add(&mut self, other: &Counters) {
        for (mine, theirs) in self.qtype_low.iter_mut().zip(other.qtype_low.iter()) {
            *mine += theirs;
        }
        for (&qtype, &n) in &other.qtype_high {
            *self.qtype_high.entry(qtype).or_default() += n;
        }
        for (mine, theirs) in self.rcode.iter_mut().zip(other.rcode.iter()) {
            *mine += theirs;
        }
        self.truncated += other.truncated;
        self.dropped += other.dropped;
        self.tcp_connections += other.tcp_connections;
    }

    /// A reply that could not be sent counts as dropped instead.
    pub(crate) fn unsent(&mut self) {
        self.dropped += 1;
    }
}
