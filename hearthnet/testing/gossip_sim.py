"""A gossip simulation without processes (issue 11 point 5; bench/gossip_sim.py prints it).

The rule simulated is the gateway's (hearthnet/gateway/mesh.py): when a node's log gains
an event it runs, within GOSSIP_DELAY_SECONDS, one sync round with *every* peer it knows
that is a current member; a round goes both ways (push and pull, hearthnet/sync.py), so
both ends hold the union afterwards, and the receiving end, whose log just gained the
event, gossips on in the next round. A simulated round is one such gossip window.

Which peers a node knows is the peer graph (`peer_graph`): nodes of one LAN segment (a
street) all find each other by multicast discovery; segments are joined by overlay peers
added by unicast (`hearthnet peer add` over WireGuard/Tailscale/Yggdrasil), `overlay` a
node, both ends adding each other. With every known peer told at once, rounds to
convergence are the graph distance from the author, so they grow like log(N)/log(degree).

For comparison (`anti_entropy_rounds`) the classic rule the gateway does *not* use: every
node, every round, syncs with `fanout` peers picked at random (push-pull rumour spreading,
about log2(N) + ln(N) rounds at fan-out 1).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

Graph = list[list[int]]  # node -> the peers it knows


def peer_graph(n: int, segment: int, overlay: int, rnd: random.Random) -> Graph:
    """`n` nodes in LAN segments of `segment` (each knows its whole segment), plus
    `overlay` unicast peers a node in other segments (symmetric). Connected: segment i is
    also linked to segment i+1 through one random pair, as a community grows street by
    street."""
    peers: list[set[int]] = [set() for _ in range(n)]
    segments = [list(range(i, min(i + segment, n))) for i in range(0, n, segment)]
    for seg in segments:
        for a in seg:
            peers[a].update(b for b in seg if b != a)
    for s, t in zip(segments, segments[1:]):
        _link(peers, rnd.choice(s), rnd.choice(t))
    if len(segments) > 1:
        for a in range(n):
            for _ in range(overlay):
                b = rnd.randrange(n)
                if b // segment != a // segment:
                    _link(peers, a, b)
    return [sorted(p) for p in peers]


def _link(peers: list[set[int]], a: int, b: int) -> None:
    peers[a].add(b)
    peers[b].add(a)


@dataclass
class Spread:
    rounds: int  # gossip windows until every node held the event
    exchanges: int  # sync rounds run in all (each a heads request at least) until all is quiet
    reached: int  # nodes holding the event at the end


def gateway_rounds(graph: Graph, source: int, max_rounds: int = 10_000) -> Spread:
    """The gateway's rule: a node that gained the event syncs with all its peers in the
    next window; a round it runs with a peer that lacks the event brings it there."""
    have = [False] * len(graph)
    have[source] = True
    news, rounds, exchanges, reached, windows = [source], 0, 0, 1, 0
    # Nodes that gained the event in the last round still run their rounds (finding equal
    # heads): counted in `exchanges`, not in `rounds`.
    while news and windows < max_rounds:
        windows += 1
        if reached < len(graph):
            rounds += 1
        gained = []
        for a in news:
            for b in graph[a]:
                exchanges += 1
                if not have[b]:
                    have[b] = True
                    gained.append(b)
        reached += len(gained)
        news = gained
    return Spread(rounds, exchanges, reached)


def anti_entropy_rounds(graph: Graph, source: int, fanout: int, rnd: random.Random,
                        max_rounds: int = 10_000) -> Spread:
    """Every node, every round, syncs (push-pull) with `fanout` random peers it knows."""
    have = [False] * len(graph)
    have[source] = True
    rounds, exchanges, reached = 0, 0, 1
    while reached < len(graph) and rounds < max_rounds:
        rounds += 1
        before = have[:]
        for a, known in enumerate(graph):
            for b in rnd.sample(known, min(fanout, len(known))):
                exchanges += 1
                if before[a] or before[b]:
                    have[a] = have[b] = True
        reached = sum(have)
    return Spread(rounds, exchanges, reached)


def simulate(n: int, seed: int, *, segment: int = 25, overlay: int = 3, fanout: int | None = None) -> Spread:
    """One event authored at a random node of a fresh random graph; `fanout` None is the
    gateway's rule, else the anti-entropy comparison."""
    rnd = random.Random(seed)
    graph = peer_graph(n, segment, overlay, rnd)
    source = rnd.randrange(n)
    if fanout is None:
        return gateway_rounds(graph, source)
    return anti_entropy_rounds(graph, source, fanout, rnd)


def log2(n: int) -> float:
    return math.log2(n) if n > 1 else 1.0
