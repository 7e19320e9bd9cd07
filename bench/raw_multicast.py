"""Raw baseline of bench/discovery_time.py: one bare UDP multicast participant, nothing else.

    python bench/raw_multicast.py --id K --nodes N --iface-ip 10.231.0.K [--group G] [--port P]

Same sockets as hearthnet.discovery.udp (listen: bound to the group, joined on one
interface address, IP_MULTICAST_ALL off; send: IP_MULTICAST_IF on that address, TTL 1),
same protocol shape as the node (announce once at start, answer every newcomer at once).
Prints one JSON line when it has heard all N-1 others:
    {"id": K, "ready": <monotonic when listening>, "done": <monotonic when complete>}
and keeps answering newcomers until stdin closes or --timeout passes. It refuses any
address outside the mesh lab's 10.231.0.0/24, so it cannot multicast on a real LAN. CLOCK_MONOTONIC is
system-wide on Linux, so the parent compares these times with its own.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import select
import socket
import sys
import time

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--iface-ip", required=True)
    ap.add_argument("--group", default="239.255.42.42")
    ap.add_argument("--port", type=int, default=42424)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    if ipaddress.ip_address(args.iface_ip) not in ipaddress.ip_network("10.231.0.0/24"):
        ap.error("--iface-ip must be a mesh lab address (10.231.0.0/24): this script is meant to run "
                 "inside hearthnet.testing.netns namespaces, never on a real LAN")

    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listen.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    listen.bind((args.group, args.port))
    listen.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(args.group) + socket.inet_aton(args.iface_ip))
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.iface_ip))
    send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    send.bind((args.iface_ip, 0))
    hello = json.dumps({"raw": args.id}).encode()

    ready = time.monotonic()
    send.sendto(hello, (args.group, args.port))
    heard: set[int] = set()
    reported = False
    deadline = ready + args.timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([listen, sys.stdin], [], [], 0.5)
        if sys.stdin in readable and not sys.stdin.readline():
            break  # the parent is done with us
        if listen not in readable:
            continue
        data, _ = listen.recvfrom(2048)
        try:
            other = int(json.loads(data)["raw"])
        except (ValueError, KeyError, TypeError):
            continue
        if other == args.id or other in heard:
            continue
        heard.add(other)
        send.sendto(hello, (args.group, args.port))  # answer the newcomer now
        if not reported and len(heard) >= args.nodes - 1:
            print(json.dumps({"id": args.id, "ready": ready, "done": time.monotonic()}), flush=True)
            reported = True
    return 0 if reported else 1


if __name__ == "__main__":
    sys.exit(main())
