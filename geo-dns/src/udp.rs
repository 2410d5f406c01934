//! The UDP serving loop: batches of datagrams in and out with `recvmmsg`/`sendmmsg` (through
//! nix's safe wrappers), so a busy server pays two system calls per batch instead of two per
//! query. Under light load a batch is one datagram and this is plain recv/send.

use crate::answer::{Catalog, Transport};
use crate::stats::Stats;
use arc_swap::ArcSwap;
use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage};
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Datagrams handled per system call at most.
const BATCH: usize = 32;
/// Largest query read; longer datagrams are dropped unanswered.
const MAX_QUERY: usize = 4096;

/// Serves `sock` until `stopping` is set (checked after every batch; `DnsServer::stop` sends
/// datagrams to wake blocked threads).
pub fn serve(sock: UdpSocket, catalog: &ArcSwap<Catalog>, stats: &Stats, stopping: &AtomicBool) {
    let fd = sock.as_raw_fd();
    let mut bufs: Box<[[u8; MAX_QUERY]; BATCH]> = Box::new([[0u8; MAX_QUERY]; BATCH]);
    let mut outs: [Vec<u8>; BATCH] = std::array::from_fn(|_| Vec::with_capacity(1232));
    let mut rx = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut tx = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let truncated = MsgFlags::MSG_TRUNC;
    let mut dests: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    while !stopping.load(Ordering::Relaxed) {
        received.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                // A datagram longer than the buffer arrives cut (MSG_TRUNC): never answer what
                // was not read whole; its slot gets no source address and is dropped below.
                Ok(msgs) => received.extend(msgs.map(|m| {
                    let addr = if m.flags.contains(truncated) {
                        None
                    } else {
                        m.address
                    };
                    (m.bytes, addr)
                })),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    // ICMP errors from earlier sends can surface here; keep serving.
                    tracing::debug!(error = %e, "dns: udp receive error");
                    continue;
                }
            }
        }
        let catalog = catalog.load();
        dests.clear();
        for (i, (len, addr)) in received.iter().enumerate() {
            stats.udp_queries.fetch_add(1, Ordering::Relaxed);
            let Some(src) = addr.as_ref().and_then(ip_of) else {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let n = dests.len();
            if catalog.respond(&bufs[i][..*len], src, Transport::Udp, stats, &mut outs[n]) {
                dests.push(*addr);
            }
        }
        drop(catalog);
        if dests.is_empty() {
            continue;
        }
        let slices: Vec<[IoSlice<'_>; 1]> = outs[..dests.len()]
            .iter()
            .map(|o| [IoSlice::new(o)])
            .collect();
        let sent = match sendmmsg(fd, &mut tx, &slices, &dests, [], MsgFlags::empty()) {
            Ok(r) => r.count(),
            Err(e) => {
                tracing::debug!(error = %e, "dns: udp batch send failed");
                0
            }
        };
        // Whatever the batch call did not take goes one by one.
        for (out, dest) in outs[sent..dests.len()].iter().zip(&dests[sent..]) {
            if let Some(to) = dest.as_ref().and_then(socket_addr_of) {
                if let Err(e) = sock.send_to(out, to) {
                    tracing::debug!(error = %e, %to, "dns: udp send failed");
                }
            }
        }
    }
}

fn socket_addr_of(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

fn ip_of(a: &SockaddrStorage) -> Option<IpAddr> {
    a.family()?;
    socket_addr_of(a).map(|s| s.ip())
}
