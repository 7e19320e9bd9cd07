"""Sneakernet bundles between real nodes that never share a network after B joined:
A and B are never running at the same time, so the only thing that moves between them
is the bundle directory. Events converge; a tampered or forged bundle is refused whole;
the next export `--since` B's have summary carries only the difference; files arrive
byte-identical (once the file service is merged)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from hearthnet.testing.nodes import Node, join_by_invite

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger")


def chat(node: Node, body: str) -> str:
    """An event of this node's (a market post: no rule ties it to another event)."""
    status, reply = node.call("community.log.append", {"params": {}, "input": {
        "event_type": "market.post.created",
        "data": {"client_id": os.urandom(4).hex(), "category": "info", "title": body[:80], "body": body,
                 "location": None, "tags": [], "ttl_seconds": 3600}}})
    assert status == 200, reply
    return reply["output"]["event"]["event_id"]


def event_ids(node: Node) -> set[str]:
    status, reply = node.call("community.log.ids", {"params": {}, "input": {"since_lamport": 0}})
    assert status == 200, reply
    return set(reply["output"]["ids"])


def bundle(node: Node, *args: str) -> tuple[int, Any]:
    r = node.cli("bundle", *args, "--json", timeout=120)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"not JSON: {r.stdout!r} {r.stderr!r}") from None
    return r.returncode, doc


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a, b = Node(tmp_path / "a", "alice"), Node(tmp_path / "b", "bob")
    try:
        a.init()
        a.start(wait_workers=CORE)
        join_by_invite(a, b)  # the only time they meet
        a.stop()
        for n in (a, b):  # and they forget each other's address for good measure
            (n.root / "data" / "hearthnet" / "peers.json").unlink(missing_ok=True)
        yield a, b
    finally:
        a.cleanup()
        b.cleanup()


def only(running: Node, *, workers: tuple[str, ...] = CORE) -> None:
    running.start(wait_workers=workers)


def test_events_converge_through_bundles(pair: tuple[Node, Node], tmp_path: Path) -> None:
    a, b = pair
    stick = tmp_path / "stick"
    stick.mkdir()

    only(a)
    written = [chat(a, f"the bridge on Mill Road is down ({n})") for n in range(5)]
    code, out = bundle(a, "export", "--out", str(stick / "one"), "--no-blobs")
    assert code == 0, out
    assert out["events"]["count"] == len(event_ids(a)) and out["since"] is None and out["blobs"] == []
    a_ids = event_ids(a)
    a.stop()

    only(b)
    before = event_ids(b)
    assert not set(written) & before

    # tampered copies first: each refused whole, nothing imported
    flipped = stick / "flipped"
    shutil.copytree(stick / "one", flipped)
    raw = bytearray((flipped / "events.jsonl").read_bytes())
    raw[len(raw) // 2] ^= 1
    (flipped / "events.jsonl").write_bytes(bytes(raw))
    forged = stick / "forged"
    shutil.copytree(stick / "one", forged)
    doc = json.loads((forged / "bundle.json").read_text())
    doc["created_at"] = "2030-01-01T00:00:00Z"
    (forged / "bundle.json").write_text(json.dumps(doc))
    for bad, code_want, error in ((flipped, 4, "bundle_tampered"), (forged, 4, "invalid_signature"),
                                  (stick / "missing", 2, "not_a_bundle")):
        code, out = bundle(b, "import", str(bad))
        assert (code, out["error"]["code"]) == (code_want, error), out
        assert event_ids(b) == before
        assert not (bad / "have").exists()

    code, out = bundle(b, "import", str(stick / "one"))
    assert code == 0, out
    ev = out["events"]
    assert ev["accepted"] == len(a_ids - before) and ev["rejected"] == 0 and ev["accepted"] >= 5
    assert event_ids(b) >= a_ids
    have = Path(out["have"])
    assert have.parent == stick / "one" / "have" and ":" not in have.name

    code, again = bundle(b, "import", str(stick / "one"))
    assert code == 0 and again["events"]["accepted"] == 0 and again["events"]["duplicates"] == ev["in_bundle"]
    b_own = chat(b, "shelter at the school has room")
    b.stop()

    only(a)
    later = {chat(a, "water at the church from 4pm"), chat(a, "generator needs fuel")}
    code, out = bundle(a, "export", "--out", str(stick / "two"), "--since", str(stick / "one"), "--no-blobs")
    assert code == 0, out
    assert out["events"]["count"] == 2 and out["since"]["kind"] == "have"
    lines = (stick / "two" / "events.jsonl").read_text().splitlines()
    assert {json.loads(x)["event_id"] for x in lines} == later
    code, summary = bundle(a, "have", str(stick / "two"))  # for B's next export the other way
    assert code == 0 and summary["event_count"] == len(event_ids(a)), summary
    assert Path(summary["path"]).parent == stick / "two" / "have"
    a.stop()

    only(b)
    code, out = bundle(b, "import", str(stick / "two"))
    assert code == 0 and out["events"]["accepted"] == 2, out
    assert event_ids(b) >= a_ids | later | {b_own}
    code, out = bundle(b, "verify", str(stick / "two"))
    assert code == 0 and out["valid"] and out["exporter_level"] == "anchor", out

    # and back: A's summary in the stick means B's bundle carries only what A lacks
    code, out = bundle(b, "export", "--out", str(stick / "back"), "--since", str(stick / "two"), "--no-blobs")
    assert code == 0 and out["events"]["count"] == 1, out
    b_ids = event_ids(b)
    b.stop()

    only(a)
    code, out = bundle(a, "import", str(stick / "back"))
    assert code == 0 and out["events"]["accepted"] == 1, out
    assert event_ids(a) == b_ids  # converged


def test_files_arrive_byte_identical(pair: tuple[Node, Node], tmp_path: Path) -> None:
    pytest.importorskip("hearthnet.services.file.service")
    from hearthnet.blobs.store import BlobStore
    from hearthnet.bundles.node import StoreReader

    a, b = pair
    data = os.urandom(3 * 256 * 1024 + 4321)
    # A is stopped: nothing else writes its store now (while it runs only the file worker does)
    cid = BlobStore(a.root / "data" / "hearthnet" / "blobs", min_free_bytes=0).add_bytes(
        data, filename="flood-map.pdf").cid
    stick = tmp_path / "stick"
    only(a, workers=CORE + ("file",))
    code, out = bundle(a, "export", "--out", str(stick), "--cids", cid, "--piece-size", "300000")
    assert code == 0, out
    assert [x["cid"] for x in out["blobs"]] == [cid] and out["blobs"][0]["pieces"] == 3
    a.stop()

    only(b, workers=CORE + ("file",))
    piece = stick / "blobs" / f"{cid.split(':')[1]}.part001"
    good = piece.read_bytes()
    piece.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    code, bad = bundle(b, "import", str(stick))
    assert (code, bad["error"]["code"]) == (4, "bundle_tampered")
    assert not StoreReader(b.root / "data" / "hearthnet" / "blobs").manifest_cids()
    piece.write_bytes(good)

    code, out = bundle(b, "import", str(stick))
    assert code == 0 and out["blobs"][0]["added"] is True and out["blobs_added"] == 1, out
    reader = StoreReader(b.root / "data" / "hearthnet" / "blobs")
    assert b"".join(reader.chunks(reader.manifest(cid))) == data
    code, again = bundle(b, "import", str(stick))
    assert code == 0 and again["blobs_added"] == 0
    have = json.loads(Path(out["have"]).read_text())
    assert cid in have["blobs"]
