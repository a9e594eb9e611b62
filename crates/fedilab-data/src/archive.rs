//! The backup archive of one instance: its format, its manifest, the
//! checksums of its members and the rules that refuse an archive.
//!
//! ```text
//! archive = POSIX tar (ustar), members in this order:
//!   manifest.json     Manifest: format, kind, server version, lab, domain,
//!                     instance, fedilab version, and each member's size and sha256
//!   secrets.json      the instance's generated secrets (env names -> values)
//!   database.pgdump   the database, `pg_dump -Fc`
//!   media.tar         the media directory as tar (absent when there is none)
//! ```
//!
//! A tar header carries its member's size, and the manifest (first, so a
//! restore can refuse before reading further) carries every checksum: the
//! caller spools each stream to a file through [`Digesting`] first, then
//! [`ArchiveWriter`] copies the spooled files in. [`ArchiveReader`] copies
//! each member out, checking its size and sha256 as it goes. Both work over
//! `Read`/`Write` with a fixed buffer: nothing here opens a file or holds a
//! member in memory (the manifest and the secrets are small and bounded).
//! `tar tvf FILE` lists an archive; `tar xf` unpacks it.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The archive format this fedilab writes and the newest it reads.
pub const FORMAT: u32 = 1;
/// The manifest member, always first.
pub const MANIFEST: &str = "manifest.json";
/// The secrets member.
pub const SECRETS: &str = "secrets.json";
/// The database member (PostgreSQL custom format).
pub const DATABASE: &str = "database.pgdump";
/// The media member (a tar of the media directory).
pub const MEDIA: &str = "media.tar";

/// The members an archive may hold after the manifest, in their order.
const MEMBER_ORDER: [&str; 3] = [SECRETS, DATABASE, MEDIA];
/// A bound on the small members read into memory.
const SMALL_LIMIT: u64 = 1 << 20;
const BLOCK: usize = 512;
const COPY_BUF: usize = 64 * 1024;

/// What an archive holds and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The archive format ([`FORMAT`] when written by this fedilab).
    pub format: u32,
    /// The server kind (`mastodon`).
    pub kind: String,
    /// The server's release (`v4.4.8`).
    pub server_version: String,
    /// The lab it was taken from.
    pub lab: String,
    /// That lab's domain.
    pub domain: String,
    /// The instance.
    pub instance: String,
    /// The instance's host name (its `LOCAL_DOMAIN`).
    pub host: String,
    /// The fedilab that wrote it.
    pub fedilab_version: String,
    /// When, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// The members after the manifest, in archive order.
    pub members: Vec<MemberInfo>,
}

/// One member: its name, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// [`SECRETS`], [`DATABASE`] or [`MEDIA`].
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

impl Manifest {
    /// The entry of member `name`, if the archive has it.
    pub fn member(&self, name: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The total size of the members.
    pub fn total_size(&self) -> u64 {
        self.members.iter().map(|m| m.size).sum()
    }
}

/// Size and SHA-256 of a stream, computed by [`Digesting`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDigest {
    /// Bytes written.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

impl StreamDigest {
    /// The manifest entry for a member with this digest.
    pub fn member(&self, name: &str) -> MemberInfo {
        MemberInfo {
            name: name.to_owned(),
            size: self.size,
            sha256: self.sha256.clone(),
        }
    }
}

/// A writer that passes bytes on and counts and hashes them: spool a
/// stream through it, then put its [`StreamDigest`] in the manifest.
#[derive(Debug)]
pub struct Digesting<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Digesting<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Digesting {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The inner writer and the digest of everything written.
    pub fn finish(self) -> (W, StreamDigest) {
        let digest = StreamDigest {
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        };
        (self.inner, digest)
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output failed.
    #[error("cannot write the archive")]
    Io(#[source] io::Error),
    /// The manifest lists members out of order, twice, or unknown ones.
    #[error(
        "the manifest's members must be {expected}, in that order (media optional); it has {got}"
    )]
    Members {
        /// The allowed order.
        expected: String,
        /// What the manifest lists.
        got: String,
    },
    /// A member was added out of the manifest's order.
    #[error("member {got} added where the manifest expects {expected}")]
    Order {
        /// The member the manifest lists next.
        expected: String,
        /// The member added.
        got: String,
    },
    /// A member's source was not what its spool said.
    #[error(
        "member {name} changed since it was spooled (expected {expected_size} bytes, sha256 \
         {expected_sha256}; read {size} bytes, sha256 {sha256})"
    )]
    Changed {
        /// The member.
        name: String,
        /// The size in the manifest.
        expected_size: u64,
        /// The checksum in the manifest.
        expected_sha256: String,
        /// The size read.
        size: u64,
        /// The checksum read.
        sha256: String,
    },
    /// `finish` before every member was added.
    #[error("the archive is missing member {0}")]
    Missing(String),
}

/// Writes an archive: the manifest at once, then each member in the
/// manifest's order with [`ArchiveWriter::append`], then
/// [`ArchiveWriter::finish`].
#[derive(Debug)]
pub struct ArchiveWriter<W: Write> {
    out: W,
    members: Vec<MemberInfo>,
    next: usize,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive on `out` with `manifest` as its first member; its
    /// members' tar headers carry `manifest.created_unix` as their time.
    ///
    /// # Errors
    /// [`WriteError::Members`] for a manifest whose members are not in
    /// the archive order, [`WriteError::Io`] when `out` fails.
    pub fn new(mut out: W, manifest: &Manifest) -> Result<Self, WriteError> {
        check_member_order(&manifest.members).map_err(|got| WriteError::Members {
            expected: MEMBER_ORDER.join(", "),
            got,
        })?;
        let json =
            serde_json::to_vec_pretty(manifest).map_err(|e| WriteError::Io(io::Error::other(e)))?;
        let mtime = manifest.created_unix;
        write_header(&mut out, MANIFEST, json.len() as u64, mtime).map_err(WriteError::Io)?;
        out.write_all(&json).map_err(WriteError::Io)?;
        write_padding(&mut out, json.len() as u64).map_err(WriteError::Io)?;
        Ok(ArchiveWriter {
            out,
            members: manifest.members.clone(),
            next: 0,
            mtime,
        })
    }

    /// Copies member `name` from `source`: exactly the size in the
    /// manifest, whose checksum it must have.
    ///
    /// # Errors
    /// [`WriteError::Order`] when `name` is not the next member,
    /// [`WriteError::Changed`] when `source` is shorter, longer or other
    /// than the manifest says (the archive is then unusable),
    /// [`WriteError::Io`] when reading or writing fails.
    pub fn append(&mut self, name: &str, source: &mut dyn Read) -> Result<(), WriteError> {
        let Some(info) = self.members.get(self.next).cloned() else {
            return Err(WriteError::Order {
                expected: "no further member".to_owned(),
                got: name.to_owned(),
            });
        };
        if info.name != name {
            return Err(WriteError::Order {
                expected: info.name,
                got: name.to_owned(),
            });
        }
        write_header(&mut self.out, name, info.size, self.mtime).map_err(WriteError::Io)?;
        let mut hasher = Sha256::new();
        let mut copied = 0u64;
        let mut buf = vec![0u8; COPY_BUF];
        while copied < info.size {
            let want = usize::try_from((info.size - copied).min(COPY_BUF as u64)).unwrap_or(BLOCK);
            let n = read_retry(source, &mut buf[..want]).map_err(WriteError::Io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            self.out.write_all(&buf[..n]).map_err(WriteError::Io)?;
            copied += n as u64;
        }
        // One byte more than announced means the source grew.
        let extra = read_retry(source, &mut buf[..1]).map_err(WriteError::Io)?;
        let sha256 = hex(&hasher.finalize());
        if copied != info.size || extra != 0 || sha256 != info.sha256 {
            return Err(WriteError::Changed {
                name: name.to_owned(),
                expected_size: info.size,
                expected_sha256: info.sha256,
                size: copied + extra as u64,
                sha256,
            });
        }
        write_padding(&mut self.out, info.size).map_err(WriteError::Io)?;
        self.next += 1;
        Ok(())
    }

    /// Ends the archive (two zero blocks) and returns the output, flushed.
    ///
    /// # Errors
    /// [`WriteError::Missing`] when a member of the manifest was not
    /// added, [`WriteError::Io`] when writing fails.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if let Some(missing) = self.members.get(self.next) {
            return Err(WriteError::Missing(missing.name.clone()));
        }
        self.out
            .write_all(&[0u8; 2 * BLOCK])
            .map_err(WriteError::Io)?;
        self.out.flush().map_err(WriteError::Io)?;
        Ok(self.out)
    }
}

/// `Ok` when `members` are a subsequence of [`MEMBER_ORDER`] with the
/// secrets and the database present; else the names, comma-separated.
fn check_member_order(members: &[MemberInfo]) -> Result<(), String> {
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let ok = names == [SECRETS, DATABASE] || names == MEMBER_ORDER;
    if ok {
        Ok(())
    } else {
        Err(if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        })
    }
}

fn read_retry(source: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match source.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn write_padding(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rest = (size % BLOCK as u64) as usize;
    if rest != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rest])?;
    }
    Ok(())
}

/// A ustar header for a regular file `name` (at most 100 bytes) of
/// `size` bytes, mode 0600.
fn header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = name.as_bytes();
    let len = name.len().min(100);
    h[..len].copy_from_slice(&name[..len]);
    octal(&mut h[100..108], 0o600);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size < 0o777_7777_7777 {
        octal(&mut h[124..136], size);
    } else {
        // GNU base-256 for members of 8 GiB and more.
        h[124] = 0x80;
        for (i, byte) in size.to_be_bytes().iter().enumerate() {
            h[128 + i] = *byte;
        }
    }
    octal(&mut h[136..148], mtime.min(0o777_7777_7777));
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let field = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(field.as_bytes());
    h
}

/// Writes `value` as zero-padded octal digits and a NUL into `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let bytes = text.as_bytes();
    let start = bytes.len().saturating_sub(digits);
    field[..digits].copy_from_slice(&bytes[start..]);
    field[digits] = 0;
}

fn write_header(out: &mut impl Write, name: &str, size: u64, mtime: u64) -> io::Result<()> {
    out.write_all(&header(name, size, mtime))
}

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input failed.
    #[error("cannot read the archive")]
    Io(#[source] io::Error),
    /// Where the archive writes a member, it failed.
    #[error("cannot write member {name} out of the archive")]
    Sink {
        /// The member.
        name: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Not a tar archive, or a damaged one.
    #[error("not a fedilab archive: {0}")]
    NotArchive(String),
    /// The input ended inside the archive.
    #[error("the archive ends early, inside {0} (truncated file?)")]
    Truncated(String),
    /// The manifest is not valid.
    #[error("the archive's manifest.json is not valid")]
    Manifest(#[source] serde_json::Error),
    /// Written by a newer fedilab.
    #[error(
        "the archive has format {found}, written by fedilab {by}; this fedilab reads format \
         {FORMAT} and older: use fedilab {by} or newer"
    )]
    NewerFormat {
        /// The archive's format.
        found: u32,
        /// The fedilab that wrote it.
        by: String,
    },
    /// A member other than the manifest announced.
    #[error("the archive has member {got} where its manifest announces {expected}")]
    Unexpected {
        /// What the manifest announces.
        expected: String,
        /// What the archive has.
        got: String,
    },
    /// A member's size or checksum differs from the manifest.
    #[error(
        "member {name} is damaged: the manifest says {expected_size} bytes with sha256 \
         {expected_sha256}, the archive has {size} bytes with sha256 {sha256}"
    )]
    Checksum {
        /// The member.
        name: String,
        /// The manifest's size.
        expected_size: u64,
        /// The manifest's checksum.
        expected_sha256: String,
        /// The size found.
        size: u64,
        /// The checksum found.
        sha256: String,
    },
}

/// Reads an archive: [`ArchiveReader::open`] reads the manifest, then
/// [`ArchiveReader::next_member`] copies out each member in order,
/// checking its size and checksum.
#[derive(Debug)]
pub struct ArchiveReader<R: Read> {
    input: R,
    manifest: Manifest,
    next: usize,
}

/// A tar header's name and size.
struct Header {
    name: String,
    size: u64,
}

impl<R: Read> ArchiveReader<R> {
    /// Reads the manifest (the first member).
    ///
    /// # Errors
    /// [`ReadError::NotArchive`] when the input is no tar or does not
    /// start with `manifest.json`, [`ReadError::Manifest`] when it does not
    /// parse, [`ReadError::NewerFormat`] when a newer fedilab wrote it,
    /// [`ReadError::Io`] and [`ReadError::Truncated`].
    pub fn open(mut input: R) -> Result<Self, ReadError> {
        let Some(first) = read_header(&mut input, MANIFEST)? else {
            return Err(ReadError::NotArchive(
                "it is an empty tar archive".to_owned(),
            ));
        };
        if first.name != MANIFEST {
            return Err(ReadError::NotArchive(format!(
                "its first member is {}, not {MANIFEST}",
                first.name
            )));
        }
        if first.size > SMALL_LIMIT {
            return Err(ReadError::NotArchive(format!(
                "its {MANIFEST} has {} bytes",
                first.size
            )));
        }
        let mut json = Vec::new();
        copy_exact(
            &mut input,
            &mut json,
            first.size,
            MANIFEST,
            &mut Sha256::new(),
        )?;
        skip_padding(&mut input, first.size, MANIFEST)?;
        // The format first, so a newer archive is named as such even when
        // the rest of its manifest has changed shape.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
            #[serde(default)]
            fedilab_version: String,
        }
        let format: Format = serde_json::from_slice(&json).map_err(ReadError::Manifest)?;
        if format.format > FORMAT {
            return Err(ReadError::NewerFormat {
                found: format.format,
                by: format.fedilab_version,
            });
        }
        let manifest: Manifest = serde_json::from_slice(&json).map_err(ReadError::Manifest)?;
        check_member_order(&manifest.members).map_err(|got| {
            ReadError::NotArchive(format!(
                "its manifest lists members {got}, not {}",
                MEMBER_ORDER.join(", ")
            ))
        })?;
        Ok(ArchiveReader {
            input,
            manifest,
            next: 0,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The next member's entry, without reading it.
    pub fn peek(&self) -> Option<&MemberInfo> {
        self.manifest.members.get(self.next)
    }

    /// Copies the next member into `sink`, checking its size and SHA-256
    /// against the manifest; `None` after the last one. A damaged member
    /// is reported after it was copied: treat what `sink` got as garbage
    /// then.
    ///
    /// # Errors
    /// [`ReadError::Checksum`] for a damaged member,
    /// [`ReadError::Unexpected`] for a member the manifest did not
    /// announce there, [`ReadError::Sink`] when `sink` fails,
    /// [`ReadError::Io`] and [`ReadError::Truncated`].
    pub fn next_member(&mut self, sink: &mut dyn Write) -> Result<Option<MemberInfo>, ReadError> {
        let Some(info) = self.manifest.members.get(self.next).cloned() else {
            return Ok(None);
        };
        let Some(header) = read_header(&mut self.input, &info.name)? else {
            return Err(ReadError::Truncated(info.name));
        };
        if header.name != info.name {
            return Err(ReadError::Unexpected {
                expected: info.name,
                got: header.name,
            });
        }
        let mut hasher = Sha256::new();
        copy_exact(&mut self.input, sink, header.size, &info.name, &mut hasher)?;
        skip_padding(&mut self.input, header.size, &info.name)?;
        let sha256 = hex(&hasher.finalize());
        if header.size != info.size || sha256 != info.sha256 {
            return Err(ReadError::Checksum {
                name: info.name,
                expected_size: info.size,
                expected_sha256: info.sha256,
                size: header.size,
                sha256,
            });
        }
        self.next += 1;
        Ok(Some(info))
    }

    /// Reads a small member (the secrets) into memory, checked.
    ///
    /// # Errors
    /// As [`ArchiveReader::next_member`]; [`ReadError::NotArchive`] when
    /// the member is larger than 1 MiB.
    pub fn next_small(&mut self) -> Result<Option<(MemberInfo, Vec<u8>)>, ReadError> {
        if let Some(info) = self.peek()
            && info.size > SMALL_LIMIT
        {
            return Err(ReadError::NotArchive(format!(
                "its {} has {} bytes",
                info.name, info.size
            )));
        }
        let mut buf = Vec::new();
        Ok(self.next_member(&mut buf)?.map(|info| (info, buf)))
    }
}

/// Reads one header; `None` at the end-of-archive zero block.
fn read_header(input: &mut impl Read, within: &str) -> Result<Option<Header>, ReadError> {
    let mut h = [0u8; BLOCK];
    read_full(input, &mut h, within)?;
    if h.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if &h[257..262] != b"ustar" {
        return Err(ReadError::NotArchive(
            "no tar header where one belongs".to_owned(),
        ));
    }
    let stored = parse_octal(&h[148..156])
        .ok_or_else(|| ReadError::NotArchive("a tar header has no checksum".to_owned()))?;
    let mut copy = h;
    copy[148..156].copy_from_slice(b"        ");
    let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
    if sum != stored {
        return Err(ReadError::NotArchive(
            "a tar header's checksum is wrong".to_owned(),
        ));
    }
    if h[156] != b'0' && h[156] != 0 {
        return Err(ReadError::NotArchive(format!(
            "member type {:?} (only regular files belong in it)",
            char::from(h[156])
        )));
    }
    let end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
    let name = String::from_utf8_lossy(&h[..end]).into_owned();
    let size = if h[124] & 0x80 != 0 {
        h[125..136]
            .iter()
            .fold(0u64, |acc, b| acc.wrapping_shl(8) | u64::from(*b))
    } else {
        parse_octal(&h[124..136])
            .ok_or_else(|| ReadError::NotArchive(format!("member {name} has no size")))?
    };
    Ok(Some(Header { name, size }))
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    u64::from_str_radix(text, 8).ok()
}

fn read_full(input: &mut impl Read, buf: &mut [u8], within: &str) -> Result<(), ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_retry(input, &mut buf[filled..]) {
            Ok(0) => return Err(ReadError::Truncated(within.to_owned())),
            Ok(n) => filled += n,
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(())
}

fn copy_exact(
    input: &mut impl Read,
    sink: &mut dyn Write,
    size: u64,
    name: &str,
    hasher: &mut Sha256,
) -> Result<(), ReadError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left.min(COPY_BUF as u64)).unwrap_or(BLOCK);
        let n = read_retry(input, &mut buf[..want]).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Truncated(name.to_owned()));
        }
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n])
            .map_err(|source| ReadError::Sink {
                name: name.to_owned(),
                source,
            })?;
        left -= n as u64;
    }
    Ok(())
}

fn skip_padding(input: &mut impl Read, size: u64, name: &str) -> Result<(), ReadError> {
    let rest = (size % BLOCK as u64) as usize;
    if rest != 0 {
        let mut pad = [0u8; BLOCK];
        read_full(input, &mut pad[..BLOCK - rest], name)?;
    }
    Ok(())
}

/// Why an archive does not fit an instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another server kind.
    #[error(
        "the archive holds a {archive} instance ({from}); {instance} is a {target} instance: \
         restore it into a {archive} instance"
    )]
    Kind {
        /// The archive's kind.
        archive: String,
        /// The instance's kind.
        target: String,
        /// The instance.
        instance: String,
        /// `instance I of lab L`, where the archive came from.
        from: String,
    },
    /// A newer server wrote the data.
    #[error(
        "the archive was taken from {archive_kind} {archive}, newer than {instance}'s {target}: \
         its database may hold migrations {target} does not know. Run {instance} with \
         {archive} or newer (the profile's `version`), then restore"
    )]
    NewerServer {
        /// The server kind.
        archive_kind: String,
        /// The archive's server version.
        archive: String,
        /// The instance's server version.
        target: String,
        /// The instance.
        instance: String,
    },
    /// A version that cannot be compared.
    #[error("cannot compare server versions {archive} (archive) and {target} ({instance})")]
    Version {
        /// The archive's server version.
        archive: String,
        /// The instance's server version.
        target: String,
        /// The instance.
        instance: String,
    },
}

/// The instance an archive would be restored into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTarget<'a> {
    /// Its kind (`mastodon`).
    pub kind: &'a str,
    /// Its server release (`v4.4.8`).
    pub server_version: &'a str,
    /// Its name.
    pub instance: &'a str,
}

/// Whether `manifest`'s archive may be restored into `target`: the same
/// kind, and a server release not newer than the target's (an older one
/// is migrated forward after the restore).
///
/// # Errors
/// The [`Refusal`] that says why not.
pub fn check_restore(manifest: &Manifest, target: &RestoreTarget<'_>) -> Result<(), Refusal> {
    if manifest.kind != target.kind {
        return Err(Refusal::Kind {
            archive: manifest.kind.clone(),
            target: target.kind.to_owned(),
            instance: target.instance.to_owned(),
            from: format!("instance {} of lab {}", manifest.instance, manifest.lab),
        });
    }
    let version_error = || Refusal::Version {
        archive: manifest.server_version.clone(),
        target: target.server_version.to_owned(),
        instance: target.instance.to_owned(),
    };
    let archive = release_parts(&manifest.server_version).ok_or_else(version_error)?;
    let current = release_parts(target.server_version).ok_or_else(version_error)?;
    if archive > current {
        return Err(Refusal::NewerServer {
            archive_kind: manifest.kind.clone(),
            archive: manifest.server_version.clone(),
            target: target.server_version.to_owned(),
            instance: target.instance.to_owned(),
        });
    }
    Ok(())
}

/// A release as comparable numbers: `v4.4.8` -> `[4, 4, 8]`; a
/// pre-release (`v4.5.0-beta.1`) sorts before its release. Works for
/// Misskey's `2026.5.1` and GoToSocial's `0.19.2` too.
pub fn release_parts(version: &str) -> Option<(Vec<u64>, bool)> {
    let bare = version.strip_prefix('v').unwrap_or(version);
    let (numbers, pre) = match bare.split_once('-') {
        Some((n, _)) => (n, true),
        None => (bare, false),
    };
    let parts = numbers
        .split('.')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    if parts.is_empty() {
        return None;
    }
    // (numbers, is_release): a release sorts after its pre-releases.
    Some((parts, !pre))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(data: &[u8]) -> StreamDigest {
        let mut d = Digesting::new(Vec::new());
        d.write_all(data).expect("write");
        d.finish().1
    }

    fn manifest(members: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            format: FORMAT,
            kind: "mastodon".to_owned(),
            server_version: "v4.4.8".to_owned(),
            lab: "main".to_owned(),
            domain: "fediverse.local".to_owned(),
            instance: "mastodon1".to_owned(),
            host: "mastodon1.fediverse.local".to_owned(),
            fedilab_version: "0.1.0".to_owned(),
            created_unix: 1_700_000_000,
            members: members
                .iter()
                .map(|(name, data)| digest(data).member(name))
                .collect(),
        }
    }

    fn write(members: &[(&str, &[u8])]) -> Vec<u8> {
        let m = manifest(members);
        let mut w = ArchiveWriter::new(Vec::new(), &m).expect("start");
        for (name, data) in members {
            w.append(name, &mut &data[..]).expect("append");
        }
        w.finish().expect("finish")
    }

    /// A reader that hands out at most 7 bytes per call, like a pipe.
    struct Trickle<R>(R);
    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }

    fn big() -> Vec<u8> {
        (0..200_003u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn members_come_back_in_order_with_their_checksums() {
        let db = big();
        let members: [(&str, &[u8]); 3] =
            [(SECRETS, b"{\"A\":\"b\"}"), (DATABASE, &db), (MEDIA, b"")];
        let bytes = write(&members);
        assert_eq!(bytes.len() % BLOCK, 0);
        let mut r = ArchiveReader::open(Trickle(&bytes[..])).expect("open");
        assert_eq!(r.manifest(), &manifest(&members));
        let (info, secrets) = r.next_small().expect("read").expect("secrets");
        assert_eq!(info.name, SECRETS);
        assert_eq!(secrets, b"{\"A\":\"b\"}");
        let mut out = Vec::new();
        let info = r.next_member(&mut out).expect("read").expect("db");
        assert_eq!((info.name.as_str(), info.size), (DATABASE, db.len() as u64));
        assert!(out == db);
        let mut out = Vec::new();
        assert_eq!(
            r.next_member(&mut out).expect("media").map(|i| i.name),
            Some(MEDIA.to_owned())
        );
        assert!(out.is_empty());
        assert!(r.next_member(&mut out).expect("end").is_none());
    }

    #[test]
    fn the_archive_is_a_tar_that_tar_lists() {
        // The header layout, checked field by field as tar(1) reads it.
        let bytes = write(&[(SECRETS, b"{}"), (DATABASE, b"PGDMP")]);
        assert_eq!(&bytes[..MANIFEST.len()], MANIFEST.as_bytes());
        assert_eq!(&bytes[257..263], b"ustar\0");
        assert_eq!(bytes[156], b'0');
        let sum: u32 = bytes[..BLOCK]
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(*b)
                }
            })
            .sum();
        assert_eq!(parse_octal(&bytes[148..156]), Some(u64::from(sum)));
        assert_eq!(parse_octal(&bytes[136..148]), Some(1_700_000_000));
        // Ends with two zero blocks.
        assert!(bytes[bytes.len() - 2 * BLOCK..].iter().all(|b| *b == 0));
    }

    #[test]
    fn huge_sizes_use_base_256() {
        let h = header(DATABASE, 9 << 30, 0);
        assert_eq!(h[124], 0x80);
        let mut input = &h[..];
        let parsed = read_header(&mut input, DATABASE)
            .expect("ok")
            .expect("header");
        assert_eq!(parsed.size, 9 << 30);
    }

    #[test]
    fn a_flipped_byte_is_named_as_damage_in_its_member() {
        let db = big();
        let mut bytes = write(&[(SECRETS, b"{}"), (DATABASE, &db)]);
        // Somewhere inside the database member's data.
        let at = bytes.len() - 2 * BLOCK - 1000;
        bytes[at] ^= 1;
        let mut r = ArchiveReader::open(&bytes[..]).expect("open");
        r.next_small().expect("secrets");
        let err = r.next_member(&mut io::sink()).expect_err("damaged");
        assert!(matches!(err, ReadError::Checksum { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("member database.pgdump is damaged"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_archive_says_where_it_ends() {
        let db = big();
        let bytes = write(&[(SECRETS, b"{}"), (DATABASE, &db)]);
        let cut = &bytes[..bytes.len() / 2];
        let mut r = ArchiveReader::open(cut).expect("open");
        r.next_small().expect("secrets");
        let err = r.next_member(&mut io::sink()).expect_err("truncated");
        assert_eq!(
            err.to_string(),
            "the archive ends early, inside database.pgdump (truncated file?)"
        );
    }

    #[test]
    fn a_source_that_changed_after_spooling_is_refused() {
        let m = manifest(&[(SECRETS, b"{}"), (DATABASE, b"PGDMP one")]);
        let mut w = ArchiveWriter::new(Vec::new(), &m).expect("start");
        w.append(SECRETS, &mut &b"{}"[..]).expect("secrets");
        let err = w
            .append(DATABASE, &mut &b"PGDMP one and more"[..])
            .expect_err("grew");
        assert!(matches!(err, WriteError::Changed { .. }), "{err:?}");
        let mut w = ArchiveWriter::new(Vec::new(), &m).expect("start");
        let err = w.append(DATABASE, &mut &b""[..]).expect_err("order");
        assert_eq!(
            err.to_string(),
            "member database.pgdump added where the manifest expects secrets.json"
        );
        let w = ArchiveWriter::new(Vec::new(), &m).expect("start");
        assert_eq!(
            w.finish().expect_err("missing").to_string(),
            "the archive is missing member secrets.json"
        );
        let mut bad = m.clone();
        bad.members.swap(0, 1);
        assert!(matches!(
            ArchiveWriter::new(Vec::new(), &bad),
            Err(WriteError::Members { .. })
        ));
    }

    #[test]
    fn other_files_and_newer_formats_are_not_read() {
        let err = ArchiveReader::open(&b"PGDMP\x01\x0e"[..]).expect_err("short");
        assert!(matches!(err, ReadError::Truncated(_)), "{err:?}");
        let err = ArchiveReader::open(&[b'x'; 2048][..]).expect_err("not tar");
        assert!(
            err.to_string().starts_with("not a fedilab archive"),
            "{err}"
        );

        // A tar whose first member is something else.
        let mut other = header("notes.txt", 2, 0).to_vec();
        other.extend_from_slice(b"hi");
        other.resize(3 * BLOCK, 0);
        let err = ArchiveReader::open(&other[..]).expect_err("no manifest");
        assert_eq!(
            err.to_string(),
            "not a fedilab archive: its first member is notes.txt, not manifest.json"
        );

        // Written by a future fedilab whose manifest has another shape.
        let json = br#"{"format": 2, "fedilab_version": "9.0.0", "parts": []}"#;
        let mut newer = header(MANIFEST, json.len() as u64, 0).to_vec();
        newer.extend_from_slice(json);
        newer.resize(4 * BLOCK, 0);
        let err = ArchiveReader::open(&newer[..]).expect_err("newer");
        assert_eq!(
            err.to_string(),
            "the archive has format 2, written by fedilab 9.0.0; this fedilab reads format 1 \
             and older: use fedilab 9.0.0 or newer"
        );
    }

    #[test]
    fn refusals_name_the_kind_or_the_versions() {
        let m = manifest(&[(SECRETS, b"{}"), (DATABASE, b"x")]);
        let target = |kind, version| RestoreTarget {
            kind,
            server_version: version,
            instance: "mastodon2",
        };
        assert_eq!(check_restore(&m, &target("mastodon", "v4.4.8")), Ok(()));
        assert_eq!(check_restore(&m, &target("mastodon", "v4.5.0")), Ok(()));
        let err = check_restore(&m, &target("mastodon", "v4.4.7")).expect_err("newer");
        assert!(
            err.to_string().starts_with(
                "the archive was taken from mastodon v4.4.8, newer than mastodon2's v4.4.7"
            ),
            "{err}"
        );
        let err = check_restore(&m, &target("misskey", "2026.5.1")).expect_err("kind");
        assert_eq!(
            err.to_string(),
            "the archive holds a mastodon instance (instance mastodon1 of lab main); mastodon2 \
             is a misskey instance: restore it into a mastodon instance"
        );
        let mut pre = m.clone();
        pre.server_version = "v4.5.0-beta.1".to_owned();
        assert_eq!(check_restore(&pre, &target("mastodon", "v4.5.0")), Ok(()));
        assert!(check_restore(&m, &target("mastodon", "v4.5.0-beta.1")).is_ok());
        assert!(matches!(
            check_restore(&m, &target("mastodon", "latest")),
            Err(Refusal::Version { .. })
        ));
    }
}
