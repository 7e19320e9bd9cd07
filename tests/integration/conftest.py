from __future__ import annotations

import pytest

from hearthnet.testing.nodes import Node


@pytest.fixture
def make_node(tmp_path):
    nodes: list[Node] = []

    def make(name: str = "node") -> Node:
        node = Node(tmp_path / f"{name}{len(nodes)}", name)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.cleanup()
