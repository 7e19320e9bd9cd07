"""`hearthnet bundle`: size parsing and what people and --json see (the work itself is
tested in tests/unit/bundles and tests/integration/test_bundles.py)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import click
import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES
from hearthnet.bundles.export import ExportOptions, export_bundle
from hearthnet.bundles.importer import import_bundle
from hearthnet.cli.commands.bundle import (ExportCommandResult, ImportCommandResult, MAX_PIECE_BYTES,
                                           parse_size)
from hearthnet.cli.render import Output, emit

from tests.unit.bundles.conftest import FakeNode, community, pair  # noqa: F401  (fixtures)


@pytest.mark.parametrize("text,n", [("2G", 2 * 1024 ** 3), ("700M", 700 * 1024 ** 2), ("64k", 65536),
                                    ("100000", 100000), ("1GiB", 1024 ** 3), ("4095M", 4095 * 1024 ** 2)])
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["0", "4G", "-1", "2T", "lots", ""])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_size(text)
    assert MAX_PIECE_BYTES < 4 * 1024 ** 3


def test_human_and_json_output(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:  # noqa: F811
    a, b = pair
    a.append("hello")
    a.store.add_bytes(os.urandom(CHUNK_SIZE_BYTES + 1), filename="map.pdf")
    exported = ExportCommandResult(export_bundle(a, a.reader, a.kp, a.community_id,
                                                 ExportOptions(out=tmp_path / "b", piece_size=100_000)))
    imported = ImportCommandResult(import_bundle(tmp_path / "b", b, community_id=b.community_id, kp=b.kp,
                                                 store=b.reader))
    for result, keys in ((exported, {"out", "community_id", "exporter", "created_at", "since", "bytes", "events",
                                     "blobs", "blobs_skipped", "ignored_summaries"}),
                         (imported, {"bundle", "exporter", "exporter_level", "community_id", "created_at",
                                     "events", "blobs", "blobs_added", "have", "have_error"})):
        text = io.StringIO()
        emit(result, as_json=True, out=Output(text, io.StringIO()))
        assert set(json.loads(text.getvalue())) == keys | {"ok", "schema_version"}
        human = io.StringIO()
        emit(result, as_json=False, out=Output(human, io.StringIO()))
        assert "map.pdf" in human.getvalue()
    assert "1 added" in human.getvalue() and "have" in human.getvalue()


def test_verify_offline_and_exit_codes(pair: tuple[FakeNode, FakeNode], tmp_path: Path, env, runner) -> None:  # noqa: F811
    from tests.unit.cli.conftest import invoke

    a, _ = pair
    a.append("hi")
    root = tmp_path / "stick"
    export_bundle(a, a.reader, a.kp, a.community_id, ExportOptions(out=root))
    ok = invoke(runner, "bundle", "verify", str(root), "--json")
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["valid"] and doc["events"] == 1 and doc["exporter_level"] is None  # no node: no membership check
    (root / "events.jsonl").write_bytes((root / "events.jsonl").read_bytes().replace(b"hi", b"ho"))
    bad = invoke(runner, "bundle", "verify", str(root), "--json")
    assert bad.exit_code == 4 and json.loads(bad.stdout)["error"]["code"] == "bundle_tampered"
    missing = invoke(runner, "bundle", "import", str(tmp_path / "nope"), "--json")
    assert missing.exit_code == 2 and str(tmp_path / "nope") in json.loads(missing.stdout)["error"]["message"]
    assert invoke(runner, "bundle", "have", str(tmp_path / "nope"), "--json").exit_code == 2
    assert invoke(runner, "bundle", "export", "--out", str(tmp_path / "x"), "--piece-size", "5G").exit_code == 2
