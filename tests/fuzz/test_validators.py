"""Fuzz (b): the validators of peer input — node and community manifests, capability
descriptors (a peer's manifest, a worker's READY), sync replies, broker frame checks, SSE
frames, timestamps — given random, mistyped, deep and huge data raise only their
contract error (a HearthNetError with one of a few codes), never anything else; and the
code that consumes them (PeerProxies.apply, sync_with) never raises at all."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearthnet import validate
from hearthnet.bus import protocol as P
from hearthnet.errors import HearthNetError
from hearthnet.gateway.peers import PeerProxies, remote_descriptor, remote_descriptors
from hearthnet.identity import keys
from hearthnet.identity.manifest import (
    build_genesis_community_manifest,
    build_node_manifest,
    parse_rfc3339,
    verify_community_manifest,
    verify_node_manifest,
)
from hearthnet.sync import SyncResult, sync_with
from hearthnet.transport.sse import SseParser
from tests.fuzz.strategies import deep, hostile, msgpack_values, mutate

NOW = datetime(2026, 5, 26, 8, 14, 22, tzinfo=timezone.utc)
KP = keys.generate()
CAP = {"name": "llm.chat", "version": "1.0", "stability": "stable", "schema_hash": "blake3:" + "0" * 64,
       "params": {"model": "qwen", "models": [{"name": "qwen", "ctx": 4096}]}, "max_concurrent": 2}
MANIFEST = build_node_manifest(
    KP, display_name="n", community_id=KP.node_id_full, profile="hearth",
    endpoints=[{"transport": "https", "host": "127.0.0.1", "port": 7080}],
    hardware={"gpu": None, "vram_gb": 0.0, "ram_gb": 8.0, "cpu_cores": 4, "disk_free_gb": 10.0},
    capabilities=[CAP, {**CAP, "name": "embed.text", "params": {}}], uptime_seconds=1,
    load={"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0}, now=NOW,
    extra_fields={"tls_fingerprint": "sha256:" + "a" * 64})
MANIFEST_PATHS = [(k,) for k in MANIFEST if k != "signature"] + [
    ("capabilities", 0, k) for k in CAP] + [("capabilities", 0, "params", "models")] + [
    ("endpoints", 0, k) for k in ("transport", "host", "port")] + [
    ("hardware", k) for k in MANIFEST["hardware"]] + [("load", k) for k in MANIFEST["load"]] + [
    ("capabilities", 1), ("endpoints", 0), ("extra",)]
MANIFEST_CODES = {"bad_manifest", "invalid_signature", "expired"}


def _expect(codes: set[str], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call fn: it returns, or raises a HearthNetError with one of `codes`."""
    try:
        return fn(*args, **kwargs)
    except HearthNetError as exc:
        assert exc.code in codes, (exc.code, exc.message)
        assert isinstance(exc.message, str)
        return None


@st.composite
def hostile_manifests(draw: Any) -> Any:
    m = mutate(draw, MANIFEST, MANIFEST_PATHS)
    if draw(st.booleans()):  # re-signed: only the shape checks stand between it and the mesh
        try:
            m = KP.sign(m)
        except HearthNetError:
            pass  # canonical JSON cannot hold it (NaN, bytes, too deep): sent unsigned
    return m


def test_the_unmutated_manifest_verifies():
    assert verify_node_manifest(MANIFEST, now=NOW) is MANIFEST


@given(hostile_manifests())
def test_node_manifests(m):
    if _expect(MANIFEST_CODES, verify_node_manifest, m, now=NOW) is not None:
        # What verifies is fit for the mesh: every capability becomes a descriptor.
        assert len(remote_descriptors({"node_id": "x", "manifest": m})) == len(m["capabilities"])


@given(hostile | msgpack_values)
def test_node_manifests_of_any_type(m):
    _expect(MANIFEST_CODES, verify_node_manifest, m, now=NOW)


@given(st.integers(min_value=0, max_value=5000), st.sampled_from(["capabilities", "endpoints"]))
def test_node_manifests_with_long_lists(n, field):
    item = CAP if field == "capabilities" else MANIFEST["endpoints"][0]
    _expect(MANIFEST_CODES, verify_node_manifest, KP.sign({**MANIFEST, field: [item] * n}), now=NOW)


@st.composite
def hostile_community_manifests(draw: Any) -> Any:
    m = build_genesis_community_manifest(KP, "Elm Street", now=NOW)
    paths = [(k,) for k in m if k != "signature"] + [("members", 0, k) for k in m["members"][0]] + [
        ("members", 0), ("policy", "min_signatures_to_revoke")]
    m = mutate(draw, m, paths)
    try:
        return KP.sign(m) if draw(st.booleans()) else m
    except HearthNetError:
        return m


@given(hostile_community_manifests())
def test_community_manifests(m):
    _expect({"bad_manifest", "invalid_signature", "bad_node_id"}, verify_community_manifest, m)


@given(st.data())
def test_capability_descriptors(data):
    cap = data.draw(st.builds(dict) | st.just(CAP)).copy()
    for key in data.draw(st.lists(st.sampled_from(list(CAP) + ["timeout_seconds", "trust_required",
                                                                "idempotent", "streams"]), max_size=4)):
        cap[key] = data.draw(hostile | msgpack_values)
    for fn in (validate.manifest_capability, validate.ready_descriptor, remote_descriptor):
        _expect({"bad_response"}, fn, cap)
    good, problems = P.ready_caps([cap, CAP, data.draw(hostile)])
    assert "llm.chat" in good or problems


@given(hostile | msgpack_values, st.lists(st.text(max_size=30), max_size=5))
def test_sync_replies(reply, asked):
    _expect({"bad_response"}, validate.heads_reply, reply)
    _expect({"bad_response"}, validate.ids_reply, reply)
    _expect({"bad_response"}, validate.events_reply, reply, len(asked))
    _expect({"bad_response"}, validate.pull_reply, reply, asked)
    for key in ("ids", "events", "head", "accepted"):
        wrapped = {key: reply}
        _expect({"bad_response"}, validate.heads_reply, wrapped)
        _expect({"bad_response"}, validate.ids_reply, wrapped)
        _expect({"bad_response"}, validate.events_reply, wrapped, 3)
        _expect({"bad_response"}, validate.pull_reply, wrapped, asked)


@given(st.dictionaries(st.sampled_from(["t", "id", "cap", "v", "body", "stream", "caller", "trace", "timeout",
                                        "local_only", "op", "args", "ev", "d", "worker", "service", "pid",
                                        "caps", "note", "remote", "node_id", "upto"]), msgpack_values | deep),
       st.sampled_from(["ready", "hb", "frame", "end", "bye", "req", "cancel", "who", "call", "admin",
                        "drain", "reject", "ack"]))
def test_broker_frame_checks(msg, kind):
    for m in (msg, {**msg, "t": kind}):
        for check in (P.worker_problem, P.client_problem):
            problem = check(m)
            assert problem is None or isinstance(problem, str)


@given(st.binary(max_size=300) | st.lists(st.binary(max_size=50), max_size=8).map(b"\n".join))
def test_sse_parser(raw):
    parser = SseParser(max_line_bytes=64, max_frame_bytes=128)
    try:
        for i in range(0, len(raw), 11):
            parser.feed(raw[i:i + 11])
        parser.feed(b"\n\n")
    except ValueError:
        pass


@given(st.text(max_size=80) | st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59",
                                               "2026-02-30T00:00:00Z", "2026-05-26T08:14:22"]))
def test_timestamps(text):
    try:
        parse_rfc3339(text)
    except ValueError:
        pass


# ---- consumers: one bad peer never raises into the loop that serves all peers -------------


def _peer(manifest: Any, **over: Any) -> dict[str, Any]:
    doc = {"node_id": "ed25519:fuzzpeer", "node_id_short": "ed25519:fuzz", "source": "manual", "display_name": "p",
           "endpoint": {"host": "127.0.0.1", "port": 7080}, "manifest": manifest}
    doc.update(over)
    return doc


@st.composite
def hostile_peers(draw: Any) -> Any:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(hostile | msgpack_values)
    if kind == 1:
        return mutate(draw, _peer(MANIFEST), [("node_id",), ("node_id_short",), ("endpoint",), ("manifest",),
                                                ("endpoint", "host"), ("endpoint", "port"), ("display_name",),
                                                ("source",)])
    return _peer(mutate(draw, MANIFEST, MANIFEST_PATHS))


@pytest.fixture(scope="module")
def proxies():
    """Peer proxies whose broker socket leads nowhere (nothing listens: sends queue)."""
    loop = asyncio.new_event_loop()
    p = PeerProxies("ipc:///tmp/hn-fuzz-nobody.ipc", client=None)
    yield loop, p
    loop.run_until_complete(p.close())
    loop.close()


@given(st.sampled_from(["added", "updated", "removed"]), hostile_peers())
def test_peer_events_never_raise(proxies, kind, peer):
    loop, p = proxies
    applied = loop.run_until_complete(p.apply(kind, peer))
    assert applied in (True, False)
    # The peer watcher goes on: a good peer after a bad one is still added.
    assert loop.run_until_complete(p.apply("added", _peer(MANIFEST))) is True


class RandomPeer:
    """A peer whose sync replies are drawn by hypothesis."""

    def __init__(self, data: Any) -> None:
        self.data = data

    async def get_signed(self, *args: Any, **kwargs: Any) -> Any:
        return self.data.draw(hostile | st.just({"head": 3, "count": 3, "digest": "blake3:x"}))

    async def post_signed(self, node: str, ep: Any, path: str, cap: str, body: Any, **kw: Any) -> Any:
        if path == "/sync/v1/ids":
            return self.data.draw(hostile | st.builds(lambda ids: {"ids": ids}, st.lists(
                st.sampled_from(["01J00000000000000000000000", "01J00000000000000000000001"]) | hostile,
                max_size=3)))
        if path == "/sync/v1/digest":  # well-formed replies (mostly differing), or hostile ones
            return self.data.draw(hostile | st.builds(lambda counts: {"ranges": [
                {"lamport_lo": r["lamport_lo"], "lamport_hi": r["lamport_hi"], "count": c, "hash": "f" * 32}
                for r, c in zip(body["ranges"], counts)]}, st.lists(st.integers(0, 40), min_size=len(body["ranges"]),
                                                                   max_size=len(body["ranges"]))))
        if path == "/sync/v1/pull":
            return self.data.draw(hostile | st.builds(lambda evs: {"events": evs}, st.lists(
                st.builds(lambda i: {"event_id": i}, st.sampled_from(body["ids"] or ["x"])) | hostile,
                max_size=3)))
        return self.data.draw(hostile | st.just({"accepted": 0, "rejected": 0}))


class QuietLedger:
    async def heads(self):
        return {"head": 1, "count": 1, "digest": "blake3:ours"}

    async def ids(self):
        return {"01J0000000000000000000000Z"}

    async def events(self, ids):
        return [{"event_id": i} for i in ids]

    async def digests(self, ranges):
        return [(1, "0" * 32) for _ in ranges]

    async def ids_in(self, ranges):
        return ["01J0000000000000000000000Z"]

    async def ingest(self, events):
        return {"accepted": len(events), "rejected": 0}


@given(st.data())
def test_sync_rounds_never_raise(data):
    peer = data.draw(st.just(_peer(MANIFEST)) | hostile_peers())
    result = asyncio.run(sync_with(QuietLedger(), RandomPeer(data), "cid", peer))
    assert isinstance(result, SyncResult)
    assert result.ok or result.error.split(":")[0] in {"bad_response"}
