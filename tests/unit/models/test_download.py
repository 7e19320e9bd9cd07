"""Resumable, checksummed downloads against a local server (hearthnet/models/download.py)."""
from __future__ import annotations

import hashlib
import os

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.models import download as dl
from hearthnet.testing.model_servers import FileServer

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_a_whole_download(tmp_path):
    seen = []
    with FileServer({"m.gguf": DATA}) as srv:
        got = dl.download(srv.url + "/m.gguf", tmp_path / "m.gguf", SHA,
                          progress=lambda done, total: seen.append((done, total)))
    assert (tmp_path / "m.gguf").read_bytes() == DATA and got.sha256 == SHA
    assert got.resumed_from == 0 and not dl.part_path(tmp_path / "m.gguf").exists()
    assert seen[-1] == (len(DATA), len(DATA))


def test_a_dropped_connection_resumes_with_range(tmp_path):
    with FileServer({"m.gguf": DATA}, drop_after=100_000, drops=2) as srv:
        got = dl.download(srv.url + "/m.gguf", tmp_path / "m.gguf", SHA)
        ranges = [r["range"] for r in srv.requests]
    assert got.sha256 == SHA and got.attempts == 3
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])
    assert (tmp_path / "m.gguf").read_bytes() == DATA


def test_an_interrupted_run_leaves_the_part_and_the_next_run_finishes_it(tmp_path):
    dest = tmp_path / "m.gguf"
    with FileServer({"m.gguf": DATA}, drop_after=120_000, drops=1) as srv:
        with pytest.raises(HearthNetError) as exc:
            dl.download(srv.url + "/m.gguf", dest, SHA, attempts=1)
        assert "run the same command again" in exc.value.message
        assert 0 < dl.part_path(dest).stat().st_size < len(DATA) and not dest.exists()
        got = dl.download(srv.url + "/m.gguf", dest, SHA)
        assert srv.requests[-1]["range"] == f"bytes={got.resumed_from}-"
    assert got.resumed_from >= 100_000 and dest.read_bytes() == DATA


def test_a_server_without_range_restarts_from_zero(tmp_path):
    dest = tmp_path / "m.gguf"
    dl.part_path(dest).write_bytes(b"garbage that is not the prefix")
    with FileServer({"m.gguf": DATA}, honour_range=False) as srv:
        got = dl.download(srv.url + "/m.gguf", dest, SHA)
    assert got.sha256 == SHA and dest.read_bytes() == DATA


def test_a_checksum_mismatch_deletes_the_file(tmp_path):
    dest = tmp_path / "m.gguf"
    with FileServer({"m.gguf": DATA}) as srv:
        with pytest.raises(HearthNetError) as exc:
            dl.download(srv.url + "/m.gguf", dest, "0" * 64)
    assert exc.value.code == "checksum_mismatch" and exc.value.exit_code == 1
    assert not dest.exists() and not dl.part_path(dest).exists()


def test_not_found_and_refused(tmp_path):
    with FileServer({}) as srv:
        with pytest.raises(HearthNetError) as exc:
            dl.download(srv.url + "/none.gguf", tmp_path / "n.gguf", SHA)
        assert "404" in exc.value.message
        port = srv.port
    with pytest.raises(HearthNetError) as exc:
        dl.download(f"http://127.0.0.1:{port}/m.gguf", tmp_path / "n.gguf", SHA)
    assert "cannot download" in exc.value.message
