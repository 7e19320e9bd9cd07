"""`hearthnet file add|get|ls|pin|unpin|gc` against a fake local API: what each command
sends, its --json keys, exit codes (missing path 2 before any call, not_found 1,
unauthorized 4, capacity_exceeded 5) and the human output."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from hearthnet.identity import keys
from tests.unit.cli.conftest import invoke, sse, json_result

CID = "blake3:" + "ab" * 32
CID2 = "blake3:" + "cd" * 32
PEER = keys.generate().node_id_full
PEER2 = keys.generate().node_id_full
STATUS = {"not_found": 404, "unauthorized": 401, "capacity_exceeded": 429, "bad_request": 400}


def manifest(cid: str = CID, name: str = "map.pdf", size: int = 1_200_000) -> dict[str, Any]:
    return {"cid": cid, "size_bytes": size, "chunk_size_bytes": 262144, "chunks": [], "mime_type": None,
            "filename": name}


def serve(gateway, answers: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Answer each capability: a list of frames (a stream), an error, or a unary output."""
    seen: list[tuple[str, dict[str, Any]]] = []

    async def on_call(request: web.Request, body: dict[str, Any]) -> Any:
        cap = request.headers["X-HearthNet-Capability"]
        seen.append((cap, body["input"]))
        answer = answers[cap]
        if isinstance(answer, dict) and "error" in answer:
            return web.json_response(answer, status=STATUS[answer["error"]])
        if isinstance(answer, list):
            assert request.headers["Accept"] == "text/event-stream"
            return await sse(request, answer)
        return web.json_response({"output": answer, "meta": {}})

    gateway.on_call = on_call
    return seen


def test_add_sends_absolute_paths_and_prints_the_cids(runner, gateway, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "map.pdf").write_bytes(b"%PDF")
    monkeypatch.chdir(tmp_path)
    seen = serve(gateway, {"file.add": [("progress", {"current": 4, "total": 4, "stage": "hashing"}),
                                        ("done", {"manifest": manifest(), "pinned": True, "added": True})]})
    r = invoke(runner, "file", "add", "map.pdf", "--pin", "--json")
    assert r.exit_code == 0, r.output
    assert seen == [("file.add", {"path": str(tmp_path / "map.pdf"), "pin": True})]
    doc = json_result(r.stdout)
    assert doc == {"files": [{"path": str(tmp_path / "map.pdf"), "cid": CID, "filename": "map.pdf",
                              "size_bytes": 1_200_000, "pinned": True, "added": True}]}
    human = invoke(runner, "file", "add", "map.pdf")
    assert human.exit_code == 0 and CID in human.stdout and "1.2 MB" in human.stdout


def test_add_of_a_missing_path_exits_2_naming_it_before_any_call(runner, gateway, tmp_path: Path) -> None:
    (tmp_path / "here").write_bytes(b"x")
    seen = serve(gateway, {})
    r = invoke(runner, "file", "add", str(tmp_path / "here"), str(tmp_path / "gone.txt"))
    assert r.exit_code == 2 and "gone.txt does not exist" in r.stderr
    j = invoke(runner, "file", "add", str(tmp_path), "--json")
    assert j.exit_code == 2 and json.loads(j.stdout)["error"]["code"] == "usage"
    assert seen == []


def test_add_when_the_store_is_full_exits_5(runner, gateway, tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x")
    serve(gateway, {"file.add": {"error": "capacity_exceeded", "message": "storing 9 bytes would leave 0 free"}})
    r = invoke(runner, "file", "add", str(tmp_path / "big"))
    assert r.exit_code == 5 and "capacity_exceeded" in r.stderr


def test_get_fetches_and_writes_out(runner, gateway, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    done = {"manifest": manifest(), "out": str(tmp_path / "copy.pdf"), "from": {PEER: 5}, "resumed_chunks": 2,
            "dropped": [PEER2], "failures": {PEER2: 3}, "ms": 1500}
    seen = serve(gateway, {"file.get": [("progress", {"current": 10, "total": 20, "stage": "fetching",
                                                      "sources": 1, "rate_bytes_s": 10.0}), ("done", done)]})
    r = invoke(runner, "file", "get", CID, "--out", "copy.pdf", "--json")
    assert r.exit_code == 0, r.output
    assert seen == [("file.get", {"cid": CID, "out": str(tmp_path / "copy.pdf")})]
    assert json_result(r.stdout) == {"cid": CID, "filename": "map.pdf", "size_bytes": 1_200_000,
                                    "out": str(tmp_path / "copy.pdf"), "from": {PEER: 5}, "fetched": True,
                                    "resumed_chunks": 2, "dropped": [PEER2], "failures": {PEER2: 3}, "ms": 1500}
    human = invoke(runner, "file", "get", CID, "--out", "copy.pdf")
    assert "fetched map.pdf" in human.stdout and "5 chunks" in human.stdout and "wrote" in human.stdout
    assert "resumed: 2 chunks" in human.stdout and "after 3 failures" in human.stdout


def test_get_errors_map_to_exit_codes(runner, gateway) -> None:
    serve(gateway, {"file.get": {"error": "not_found", "message": "no known node holds it"}})
    assert invoke(runner, "file", "get", CID).exit_code == 1
    serve(gateway, {"file.get": {"error": "unauthorized", "message": "no"}})
    assert invoke(runner, "file", "get", CID).exit_code == 4
    bad = invoke(runner, "file", "get", "not-a-cid", "--json")
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["code"] == "usage"


LISTING = {"files": [
    {"cid": CID, "filename": "map.pdf", "size_bytes": 1_200_000, "pinned": True, "complete": True,
     "chunks_missing": 0, "holders": [PEER], "last_used": "2026-12-01T03:00:00Z"},
    {"cid": CID2, "filename": None, "size_bytes": 10, "pinned": False, "complete": False, "chunks_missing": 1,
     "holders": [], "last_used": "2026-12-01T03:00:00Z"}],
    "usage": {"capacity_bytes": 100 * 10**9, "free_bytes": 60 * 10**9, "store_bytes": 1_200_010,
              "used_bytes": 40 * 10**9, "fraction": 0.4, "min_free_bytes": 10**9}}


def test_ls(runner, gateway) -> None:
    serve(gateway, {"file.ls": LISTING})
    r = invoke(runner, "file", "ls", "--json")
    assert r.exit_code == 0 and json_result(r.stdout) == LISTING
    human = invoke(runner, "file", "ls")
    for text in ("abababababababab", "map.pdf", "1 chunks missing", "60.0 GB free", "40 % used"):
        assert text in human.stdout, text


def test_pin_and_unpin_resolve_a_prefix_of_a_stored_file(runner, gateway) -> None:
    seen = serve(gateway, {"file.ls": LISTING, "file.pin": {"cid": CID, "pinned": True},
                           "file.unpin": {"cid": CID, "pinned": False}})
    r = invoke(runner, "file", "pin", "abab", "--json")
    assert r.exit_code == 0 and json_result(r.stdout) == {"cid": CID, "pinned": True}
    assert seen[-1] == ("file.pin", {"cid": CID})
    assert invoke(runner, "file", "unpin", CID).stdout.strip() == f"{CID} unpinned"
    assert invoke(runner, "file", "pin", "ffff").exit_code == 1  # no such file here


def test_gc(runner, gateway) -> None:
    serve(gateway, {"file.gc": {"freed_bytes": 2_000_000, "evicted": [CID2]}})
    r = invoke(runner, "file", "gc", "--json")
    assert r.exit_code == 0 and json_result(r.stdout) == {"freed_bytes": 2_000_000, "evicted": [CID2]}
    assert "freed 2.0 MB" in invoke(runner, "file", "gc").stdout
