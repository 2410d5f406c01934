#!/usr/bin/env python3
"""Sends the ECS queries of a dnsperf -B file to one or two servers and reports, per server,
the median ECS scope prefix of the answers and how often the two servers chose the same
address.

  scope.py QUERIES.bin COUNT HOST:PORT [HOST:PORT]
"""
import socket
import statistics
import struct
import sys


def read_queries(path, count):
    data = open(path, "rb").read()
    out, at = [], 0
    while at + 2 <= len(data) and len(out) < count:
        n = struct.unpack(">H", data[at:at + 2])[0]
        out.append(data[at + 2:at + 2 + n])
        at += 2 + n
    return out


def skip_name(b, at):
    while True:
        n = b[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:
            return at + 2
        at += 1 + n


def parse(resp):
    """(first A address, ECS scope) of a response."""
    qd, an, ns, ar = struct.unpack(">HHHH", resp[4:12])
    at = 12
    for _ in range(qd):
        at = skip_name(resp, at) + 4
    addr, scope = None, None
    for i in range(an + ns + ar):
        at = skip_name(resp, at)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", resp[at:at + 10])
        rdata = resp[at + 10:at + 10 + rdlen]
        at += 10 + rdlen
        if rtype == 1 and addr is None and i < an:
            addr = socket.inet_ntoa(rdata)
        if rtype == 41:
            o = 0
            while o + 4 <= len(rdata):
                code, olen = struct.unpack(">HH", rdata[o:o + 4])
                if code == 8:
                    scope = rdata[o + 7]
                o += 4 + olen
    return addr, scope


def ask(sock, server, q):
    for _ in range(3):
        sock.sendto(q, server)
        try:
            return parse(sock.recvfrom(4096)[0])
        except socket.timeout:
            continue
    return None, None


def main():
    queries = read_queries(sys.argv[1], int(sys.argv[2]))
    servers = []
    for s in sys.argv[3:]:
        host, port = s.rsplit(":", 1)
        servers.append((host, int(port)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    results = [[ask(sock, srv, q) for q in queries] for srv in servers]
    for srv, res in zip(servers, results):
        scopes = [s for _, s in res if s is not None]
        print(f"{srv[0]}:{srv[1]} answers={len(scopes)} median_scope=/{statistics.median(scopes):g} "
              f"mean_scope=/{statistics.mean(scopes):.1f}")
    if len(results) == 2:
        same = sum(1 for a, b in zip(*results) if a[0] is not None and a[0] == b[0])
        print(f"same address from both: {same}/{len(queries)} ({100.0 * same / len(queries):.1f}%)")


if __name__ == "__main__":
    main()
