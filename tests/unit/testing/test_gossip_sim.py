"""The gossip simulation (hearthnet/testing/gossip_sim.py) converges, and its rounds stay
within a small factor of log2(N), for the gateway's rule and the anti-entropy comparison."""
from __future__ import annotations

import random

import pytest

from hearthnet.testing.gossip_sim import gateway_rounds, log2, peer_graph, simulate


@pytest.mark.parametrize("n", [16, 128, 1000])
def test_the_gateways_rule_reaches_every_node_within_log2_n_rounds(n):
    for seed in range(5):
        spread = simulate(n, seed)
        assert spread.reached == n
        assert 1 <= spread.rounds <= 2 * log2(n)


@pytest.mark.parametrize("n", [16, 128, 1000])
def test_anti_entropy_at_fanout_one_converges_in_order_log2_n(n):
    for seed in range(3):
        spread = simulate(n, seed, fanout=1)
        assert spread.reached == n
        assert spread.rounds <= 4 * log2(n)


def test_the_peer_graph_is_symmetric_and_connected_and_a_segment_is_one_hop():
    rnd = random.Random(7)
    graph = peer_graph(300, 25, 2, rnd)
    assert all(a in graph[b] for a, peers in enumerate(graph) for b in peers)
    assert all(a not in peers for a, peers in enumerate(graph))
    assert gateway_rounds(graph, 0).reached == 300
    assert set(range(1, 25)) <= set(graph[0])  # its whole LAN segment
    lone = peer_graph(20, 25, 3, rnd)  # one street: everyone in one round
    assert gateway_rounds(lone, 3).rounds == 1


def test_a_line_of_nodes_takes_its_length():
    line = [[1], [0, 2], [1, 3], [2]]
    assert gateway_rounds(line, 0).rounds == 3 and gateway_rounds(line, 1).rounds == 2
