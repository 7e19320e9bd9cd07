"""`POST /sync/v1/digest` and ranged `/sync/v1/ids` on a real node (README "Sync"): the
digests agree with the node's own ids, only a member gets an answer, and malformed or
oversized range requests are refused with bad_request before the ledger is asked."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator

import aiohttp
import pytest

from hearthnet.identity import keys
from hearthnet.ledger.digest import MAX_DIGEST_RANGES, range_hash, split, wire_ranges
from hearthnet.testing.nodes import Node, key_of
from hearthnet.testing.peer_abuse import member_pair
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.signing import SYNC_DIGEST, SYNC_HEADS, SYNC_IDS, sign_request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[Node, Node]]:
    with member_pair(tmp_path_factory.mktemp("digest")) as nodes:
        yield nodes


def cid(node: Node) -> str:
    return node.api("/api/v1/status")["community"]["community_id"]


async def _post(node: Node, signer: keys.KeyPair, path: str, cap: str, body: Any) -> tuple[int, Any]:
    raw = json.dumps(body).encode()
    headers = sign_request(signer, cid(node), cap, "1.0", raw, to=key_of(node).node_id_full)
    headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"https://127.0.0.1:{node.port}{path}", data=raw, headers=headers, ssl=False) as r:
            return r.status, json.loads(await r.read())


def test_digests_and_ranged_ids_match_the_nodes_log(pair, tmp_path):
    a, b = pair
    target, ep = key_of(a).node_id_full, ("127.0.0.1", a.port)

    async def go():
        async with PeerClient(key_of(b), cid(a), PinStore(tmp_path / "pins.json")) as client:
            await client.get_manifest(*ep)
            heads = await client.get_signed(target, ep, "/sync/v1/heads", SYNC_HEADS)
            ranges = split(0, heads["head"], 3)
            digest = await client.post_signed(target, ep, "/sync/v1/digest", SYNC_DIGEST,
                                              {"community_id": cid(a), "ranges": wire_ranges(ranges)})
            every = await client.post_signed(target, ep, "/sync/v1/ids", SYNC_IDS, {"community_id": cid(a)})
            per_range = [await client.post_signed(target, ep, "/sync/v1/ids", SYNC_IDS,
                                                  {"community_id": cid(a), "ranges": wire_ranges([r])})
                         for r in ranges]
            return heads, ranges, digest, every, per_range

    heads, ranges, digest, every, per_range = asyncio.run(go())
    assert [(d["lamport_lo"], d["lamport_hi"]) for d in digest["ranges"]] == ranges
    assert sum(d["count"] for d in digest["ranges"]) == heads["count"] == len(every["ids"])
    for d, ids in zip(digest["ranges"], per_range):
        assert d["count"] == len(ids["ids"]) and d["hash"] == range_hash(ids["ids"])
    assert [i for ids in per_range for i in ids["ids"]] == every["ids"]  # replay order


BAD_BODIES = {
    "no ranges": {},
    "ranges empty": {"ranges": []},
    "ranges a string": {"ranges": "0-10"},
    "range a list": {"ranges": [[0, 10]]},
    "bounds reversed": {"ranges": [{"lamport_lo": 9, "lamport_hi": 1}]},
    "bound negative": {"ranges": [{"lamport_lo": -1, "lamport_hi": 1}]},
    "bound too big": {"ranges": [{"lamport_lo": 0, "lamport_hi": 2**64}]},
    "overlapping": {"ranges": [{"lamport_lo": 0, "lamport_hi": 5}, {"lamport_lo": 5, "lamport_hi": 6}]},
    "too many": {"ranges": wire_ranges((i, i) for i in range(MAX_DIGEST_RANGES + 1))},
    "extra key": {"ranges": [{"lamport_lo": 0, "lamport_hi": 5, "sql": "x"}]},
}


def test_malformed_and_oversized_range_requests_are_bad_request(pair):
    a, b = pair
    me = key_of(b)

    async def go():
        out = {}
        for name, body in BAD_BODIES.items():
            full = {"community_id": cid(a), **body}
            out[name] = await _post(a, me, "/sync/v1/digest", SYNC_DIGEST, full)
            if "ranges" in body:
                out[name + " (ids)"] = await _post(a, me, "/sync/v1/ids", SYNC_IDS, full)
        out["other community"] = await _post(a, me, "/sync/v1/digest", SYNC_DIGEST,
                                             {"community_id": "ed25519:other", "ranges": wire_ranges([(0, 1)])})
        out["stranger"] = await _post(a, keys.generate(), "/sync/v1/digest", SYNC_DIGEST,
                                      {"community_id": cid(a), "ranges": wire_ranges([(0, 1)])})
        out["digest name on ids"] = await _post(a, me, "/sync/v1/ids", SYNC_DIGEST, {"community_id": cid(a)})
        return out

    r = asyncio.run(go())
    for name, (status, body) in r.items():
        if name == "stranger":
            assert (status, body["error"]) == (401, "unauthorized"), name
        elif name == "digest name on ids":  # a signed digest request is not an ids request
            assert status in (400, 401) and body["error"] in ("bad_request", "invalid_signature"), name
        else:
            assert (status, body["error"]) == (400, "bad_request"), (name, body)
    assert a.api("/health") is not None  # still serving
