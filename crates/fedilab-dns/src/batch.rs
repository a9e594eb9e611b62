//! Linux only: UDP in batches, up to [`BATCH`] datagrams per `recvmmsg(2)`
//! and per `sendmmsg(2)`, as Knot DNS does.
//!
//! On loopback a DNS answer costs less than the two system calls around
//! it; batching is what takes the server past Knot's queries/s. This module
//! is the crate's only `unsafe` code: it fills the kernel's message headers
//! with pointers into buffers it owns, builds those headers on the stack
//! for each call (so nothing holding a raw pointer lives across an
//! `.await`), and goes through tokio's `try_io` so readiness stays right.
//! It knows nothing of DNS.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;

/// Receive buffer per datagram. A longer query arrives cut, flagged
/// [`Batch::cut`], and is answered FORMERR; real queries are far shorter.
const RECV_SIZE: usize = 4096;

/// Buffers for one batch: received datagrams, their senders, and one
/// response buffer per datagram.
pub(crate) struct Batch {
    recv: Box<[u8]>,
    lens: [usize; BATCH],
    cut: [bool; BATCH],
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    addr_lens: [libc::socklen_t; BATCH],
    out: Vec<Vec<u8>>,
}

impl Batch {
    pub(crate) fn new(response_capacity: usize) -> Self {
        Self {
            recv: vec![0; BATCH * RECV_SIZE].into_boxed_slice(),
            lens: [0; BATCH],
            cut: [false; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a
            // valid (AF_UNSPEC) value.
            addrs: Box::new(unsafe { mem::zeroed() }),
            addr_lens: [0; BATCH],
            out: (0..BATCH)
                .map(|_| Vec::with_capacity(response_capacity))
                .collect(),
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; how many.
    /// `WouldBlock` when none is queued.
    pub(crate) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        socket.try_io(Interest::READABLE, || {
            // SAFETY: both arrays are plain old data.
            let mut iov: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
            // One base pointer per buffer, offset per datagram: no borrow
            // taken later invalidates a pointer handed out earlier.
            let recv = self.recv.as_mut_ptr();
            let addrs = self.addrs.as_mut_ptr();
            let iov_base = iov.as_mut_ptr();
            for (i, hdr) in hdrs.iter_mut().enumerate() {
                let vec = iov_base.wrapping_add(i);
                // SAFETY: i < BATCH, so `vec` is in `iov`.
                unsafe {
                    (*vec).iov_base = recv.wrapping_add(i * RECV_SIZE).cast();
                    (*vec).iov_len = RECV_SIZE;
                }
                hdr.msg_hdr.msg_name = addrs.wrapping_add(i).cast();
                hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as _;
                hdr.msg_hdr.msg_iov = vec;
                hdr.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every header points at an iovec and an address
            // buffer that outlive the call, with their true sizes; the
            // iovecs point at disjoint RECV_SIZE slices of `self.recv`.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            for (i, hdr) in hdrs.iter().enumerate().take(n) {
                self.lens[i] = (hdr.msg_len as usize).min(RECV_SIZE);
                self.cut[i] = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                self.addr_lens[i] = hdr.msg_hdr.msg_namelen;
            }
            Ok(n)
        })
    }

    /// Datagram `i` of the last [`Batch::recv`], whether it was longer than
    /// its buffer and arrived cut, and the buffer for its response.
    pub(crate) fn slot(&mut self, i: usize) -> (&[u8], bool, &mut Vec<u8>) {
        let start = i * RECV_SIZE;
        (
            &self.recv[start..start + self.lens[i]],
            self.cut[i],
            &mut self.out[i],
        )
    }

    /// Sends the responses of `which` (datagram indices, in order) to their
    /// datagrams' senders, without blocking. How many of `which` were sent,
    /// from the first: `WouldBlock` when the socket buffer is full, another
    /// error when the first one could not be sent.
    pub(crate) fn send(&self, socket: &UdpSocket, which: &[usize]) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let count = which.len().min(BATCH);
        socket.try_io(Interest::WRITABLE, || {
            // SAFETY: both arrays are plain old data.
            let mut iov: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
            for (slot, &i) in which.iter().take(count).enumerate() {
                let out = &self.out[i];
                iov[slot].iov_base = out.as_ptr().cast_mut().cast();
                iov[slot].iov_len = out.len();
            }
            let iov_base = iov.as_mut_ptr();
            let addrs = self.addrs.as_ptr();
            for (slot, (&i, hdr)) in which.iter().zip(hdrs.iter_mut()).take(count).enumerate() {
                hdr.msg_hdr.msg_name = addrs.wrapping_add(i).cast_mut().cast();
                hdr.msg_hdr.msg_namelen = self.addr_lens[i];
                hdr.msg_hdr.msg_iov = iov_base.wrapping_add(slot);
                hdr.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first `count` headers point at iovecs and
            // addresses that outlive the call, with their true lengths; the
            // kernel only reads through them for sendmmsg.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })
    }
}
