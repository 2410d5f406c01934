#!/usr/bin/env python3
"""Writes dnsperf query files for the geo-DNS benchmark.

  queries.py plain OUT            text file: "www.example.test A" (a static answer)
  queries.py geo OUT N SEED       binary file (dnsperf -B: 2-byte length + message) of N queries
                                  for cdn.example.test A, each with an EDNS Client Subnet
                                  option for a random public IPv4 /24
"""
import random
import struct
import sys


def name_wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def public_slash24(rng):
    while True:
        a = rng.randrange(1, 224)
        b = rng.randrange(0, 256)
        if a in (10, 127) or (a == 172 and 16 <= b < 32) or (a == 192 and b == 168) \
                or (a == 169 and b == 254) or (a == 100 and 64 <= b < 128):
            continue
        return bytes([a, b, rng.randrange(0, 256)])


def geo_query(qid, subnet):
    header = struct.pack(">HHHHHH", qid, 0x0000, 1, 0, 0, 1)
    question = name_wire("cdn.example.test") + struct.pack(">HH", 1, 1)
    ecs = struct.pack(">HBB", 1, 24, 0) + subnet
    option = struct.pack(">HH", 8, len(ecs)) + ecs
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(option)) + option
    return header + question + opt


def main():
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "plain":
        with open(out, "w") as f:
            f.write("www.example.test A\n")
        return
    n, seed = int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    with open(out, "wb") as f:
        for i in range(n):
            msg = geo_query(i & 0xFFFF, public_slash24(rng))
            f.write(struct.pack(">H", len(msg)) + msg)


if __name__ == "__main__":
    main()
