"""The cost of a sync round follows the difference (ranged digests, hearthnet/sync.py):
two logs of N events differing in k find exactly the missing ids with O(k log N) digest
entries and O(k) listed ids, never the full list; a peer from before /sync/v1/digest
gets the full id lists."""
from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from hearthnet.sync import LEAF, SPLIT, sync_with

from .test_sync import PEER, FakePeerClient, LocalSide, MemLedger

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def eid(tag: str, i: int) -> str:
    """A distinct ULID-shaped event id for (tag letter, number)."""
    digits = ""
    for _ in range(20):
        i, r = divmod(i, 32)
        digits = ALPHABET[r] + digits
    return "01J" + ALPHABET[ord(tag[0]) % 32] + ALPHABET[len(tag) % 32] + "0" + digits


def shared_log(n: int) -> dict[str, int]:
    """n events, a few per lamport as concurrent writers make them."""
    return {eid("s", i): 1 + i // 3 for i in range(n)}


def diverge(n: int, k: int, seed: int) -> tuple[LocalSide, MemLedger, set[str], set[str]]:
    """Both hold n shared events; k more are split between the sides, at random lamports
    across the log (late arrivals as well as new ones at the top)."""
    rnd = random.Random(seed)
    base = shared_log(n)
    head = max(base.values())
    only_theirs = {eid("t", seed * 10**6 + i): rnd.randint(1, head + 5) for i in range(k // 2 + k % 2)}
    only_ours = {eid("o", seed * 10**6 + i): rnd.randint(1, head + 5) for i in range(k // 2)}
    return (LocalSide({**base, **only_ours}), MemLedger({**base, **only_theirs}),
            set(only_theirs), set(only_ours))


def wire_bytes(client: FakePeerClient) -> int:
    return sum(len(json.dumps(body)) for _, body in client.bodies)


@pytest.mark.parametrize("n,k", [(1000, 1), (1000, 10), (5000, 4), (5000, 40)])
def test_k_differences_in_n_cost_k_log_n_digest_entries(n, k):
    ours, theirs, want, give = diverge(n, k, seed=n + k)
    client = FakePeerClient(theirs)
    result = asyncio.run(sync_with(ours, client, "cid", PEER))
    assert result.ok and not result.full_ids
    assert result.received == len(want) and result.sent == len(give)
    assert set(ours.store) == set(theirs.store)
    pulled = [i for path, body in client.bodies if path == "/sync/v1/pull" for i in body["ids"]]
    assert sorted(pulled) == sorted(want)  # exactly the missing ids, nothing more
    # SPLIT entries per level for each differing range, about log_SPLIT(N) levels.
    assert result.digest_ranges <= SPLIT * k * (math.log(n, SPLIT) + 2)
    assert result.digest_ranges < n / 10
    assert result.ids_listed <= k * (LEAF + 3)  # a few ids around each difference, not N
    assert all(body.get("ranges") for path, body in client.bodies if path == "/sync/v1/ids")


def test_the_rounds_cost_grows_with_k_not_with_n():
    small = FakePeerClient(diverge(1000, 2, 1)[1])
    small_ours = diverge(1000, 2, 1)[0]
    big_ours, big_theirs, _, _ = diverge(20000, 2, 1)
    big = FakePeerClient(big_theirs)
    asyncio.run(sync_with(small_ours, small, "cid", PEER))
    asyncio.run(sync_with(big_ours, big, "cid", PEER))
    # 20x the log: the exchange grows by the few extra bisection levels only.
    assert wire_bytes(big) < 3 * wire_bytes(small)
    assert wire_bytes(big) < 20000 * 28 / 10  # the full id list alone is ~28 bytes an id


def test_equal_logs_stop_after_the_heads():
    client = FakePeerClient(MemLedger(shared_log(300)))
    result = asyncio.run(sync_with(LocalSide(shared_log(300)), client, "cid", PEER))
    assert result.ok and result.digest_ranges == 0 and client.posts == []


def test_an_empty_side_lists_the_others_ids_after_one_digest_request():
    """A new member's first round: nothing to bisect (every range is empty on one side)."""
    ours = LocalSide({})
    client = FakePeerClient(MemLedger(shared_log(500)))
    result = asyncio.run(sync_with(ours, client, "cid", PEER))
    assert result.ok and result.received == 500 and len(ours.store) == 500
    assert client.posts.count("/sync/v1/digest") == 1 and result.digest_ranges <= SPLIT


def test_an_old_peer_without_the_digest_route_gets_the_full_id_lists():
    ours, theirs, want, give = diverge(400, 6, seed=3)
    client = FakePeerClient(theirs, digest=False)
    result = asyncio.run(sync_with(ours, client, "cid", PEER))
    assert result.ok and result.full_ids and result.digest_ranges == 0
    assert result.received == len(want) and result.sent == len(give)
    assert set(ours.store) == set(theirs.store)
    assert [b for p, b in client.bodies if p == "/sync/v1/ids"] == [{"community_id": "cid"}]
    assert result.ids_listed == len(theirs.store) - len(want)  # their ids before the round


def test_not_found_after_the_first_digest_fails_the_round():
    """Only a peer that never knew the route falls back; one that forgets it mid-round
    (or a hostile one) costs this round, not a full-list exchange."""
    ours, theirs, _, _ = diverge(2000, 8, seed=5)
    client = FakePeerClient(theirs)
    calls = {"n": 0}
    real = client.post_signed

    async def second_digest_missing(node, ep, path, cap, body):
        if path == "/sync/v1/digest":
            calls["n"] += 1
            if calls["n"] == 2:
                from hearthnet.transport.client import PeerCallError
                raise PeerCallError("not_found", "gone", http_status=404)
        return await real(node, ep, path, cap, body)

    client.post_signed = second_digest_missing  # type: ignore[method-assign]
    result = asyncio.run(sync_with(ours, client, "cid", PEER))
    assert not result.ok and result.error.startswith("not_found") and not result.full_ids
