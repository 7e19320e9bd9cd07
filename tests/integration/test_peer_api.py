"""The peer API of a real node over HTTPS: signed calls from a member that joined by
invite, pinning, every refusal with its contract code, requests bound to their target,
signed errors and stream headers, and Accept/stream negotiation."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import aiohttp
import pytest

from hearthnet.broker.core import REMOTE_COMMUNITY_CAPS
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.testing.nodes import Node, key_of
from hearthnet.testing.peer_abuse import member_pair
from hearthnet.transport import signing
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.signing import SYNC_HEADS, SYNC_IDS, sign_request, verify_response

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[Node, Node]]:
    """A founds a community and runs (with the echo worker); B joined by invite (its key
    is a member's key; B itself need not run)."""
    with member_pair(tmp_path_factory.mktemp("peerapi")) as nodes:
        yield nodes



def community_id(node: Node) -> str:
    return node.api("/api/v1/status")["community"]["community_id"]


async def _raw_post(node: Node, headers: dict[str, str], body: bytes,
                    path: str = "/bus/v1/call") -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"https://127.0.0.1:{node.port}{path}", data=body,
                          headers=headers, ssl=False) as r:
            raw = await r.read()
            ctype = r.headers.get("Content-Type", "")
            return r.status, (json.loads(raw) if ctype.startswith("application/json") else raw), r.headers


def signed(signer: keys.KeyPair, a: Node, raw: bytes, cap: str = "experimental.echo", **over: Any) -> dict[str, str]:
    over.setdefault("to", key_of(a).node_id_full)
    h = sign_request(signer, community_id(a), cap, "1.0", raw, **over)
    h["Content-Type"] = "application/json"
    return h


def test_signed_call_from_a_member_is_served_and_the_reply_signed(pair, tmp_path):
    a, b = pair
    me, target = key_of(b), key_of(a).node_id_full

    async def go():
        async with PeerClient(me, community_id(a), PinStore(tmp_path / "pins.json")) as client:
            manifest, fp = await client.get_manifest("127.0.0.1", a.port)
            out = await client.call(target, ("127.0.0.1", a.port), "experimental.echo",
                                    "1.0", {"params": {}, "input": {"hi": 1}})
            frames = [f async for f in client.stream(target, ("127.0.0.1", a.port),
                                                     "experimental.echo", "1.0",
                                                     {"input": {"items": ["a", "b"]}})]
            heads = await client.get_signed(target, ("127.0.0.1", a.port), "/sync/v1/heads", SYNC_HEADS)
            ids = await client.post_signed(target, ("127.0.0.1", a.port), "/sync/v1/ids", SYNC_IDS,
                                           {"community_id": community_id(a)})
            return manifest, fp, out, frames, heads, ids

    manifest, fp, out, frames, heads, ids = asyncio.run(go())
    assert manifest["tls_fingerprint"] == fp
    assert out["output"] == {"hi": 1}
    assert [d for ev, d in frames if ev == "token"] == [{"text": "a", "logprob": None},
                                                        {"text": "b", "logprob": None}]
    assert frames[-1][0] == "done"
    assert heads["head"] >= 3 and heads["community_id"] == community_id(a)
    assert len(ids["ids"]) == heads["count"]


def test_refusals_carry_the_contract_codes(pair):
    a, b = pair
    me, stranger = key_of(b), keys.generate()
    raw = json.dumps({"params": {}, "input": {"x": 1}}).encode()

    async def go():
        results = {}
        good = signed(me, a, raw)
        results["ok"] = await _raw_post(a, good, raw)
        results["replay"] = await _raw_post(a, good, raw)
        results["tampered"] = await _raw_post(a, signed(me, a, raw), json.dumps({"input": {"x": 2}}).encode())
        results["stranger"] = await _raw_post(a, signed(stranger, a, raw), raw)
        old = datetime.now(timezone.utc) - timedelta(seconds=121)
        results["skew"] = await _raw_post(a, signed(me, a, raw, now=old), raw)
        results["unsigned"] = await _raw_post(a, {"X-HearthNet-Capability": "experimental.echo"}, raw)
        return results

    r = asyncio.run(go())
    assert r["ok"][0] == 200
    assert (r["replay"][0], r["replay"][1]["error"]) == (401, "invalid_signature")
    assert r["tampered"][0] == 401 and r["tampered"][1]["error"] == "invalid_signature"
    assert r["stranger"][0] == 401 and r["stranger"][1]["error"] == "unauthorized"
    assert r["skew"][0] == 410 and r["skew"][1]["error"] == "expired"
    assert r["unsigned"][0] == 400 and r["unsigned"][1]["error"] == "bad_request"


def test_a_request_for_another_node_or_from_this_node_is_refused(pair):
    """Issue 6: a member replayed another node's signed sync request to a third node and
    got 200; replayed to its signer it ran with `self` trust."""
    a, b = pair
    me, other_node, own = key_of(b), keys.generate(), key_of(a)
    body = json.dumps({"community_id": community_id(a)}).encode()

    async def go():
        meant_elsewhere = signed(me, a, body, cap=SYNC_IDS, to=other_node.node_id_full)
        replayed = await _raw_post(a, meant_elsewhere, body, "/sync/v1/ids")
        ours = signed(own, a, body, cap=SYNC_IDS)  # our own key, coming in over the network
        own_key = await _raw_post(a, ours, body, "/sync/v1/ids")
        own_call = await _raw_post(a, signed(own, a, b"{}"), b"{}")
        fine = await _raw_post(a, signed(me, a, body, cap=SYNC_IDS), body, "/sync/v1/ids")
        return replayed, own_key, own_call, fine

    replayed, own_key, own_call, fine = asyncio.run(go())
    assert (replayed[0], replayed[1]["error"]) == (401, "invalid_signature")
    assert (own_key[0], own_key[1]["error"]) == (401, "invalid_signature")
    assert (own_call[0], own_call[1]["error"]) == (401, "invalid_signature")
    assert fine[0] == 200 and fine[1]["ids"]


def test_error_replies_are_signed(pair):
    a, b = pair
    me, node_a = key_of(b), key_of(a).node_id_full

    async def go():
        h = signed(me, a, b"{}", cap="experimental.nothing")
        missing = await _raw_post(a, h, b"{}")
        h2 = signed(keys.generate(), a, b"{}")
        stranger = await _raw_post(a, h2, b"{}")
        return (h, missing), (h2, stranger)

    for headers, (status, body, resp_headers) in asyncio.run(go()):
        assert status in (401, 404) and "error" in body
        verify_response(resp_headers, body, expected_from=node_a,
                        request_id=headers[signing.H_REQUEST_ID], status=status)


def test_streams_only_when_the_capability_streams_and_carry_the_sender(pair):
    a, b = pair
    me, node_a = key_of(b), key_of(a).node_id_full
    both = "application/json, text/event-stream"

    async def go():
        streamed_raw = json.dumps({"input": {"items": ["x"]}}).encode()
        h = {**signed(me, a, streamed_raw), "Accept": both}
        streamed = await _raw_post(a, h, streamed_raw)
        plain_raw = json.dumps({"input": {"items": ["x"], "stream": False}}).encode()
        plain = await _raw_post(a, {**signed(me, a, plain_raw), "Accept": both}, plain_raw)
        return h, streamed, plain

    h, streamed, plain = asyncio.run(go())
    status, raw, headers = streamed
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert headers["X-HearthNet-From"] == node_a
    assert headers["X-HearthNet-Request-Id"] == h[signing.H_REQUEST_ID]
    verify_response(headers, None, expected_from=node_a, request_id=h[signing.H_REQUEST_ID], status=200)
    assert b"event: done" in raw
    assert plain[0] == 200 and plain[2]["Content-Type"].startswith("application/json")
    # The local API, a capability that does not stream, both types accepted: JSON.
    status, data = a.request("/bus/v1/call", "POST", {"input": {}},
                             {"X-HearthNet-Capability": "community.log.heads", "Accept": both})
    assert status == 200 and json.loads(data)["output"]["head"] >= 3


def test_deep_json_and_bad_timestamps_are_bad_request_never_500(pair):
    a, b = pair
    me = key_of(b)
    deep = (b"[" * 980) + (b"]" * 980)

    async def go():
        out = {"deep": await _raw_post(a, signed(me, a, deep), deep)}
        for i, ts in enumerate(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30T00:00:00Z",
                                "1e9", ""]):
            h = {**signed(me, a, b"{}"), signing.H_TIMESTAMP: ts}
            out[f"ts{i}"] = await _raw_post(a, h, b"{}")
        return out

    r = asyncio.run(go())
    assert (r["deep"][0], r["deep"][1]["error"]) == (400, "bad_request")
    for key in ("ts0", "ts1", "ts2", "ts3", "ts4"):
        assert r[key][0] == 400 and r[key][1]["error"] == "bad_request", (key, r[key][:2])
    status, data = a.request("/bus/v1/call", "POST", deep, {"X-HearthNet-Capability": "experimental.echo"})
    assert status == 400 and json.loads(data)["error"] == "bad_request"


def test_the_signed_timeout_is_capped_by_the_capability(pair):
    a, b = pair
    me = key_of(b)
    raw = json.dumps({"input": {"x": 1}}).encode()

    async def go():
        return await _raw_post(a, signed(me, a, raw, timeout_seconds=3600), raw)

    status, body, _ = asyncio.run(go())
    assert status == 200 and body["output"] == {"x": 1}


def test_internal_capabilities_are_not_advertised_and_strangers_cannot_call_them(pair, tmp_path):
    a, b = pair
    stranger_view = a.request("/manifest", peer=True)
    names = {c["name"] for c in json.loads(stranger_view[1])["capabilities"]}
    # Only the governance capabilities (public in the contract) of `community.*` are offered.
    assert "experimental.echo" in names
    assert {n for n in names if n.startswith("community.")} <= set(REMOTE_COMMUNITY_CAPS)

    async def go(kp):
        async with PeerClient(kp, community_id(a), PinStore(tmp_path / f"{kp.node_id_short}.json")) as client:
            await client.get_manifest("127.0.0.1", a.port)
            return await client.call(key_of(a).node_id_full, ("127.0.0.1", a.port),
                                     "community.log.append", "1.0",
                                     {"input": {"event_type": "file.cid.unpinned", "data": {}}})

    for kp in (keys.generate(), key_of(b)):  # a stranger, and a member (trust `self` needed)
        with pytest.raises(HearthNetError) as err:
            asyncio.run(go(kp))
        assert err.value.code == "unauthorized"
