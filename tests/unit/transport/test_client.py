"""PeerClient against a real HTTPS peer on 127.0.0.1 (tests/unit/transport/peer_server.py)."""
from __future__ import annotations

import asyncio
import json
import socket
from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import aiohttp
import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import KeyPair, generate
from hearthnet.transport import signing
from hearthnet.transport.client import PeerCallError, PeerClient
from hearthnet.transport.pinning import PinStore, peer_fingerprint
from hearthnet.transport.tls import fingerprint_digest
from tests.unit.transport.peer_server import TestPeer, running_peer

ROOT = generate()
COMMUNITY = ROOT.node_id_full


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def scenario(tmp_path, body: Callable[[TestPeer, PeerClient, KeyPair], Awaitable[Any]],
             peer_kp: KeyPair | None = None) -> Any:
    """Start a peer, give `body` a client for it, clean both up."""
    server_kp, client_kp = peer_kp or generate(), generate()

    async def main() -> Any:
        async with running_peer(tmp_path / "peer-tls", server_kp, COMMUNITY) as peer:
            async with PeerClient(client_kp, COMMUNITY, PinStore(tmp_path / "pins.json"), timeout=5) as client:
                return await body(peer, client, client_kp)

    return run(main())


def endpoint(peer: TestPeer) -> dict[str, Any]:
    return {"transport": "https", "host": "127.0.0.1", "port": peer.port}


async def raises(aw: Awaitable[Any]) -> HearthNetError:
    with pytest.raises(HearthNetError) as exc:
        await aw
    return exc.value


# ---- manifests and pinning ------------------------------------------------------------


def test_get_manifest_verifies_and_pins_on_first_contact(tmp_path):
    async def body(peer, client, _):
        m, fp = await client.get_manifest("127.0.0.1", peer.port)
        assert m["node_id"] == peer.kp.node_id_full and fp == peer.identity.fingerprint
        assert m["tls_fingerprint"] == fp
        again, fp2 = await client.get_manifest("127.0.0.1", peer.port, node_id=peer.kp.node_id_full)
        assert fp2 == fp
        return peer.kp.node_id_full, fp

    node, fp = scenario(tmp_path, body)
    stored = json.loads((tmp_path / "pins.json").read_text())
    assert stored["pins"][node]["fingerprint"] == fp  # TOFU pin persisted
    assert PinStore(tmp_path / "pins.json").expected(node) == fp


def test_first_call_pins_via_the_manifest(tmp_path):
    async def body(peer, client, me):
        reply = await client.call(peer.kp.node_id_full, endpoint(peer), "llm.chat", "1.0", {"input": {"q": 1}})
        assert reply["output"] == {"echo": {"input": {"q": 1}}, "caller": me.node_id_full}
        return client.pins.expected(peer.kp.node_id_full), peer.identity.fingerprint

    pinned, actual = scenario(tmp_path, body)
    assert pinned == actual


def test_pin_mismatch_is_refused_before_the_request_is_sent(tmp_path):
    kp = generate()

    async def main():
        pins = PinStore(tmp_path / "pins.json")
        async with PeerClient(generate(), COMMUNITY, pins, timeout=5) as client:
            async with running_peer(tmp_path / "tls-a", kp, COMMUNITY) as first:
                await client.call(kp.node_id_full, endpoint(first), "llm.chat", "1.0", {})
                port = first.port
            # Same node id, same key, but a second certificate (another tls dir): an impostor
            # or a re-keyed peer. Both are refused until the pin is forgotten.
            async with running_peer(tmp_path / "tls-b", kp, COMMUNITY, port=port) as second:
                assert second.identity.fingerprint != first.identity.fingerprint
                err = await raises(client.call(kp.node_id_full, endpoint(second), "llm.chat", "1.0", {}))
                assert err.code == "invalid_signature"
                assert second.seen == []  # not a byte of the request reached it
                err = await raises(client.get_manifest("127.0.0.1", port))
                assert err.code == "invalid_signature"
                err = await raises(client.get_manifest("127.0.0.1", port, node_id=kp.node_id_full))
                assert err.code == "invalid_signature"
                assert pins.expected(kp.node_id_full) == first.identity.fingerprint

    run(main())


def test_pinned_connections_are_kept_alive_and_reused(tmp_path):
    async def body(peer, client, _):
        for _ in range(3):
            await client.call(peer.kp.node_id_full, endpoint(peer), "llm.chat", "1.0", {})
        return {s["conn"] for s in peer.seen}

    assert len(scenario(tmp_path, body)) == 1  # one TLS connection for all three calls


def test_endpoint_serving_another_node_is_refused(tmp_path):
    async def body(peer, client, _):
        err = await raises(client.call(generate().node_id_full, endpoint(peer), "llm.chat", "1.0", {}))
        assert err.code == "invalid_signature" and peer.seen == []

    scenario(tmp_path, body)


def test_manifest_declaring_another_certificate_is_refused(tmp_path):
    async def body(peer, client, _):
        peer.manifest_fingerprint = "sha256:" + "0" * 64  # not what the server presents
        err = await raises(client.get_manifest("127.0.0.1", peer.port))
        assert err.code == "invalid_signature"
        assert client.pins.all() == {}

    scenario(tmp_path, body)


def test_replayed_manifest_of_another_node_cannot_plant_a_pin(tmp_path):
    """An endpoint replays a victim's genuine signed manifest (which declares the victim's
    certificate). The pinned re-fetch fails, because the endpoint cannot present that
    certificate, so nothing is pinned for the victim."""
    victim, victims_cert = generate(), "sha256:" + "1" * 64

    async def body(peer, client, _):
        peer.manifest_kp, peer.manifest_fingerprint = victim, victims_cert
        err = await raises(client.get_manifest("127.0.0.1", peer.port))
        assert err.code == "invalid_signature" and client.pins.all() == {}

    scenario(tmp_path, body)


# ---- signed calls ---------------------------------------------------------------------


def test_mutating_call_needs_a_valid_response_signature(tmp_path):
    async def body(peer, client, _):
        ok = await client.call(peer.kp.node_id_full, endpoint(peer), "market.post", "1.0", {"input": {}})
        assert ok["output"]["echo"] == {"input": {}}
        peer.bad_response_signature = True
        err = await raises(client.call(peer.kp.node_id_full, endpoint(peer), "market.post", "1.0", {}))
        assert err.code == "invalid_signature"

    scenario(tmp_path, body)


def test_peer_error_body_becomes_hearthnet_error_with_status(tmp_path):
    async def body(peer, client, _):
        err = await raises(client.call(peer.kp.node_id_full, endpoint(peer), "experimental.missing", "1.0", {}))
        assert isinstance(err, PeerCallError)
        assert (err.code, err.http_status, err.details["alt_nodes"]) == ("not_found", 404, ["ed25519:x"])

    scenario(tmp_path, body)


def test_deadline_is_timeout(tmp_path):
    async def body(peer, client, _):
        await client.get_manifest("127.0.0.1", peer.port)
        err = await raises(client.call(peer.kp.node_id_full, endpoint(peer), "experimental.slow", "1.0", {},
                                       timeout=0.3))
        assert err.code == "timeout"

    scenario(tmp_path, body)


def test_connection_refused_is_partition(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there

    async def main():
        async with PeerClient(generate(), COMMUNITY, PinStore(tmp_path / "p.json"), timeout=5) as client:
            err = await raises(client.get_manifest("127.0.0.1", port))
            assert err.code == "partition" and "peer unreachable" in err.message
            client.pins.record(ROOT.node_id_full, "sha256:" + "c" * 64)
            err = await raises(client.call(ROOT.node_id_full, ("127.0.0.1", port), "llm.chat", "1.0", {}))
            assert err.code == "partition"

    run(main())


def test_non_https_or_wildcard_endpoints_are_refused(tmp_path):
    async def main():
        async with PeerClient(generate(), COMMUNITY, PinStore(tmp_path / "p.json")) as client:
            for ep in ({"transport": "http", "host": "127.0.0.1", "port": 1}, ("0.0.0.0", 7080), ("127.0.0.1", 0)):
                assert (await raises(client.call(ROOT.node_id_full, ep, "llm.chat", "1.0", {}))).code == "bad_request"

    run(main())


def test_sync_routes_are_signed_with_their_own_capability_names(tmp_path):
    async def body(peer, client, me):
        node = peer.kp.node_id_full
        heads = await client.get_signed(node, endpoint(peer), "/sync/v1/heads", signing.SYNC_HEADS)
        assert heads == {"community_id": COMMUNITY, "head": 7}
        res = await client.post_signed(node, endpoint(peer), "/sync/v1/events", signing.SYNC_EVENTS,
                                       {"community_id": COMMUNITY, "events": [{"event_id": "e"}]})
        assert res["new_head_lamport"] == 9
        err = await raises(client.get_signed(node, endpoint(peer), "/sync/v1/heads", signing.SYNC_EVENTS))
        assert (err.code, err.http_status) == ("bad_request", 400)
        assert [s["capability"] for s in peer.seen] == ["sync.heads", "sync.events"]
        assert peer.seen[0]["body"] is None and peer.seen[0]["caller"] == me.node_id_full

    scenario(tmp_path, body)


# ---- the server side over real HTTPS: tampering, keys, skew, replay -----------------------


def test_server_refuses_tampered_forged_stale_and_replayed_requests(tmp_path):
    me, other = generate(), generate()

    async def post(session, peer, headers, raw):
        async with session.post(f"https://127.0.0.1:{peer.port}/bus/v1/call", data=raw,
                                headers={**headers, "Content-Type": "application/json"},
                                ssl=aiohttp.Fingerprint(fingerprint_digest(peer.identity.fingerprint))) as resp:
            return resp.status, await resp.json()

    async def main():
        async with running_peer(tmp_path / "tls", generate(), COMMUNITY) as peer:
            to = peer.kp.node_id_full

            def sign(kp, raw, **kw):
                return signing.sign_request(kp, COMMUNITY, "llm.chat", "1.0", raw, **{"to": to, **kw})

            async with aiohttp.ClientSession() as s:
                body = {"input": {"n": 1}}
                raw = json.dumps(body).encode()
                good = sign(me, raw)
                assert await post(s, peer, good, raw) == (200, {"output": {"echo": body, "caller": me.node_id_full},
                                                                "meta": {"ms": 1}})
                status, err = await post(s, peer, good, raw)  # same request id again
                assert (status, err["error"]) == (401, "invalid_signature") and "replay" in err["message"]
                fresh = sign(me, raw)
                assert (await post(s, peer, fresh, b'{"input":{"n":2}}'))[1]["error"] == "invalid_signature"
                forged = {**sign(other, raw), signing.H_FROM: me.node_id_full}
                assert (await post(s, peer, forged, raw))[1]["error"] == "invalid_signature"
                garbage = {**sign(me, raw), signing.H_SIGNATURE: "ed25519:" + "A" * 86}
                assert (await post(s, peer, garbage, raw))[1]["error"] == "invalid_signature"
                elsewhere = sign(me, raw, to=other.node_id_full)  # meant for another node
                assert (await post(s, peer, elsewhere, raw))[1]["error"] == "invalid_signature"
                peer.now = lambda: datetime.now(timezone.utc) + timedelta(seconds=121)
                stale = sign(me, raw)
                status, err = await post(s, peer, stale, raw)
                assert (status, err["error"]) == (410, "expired")
                assert len(peer.seen) == 1  # only the first, genuine request got through

    run(main())


def test_peer_fingerprint_reads_a_held_connection(tmp_path):
    me = generate()

    async def main():
        async with running_peer(tmp_path / "tls", generate(), COMMUNITY) as peer:
            raw = json.dumps({"mode": "forever"}).encode()
            headers = {**signing.sign_request(me, COMMUNITY, "llm.chat", "1.0", raw, to=peer.kp.node_id_full),
                       "Accept": "text/event-stream", "Content-Type": "application/json"}
            async with aiohttp.ClientSession() as s:
                async with s.post(f"https://127.0.0.1:{peer.port}/bus/v1/call", data=raw,
                                  headers=headers, ssl=False) as resp:
                    assert peer_fingerprint(resp) == peer.identity.fingerprint  # still streaming

    run(main())


# ---- streams ------------------------------------------------------------------------------


def test_stream_frames_arriving_in_pieces(tmp_path):
    async def body(peer, client, _):
        async with aclosing(client.stream(peer.kp.node_id_full, endpoint(peer), "llm.chat", "1.0",
                                          {"mode": "pieces"})) as frames:
            return [f async for f in frames]

    assert scenario(tmp_path, body) == [
        ("token", {"text": "Hé", "i": 0}), ("token", {"text": "llo", "i": 1}),
        ("token", {"text": " wörld", "i": 2}), ("done", {"tokens": 3})]


def test_stream_without_terminal_frame_ends_with_error(tmp_path):
    async def body(peer, client, _):
        async with aclosing(client.stream(peer.kp.node_id_full, endpoint(peer), "llm.chat", "1.0",
                                          {"mode": "no_terminal"})) as frames:
            return [f async for f in frames]

    frames = scenario(tmp_path, body)
    assert frames[0] == ("token", {"text": "x"}) and frames[-1][0] == "error"
    assert frames[-1][1]["error"] == "partition"


def test_stream_refused_before_it_starts_raises(tmp_path):
    async def body(peer, client, _):
        gen = client.stream(peer.kp.node_id_full, endpoint(peer), "experimental.missing", "1.0", {})
        async with aclosing(gen) as frames:
            err = await raises(frames.__anext__())
        assert (err.code, err.http_status) == ("not_found", 404)

    scenario(tmp_path, body)


def test_closing_the_stream_early_closes_the_connection(tmp_path):
    async def body(peer, client, _):
        async with aclosing(client.stream(peer.kp.node_id_full, endpoint(peer), "llm.chat", "1.0",
                                          {"mode": "forever"})) as frames:
            got = [await frames.__anext__() for _ in range(2)]
        assert got == [("token", {"text": "t"})] * 2
        await asyncio.wait_for(peer.disconnected.wait(), 2)  # the peer saw us leave
        sent = peer.frames_sent
        await asyncio.sleep(0.1)
        assert peer.frames_sent == sent  # and stopped producing

    scenario(tmp_path, body)


def test_cancelling_the_consumer_closes_the_connection(tmp_path):
    async def body(peer, client, _):
        started = asyncio.Event()

        async def consume():
            async for _ in client.stream(peer.kp.node_id_full, endpoint(peer), "llm.chat", "1.0",
                                         {"mode": "forever"}):
                started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(peer.disconnected.wait(), 2)

    scenario(tmp_path, body)


def test_get_public_is_an_unsigned_pinned_get(tmp_path):
    async def body(peer, client, _):
        got = await client.get_public(peer.kp.node_id_full, endpoint(peer), "/manifest")
        assert got["node_id"] == peer.kp.node_id_full
        assert client.pins.expected(peer.kp.node_id_full) == peer.identity.fingerprint  # pinned first
        assert peer.seen == []  # nothing signed reached the peer
        err = await raises(client.get_public(peer.kp.node_id_full, endpoint(peer), "/nope"))
        assert err.code == "not_found"

    scenario(tmp_path, body)
