//! The query side of the wire format: a strict, allocation-free parser for the one shape of
//! message an authoritative server answers (one question, optionally one OPT record), and the
//! writer that assembles a response from the query's own question bytes and a precomputed answer.
//!
//! Why not hickory-proto's `Message` here: decoding into a `Message` allocates a `Vec` per
//! section and a `Name` per label list, and encoding re-compresses every name; on the query path
//! that is most of the cost. Answers are still encoded by hickory-proto, once, when zones load
//! (see `zone.rs`); this module only copies them. Copying the question verbatim also echoes the
//! query's name case (0x20 randomisation) for free.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Response codes used here (RFC 1035, RFC 6891).
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused.
    pub const REFUSED: u16 = 5;
    /// Bad EDNS version (extended: 16).
    pub const BADVERS: u16 = 16;
}

/// Most bytes of a wire-format name (RFC 1035 section 3.1).
pub const MAX_NAME: usize = 255;

/// The EDNS Client Subnet option of a query (RFC 7871).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The client network's address, bits beyond `source` zero.
    pub addr: IpAddr,
    /// SOURCE PREFIX-LENGTH.
    pub source: u8,
}

/// The OPT record of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub payload: u16,
    /// EDNS version.
    pub version: u8,
    /// The client subnet option, if sent.
    pub ecs: Option<ClientSubnet>,
}

/// A parsed query: offsets into the packet and the lower-cased name.
#[derive(Debug, Clone)]
pub struct Query {
    /// Message ID.
    pub id: u16,
    /// Recursion desired (copied to the response).
    pub rd: bool,
    /// Checking disabled (copied to the response).
    pub cd: bool,
    /// End of the question section (the question is `packet[12..question_end]`).
    pub question_end: usize,
    /// The query name in wire format, lower-cased.
    pub name: [u8; MAX_NAME],
    /// Length of `name`.
    pub name_len: usize,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// The OPT record, if any.
    pub edns: Option<Edns>,
}

impl Query {
    /// The lower-cased wire-format name.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// What to do with a packet that is not a well-formed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Say nothing (too short to answer, or not a query at all).
    Drop,
    /// Answer with this rcode, echoing the header (and the question, when `question_end` > 12).
    Error {
        /// The rcode.
        rcode: u16,
        /// End of the question section to echo (12: none).
        question_end: usize,
    },
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn u16(&mut self) -> Option<u16> {
        let s = self.b.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.b.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    /// Skips a possibly compressed name (in the additional section).
    fn skip_name(&mut self) -> Option<()> {
        for _ in 0..128 {
            let len = self.u8()?;
            match len {
                0 => return Some(()),
                l if l & 0xC0 == 0xC0 => {
                    self.u8()?;
                    return Some(());
                }
                l if l & 0xC0 != 0 => return None,
                l => {
                    self.bytes(l as usize)?;
                }
            }
        }
        None
    }
}

/// Parses a query. Errors say whether to answer (and with what) or drop.
pub fn parse(packet: &[u8]) -> Result<Query, Reject> {
    if packet.len() < 12 {
        return Err(Reject::Drop);
    }
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x8000 != 0 {
        // A response: never answer one (that is how reflection loops start).
        return Err(Reject::Drop);
    }
    let formerr = |question_end| Reject::Error {
        rcode: rcode::FORMERR,
        question_end,
    };
    let opcode = (flags >> 11) & 0xF;
    let count = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 {
        return Err(if opcode == 0 {
            formerr(12)
        } else {
            Reject::Error {
                rcode: rcode::NOTIMP,
                question_end: 12,
            }
        });
    }
    let mut r = Reader { b: packet, pos: 12 };
    let mut name = [0u8; MAX_NAME];
    let mut name_len = 0;
    loop {
        let Some(len) = r.u8() else {
            return Err(formerr(12));
        };
        if len == 0 {
            if name_len + 1 > MAX_NAME {
                return Err(formerr(12));
            }
            name[name_len] = 0;
            name_len += 1;
            break;
        }
        // No compression pointers or extended labels in a question.
        if len & 0xC0 != 0 || name_len + 1 + len as usize + 1 > MAX_NAME {
            return Err(formerr(12));
        }
        let Some(label) = r.bytes(len as usize) else {
            return Err(formerr(12));
        };
        name[name_len] = len;
        for (d, s) in name[name_len + 1..].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        name_len += 1 + len as usize;
    }
    let (Some(qtype), Some(qclass)) = (r.u16(), r.u16()) else {
        return Err(formerr(12));
    };
    let question_end = r.pos;
    if opcode != 0 {
        return Err(Reject::Error {
            rcode: rcode::NOTIMP,
            question_end,
        });
    }
    if an != 0 || ns != 0 {
        return Err(formerr(question_end));
    }
    let mut edns = None;
    for _ in 0..ar {
        let rec = additional(&mut r).ok_or(formerr(question_end))?;
        if let Some(e) = rec {
            if edns.is_some() {
                // RFC 6891 section 6.1.1: more than one OPT is a FORMERR.
                return Err(formerr(question_end));
            }
            edns = Some(e);
        }
    }
    Ok(Query {
        id: u16::from_be_bytes([packet[0], packet[1]]),
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        question_end,
        name,
        name_len,
        qtype,
        qclass,
        edns,
    })
}

/// Reads one additional record; `Some(edns)` for an OPT, `None` inside for anything else.
fn additional(r: &mut Reader<'_>) -> Option<Option<Edns>> {
    let name_at = r.pos;
    r.skip_name()?;
    let rtype = r.u16()?;
    let class = r.u16()?;
    let ttl = r.u32()?;
    let rdlen = r.u16()?;
    let rdata = r.bytes(rdlen as usize)?;
    if rtype != 41 {
        return Some(None);
    }
    // OPT's owner is the root.
    if r.b.get(name_at) != Some(&0) {
        return None;
    }
    let mut ecs = None;
    let mut o = Reader { b: rdata, pos: 0 };
    while o.pos < rdata.len() {
        let code = o.u16()?;
        let len = o.u16()?;
        let data = o.bytes(len as usize)?;
        if code == 8 {
            if ecs.is_some() {
                return None;
            }
            ecs = Some(client_subnet(data)?);
        }
    }
    Some(Some(Edns {
        payload: class,
        version: (ttl >> 16) as u8,
        ecs,
    }))
}

/// Parses the ECS option data (RFC 7871 section 6), with its section 7.1.1 checks.
fn client_subnet(d: &[u8]) -> Option<ClientSubnet> {
    if d.len() < 4 {
        return None;
    }
    let family = u16::from_be_bytes([d[0], d[1]]);
    let (source, scope) = (d[2], d[3]);
    let addr = &d[4..];
    if scope != 0 || addr.len() != (source as usize).div_ceil(8) {
        return None;
    }
    let ip = match family {
        1 if source <= 32 => {
            let mut b = [0u8; 4];
            b[..addr.len()].copy_from_slice(addr);
            let v = u32::from_be_bytes(b);
            if source < 32 && v & (u32::MAX >> source) != 0 {
                return None;
            }
            IpAddr::V4(Ipv4Addr::from(v))
        }
        2 if source <= 128 => {
            let mut b = [0u8; 16];
            b[..addr.len()].copy_from_slice(addr);
            let v = u128::from_be_bytes(b);
            if source < 128 && v & (u128::MAX >> source) != 0 {
                return None;
            }
            IpAddr::V6(Ipv6Addr::from(v))
        }
        _ => return None,
    };
    Some(ClientSubnet { addr: ip, source })
}

/// A precomputed answer: the sections after the question, for one owner name.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Response code (the low 4 bits go in the header).
    pub rcode: u16,
    /// Answer, authority and additional record counts.
    pub counts: [u16; 3],
    /// The encoded records, valid after a question of the same name layout.
    pub bytes: Box<[u8]>,
}

/// Everything about a response besides the answer itself.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// The query packet (its ID and question are copied).
    pub packet: &'a [u8],
    /// End of the question to copy (12: none).
    pub question_end: usize,
    /// Recursion desired, copied.
    pub rd: bool,
    /// Checking disabled, copied.
    pub cd: bool,
    /// Authoritative answer.
    pub aa: bool,
    /// Add an OPT record (the query had one).
    pub edns: bool,
    /// The ECS option to return, with its scope.
    pub ecs: Option<(ClientSubnet, u8)>,
    /// Largest response allowed (UDP payload); beyond it the answer is dropped and TC set.
    pub limit: usize,
}

/// Our UDP payload size, advertised in every OPT we send.
pub const OUR_PAYLOAD: u16 = 1232;

/// Writes the response into `out` (cleared first). Returns true when it had to be truncated.
pub fn write(out: &mut Vec<u8>, reply: &Reply<'_>, answer: &Answer) -> bool {
    let qlen = reply.question_end.saturating_sub(12);
    let opt_len = if reply.edns {
        11 + reply
            .ecs
            .map_or(0, |(e, _)| 8 + (e.source as usize).div_ceil(8))
    } else {
        0
    };
    let full = 12 + qlen + answer.bytes.len() + opt_len;
    let truncated = full > reply.limit;
    out.clear();
    out.extend_from_slice(&reply.packet[0..2]);
    let mut f1 = 0x80u8;
    if reply.aa {
        f1 |= 0x04;
    }
    if truncated {
        f1 |= 0x02;
    }
    if reply.rd {
        f1 |= 0x01;
    }
    let mut f2 = (answer.rcode & 0xF) as u8;
    if reply.cd {
        f2 |= 0x10;
    }
    out.push(f1);
    out.push(f2);
    let qd: u16 = if qlen > 0 { 1 } else { 0 };
    let [an, ns, ar] = if truncated { [0; 3] } else { answer.counts };
    let ar = ar + u16::from(reply.edns);
    for c in [qd, an, ns, ar] {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&reply.packet[12..12 + qlen]);
    if !truncated {
        out.extend_from_slice(&answer.bytes);
    }
    if reply.edns {
        out.push(0); // root owner
        out.extend_from_slice(&41u16.to_be_bytes());
        out.extend_from_slice(&OUR_PAYLOAD.to_be_bytes());
        out.push((answer.rcode >> 4) as u8); // extended rcode
        out.push(0); // version
        out.extend_from_slice(&[0, 0]); // flags (no DNSSEC here)
        match reply.ecs {
            Some((e, scope)) => {
                let alen = (e.source as usize).div_ceil(8);
                out.extend_from_slice(&((8 + alen) as u16).to_be_bytes());
                out.extend_from_slice(&8u16.to_be_bytes());
                out.extend_from_slice(&((4 + alen) as u16).to_be_bytes());
                let family: u16 = if e.addr.is_ipv4() { 1 } else { 2 };
                out.extend_from_slice(&family.to_be_bytes());
                out.push(e.source);
                out.push(scope);
                match e.addr {
                    IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..alen]),
                    IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..alen]),
                }
            }
            None => out.extend_from_slice(&0u16.to_be_bytes()),
        }
    }
    truncated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, extra: &[u8], ar: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&ar.to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(extra);
        p
    }

    const WWW: &[u8] = b"\x03WwW\x07example\x04test\x00";

    fn opt(options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0];
        o.extend_from_slice(&(options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    #[test]
    fn parses_a_plain_query_and_lowercases_the_name() {
        let p = query(WWW, 1, &[], 0);
        let q = parse(&p).unwrap();
        assert_eq!(q.name(), b"\x03www\x07example\x04test\x00");
        assert_eq!((q.qtype, q.qclass, q.id, q.rd), (1, 1, 0x1234, true));
        assert_eq!(q.question_end, p.len());
        assert!(q.edns.is_none());
    }

    #[test]
    fn parses_ecs() {
        let ecs = [0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 3];
        let p = query(WWW, 1, &opt(&ecs), 1);
        let e = parse(&p).unwrap().edns.unwrap();
        assert_eq!(e.payload, 1232);
        assert_eq!(
            e.ecs,
            Some(ClientSubnet {
                addr: "81.2.3.0".parse().unwrap(),
                source: 24
            })
        );
    }

    #[test]
    fn bad_input_is_formerr_or_dropped() {
        let formerr = |p: &[u8]| matches!(parse(p), Err(Reject::Error { rcode: 1, .. }));
        assert_eq!(parse(&[0; 11]).unwrap_err(), Reject::Drop);
        // A response is dropped.
        let mut p = query(WWW, 1, &[], 0);
        p[2] |= 0x80;
        assert_eq!(parse(&p).unwrap_err(), Reject::Drop);
        // Two questions.
        let mut p = query(WWW, 1, &[], 0);
        p[5] = 2;
        assert!(formerr(&p));
        // Truncated name, pointer in the question.
        assert!(formerr(&query(b"\x03ww", 1, &[], 0)[..15]));
        assert!(formerr(&query(b"\xc0\x0c", 1, &[], 0)));
        // Absurd additional count.
        assert!(formerr(&query(WWW, 1, &[], 0xFFFF)));
        // ECS with non-zero scope, with bits beyond the source, with a bad family or length.
        for ecs in [
            &[0, 8, 0, 7, 0, 1, 24, 8, 81, 2, 3][..],
            &[0, 8, 0, 7, 0, 1, 20, 0, 81, 2, 3][..],
            &[0, 8, 0, 7, 0, 9, 24, 0, 81, 2, 3][..],
            &[0, 8, 0, 6, 0, 1, 24, 0, 81, 2][..],
            &[0, 8, 0, 2, 0, 1][..],
        ] {
            assert!(formerr(&query(WWW, 1, &opt(ecs), 1)), "{ecs:?}");
        }
        // Two OPT records.
        let two = [opt(&[]), opt(&[])].concat();
        assert!(formerr(&query(WWW, 1, &two, 2)));
        // A name longer than 255 bytes.
        let long: Vec<u8> = (0..5)
            .flat_map(|_| {
                let mut l = vec![63u8];
                l.extend([b'a'; 63]);
                l
            })
            .chain([0])
            .collect();
        assert!(formerr(&query(&long, 1, &[], 0)));
    }

    #[test]
    fn other_opcodes_are_notimp() {
        let mut p = query(WWW, 1, &[], 0);
        p[2] |= 5 << 3; // UPDATE
        assert!(matches!(
            parse(&p),
            Err(Reject::Error {
                rcode: rcode::NOTIMP,
                ..
            })
        ));
    }

    #[test]
    fn write_copies_the_question_and_truncates_when_too_big() {
        let p = query(WWW, 1, &[], 0);
        let q = parse(&p).unwrap();
        let ans = Answer {
            rcode: 0,
            counts: [1, 0, 0],
            bytes: vec![0xAB; 100].into(),
        };
        let mut reply = Reply {
            packet: &p,
            question_end: q.question_end,
            rd: q.rd,
            cd: false,
            aa: true,
            edns: false,
            ecs: None,
            limit: 512,
        };
        let mut out = Vec::new();
        assert!(!write(&mut out, &reply, &ans));
        assert_eq!(&out[12..q.question_end], &p[12..q.question_end]);
        assert_eq!(out.len(), q.question_end + 100);
        assert_eq!(out[2], 0x85);
        reply.limit = 64;
        assert!(write(&mut out, &reply, &ans));
        assert_eq!(out.len(), q.question_end);
        assert_eq!(out[2] & 0x02, 0x02);
        assert_eq!(&out[6..8], &[0, 0]);
    }
}
