"""The peer API of a real node over HTTPS: signed calls, pinning, and every refusal."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.signing import SYNC_HEADS, sign_request

pytestmark = pytest.mark.integration


@pytest.fixture
def node(make_node):
    n = make_node("peerapi")
    n.env["HEARTHNET_WORKERS_ECHO"] = "true"
    n.init()
    n.start(wait_workers=("broker", "gateway", "ledger", "echo"))
    return n


def own_kp(node):
    return keys.load(node.root / "data" / "hearthnet" / "keys")


def community_id(node) -> str:
    return node.api("/api/v1/status")["community"]["community_id"]


async def _raw_post(node, headers, body: bytes):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"https://127.0.0.1:{node.port}/bus/v1/call", data=body,
                          headers=headers, ssl=False) as r:
            return r.status, await r.json()


def test_signed_call_from_a_member_is_served_and_the_reply_signed(node, tmp_path):
    kp, cid = own_kp(node), community_id(node)

    async def go():
        async with PeerClient(kp, cid, PinStore(tmp_path / "pins.json")) as client:
            manifest, fp = await client.get_manifest("127.0.0.1", node.port)
            out = await client.call(kp.node_id_full, ("127.0.0.1", node.port), "experimental.echo",
                                    "1.0", {"params": {}, "input": {"hi": 1}})
            frames = [f async for f in client.stream(kp.node_id_full, ("127.0.0.1", node.port),
                                                     "experimental.echo", "1.0",
                                                     {"input": {"items": ["a", "b"]}})]
            heads = await client.get_signed(kp.node_id_full, ("127.0.0.1", node.port),
                                            "/sync/v1/heads", SYNC_HEADS)
            return manifest, fp, out, frames, heads

    manifest, fp, out, frames, heads = asyncio.run(go())
    assert manifest["tls_fingerprint"] == fp
    assert out["output"] == {"hi": 1}
    assert [d for ev, d in frames if ev == "token"] == [{"text": "a", "logprob": None},
                                                        {"text": "b", "logprob": None}]
    assert frames[-1][0] == "done"
    assert heads["head"] == 3 and heads["community_id"] == community_id(node)


def test_refusals_carry_the_contract_codes(node):
    kp, cid = own_kp(node), community_id(node)
    stranger = keys.generate()
    body = {"params": {}, "input": {"x": 1}}
    raw = json.dumps(body).encode()

    def headers(signer, **over):
        h = sign_request(signer, cid, "experimental.echo", "1.0", body, **over)
        h["Content-Type"] = "application/json"
        return h

    async def go():
        results = {}
        good = headers(kp)
        results["ok"] = await _raw_post(node, good, raw)
        results["replay"] = await _raw_post(node, good, raw)
        tampered = headers(kp)
        results["tampered"] = await _raw_post(node, tampered, json.dumps({"input": {"x": 2}}).encode())
        results["stranger"] = await _raw_post(node, headers(stranger), raw)
        old = datetime.now(timezone.utc) - timedelta(seconds=121)
        results["skew"] = await _raw_post(node, headers(kp, now=old), raw)
        results["unsigned"] = await _raw_post(node, {"X-HearthNet-Capability": "experimental.echo"}, raw)
        return results

    r = asyncio.run(go())
    assert r["ok"][0] == 200
    assert r["replay"] == (401, {**r["replay"][1], "error": "invalid_signature"})
    assert r["tampered"][0] == 401 and r["tampered"][1]["error"] == "invalid_signature"
    assert r["stranger"][0] == 401 and r["stranger"][1]["error"] == "unauthorized"
    assert r["skew"][0] == 410 and r["skew"][1]["error"] == "expired"
    assert r["unsigned"][0] == 400 and r["unsigned"][1]["error"] == "bad_request"


def test_internal_capabilities_are_not_advertised_and_strangers_cannot_call_them(node, tmp_path):
    kp, cid = own_kp(node), community_id(node)
    stranger_view = node.request("/manifest", peer=True)
    names = {c["name"] for c in json.loads(stranger_view[1])["capabilities"]}
    assert "experimental.echo" in names and not any(n.startswith("community.") for n in names)

    async def go():
        async with PeerClient(keys.generate(), cid, PinStore(tmp_path / "p.json")) as client:
            await client.get_manifest("127.0.0.1", node.port)
            return await client.call(kp.node_id_full, ("127.0.0.1", node.port),
                                     "community.log.append", "1.0",
                                     {"input": {"event_type": "file.cid.unpinned", "data": {}}})

    with pytest.raises(HearthNetError) as err:
        asyncio.run(go())
    assert err.value.code == "unauthorized"
