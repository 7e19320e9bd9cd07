"""GGUF validation on generated good, truncated and bad files (hearthnet/models/gguf.py)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.models import gguf
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("g") / "tiny.gguf")


def _refused(path: Path, reason: str) -> HearthNetError:
    with pytest.raises(HearthNetError) as exc:
        gguf.validate_model_file(path)
    assert exc.value.code == "bad_request" and exc.value.exit_code == 2
    assert exc.value.details["reason"] == reason, exc.value.message
    return exc.value


def test_a_whole_file_parses_and_loads(good):
    info, check = gguf.validate_model_file(good)
    assert (info.version, info.architecture, info.context_length) == (3, "llama", 512)
    assert info.tensor_count == 21 and info.kv_count == 24 and info.name == "tiny-llama"
    assert info.data_end == info.size == good.stat().st_size
    assert check.status in ("ok", "skipped")


def test_truncated_in_the_header_or_the_tensors(good, tmp_path):
    data = good.read_bytes()
    for cut, where in ((len(data) - 1, "tensors need"), (3000, "header ends early"), (10, "header ends early")):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        assert where in _refused(p, "truncated").message


def test_not_gguf(tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("hello, this is text\n")
    assert "is not a GGUF model file" in _refused(p, "not_gguf").message
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    _refused(empty, "not_gguf")
    _refused(tmp_path / "absent.gguf", "missing")


def test_unsupported_version_and_damaged_counts(good, tmp_path):
    data = bytearray(good.read_bytes())
    v1 = tmp_path / "v1.gguf"
    v1.write_bytes(bytes(data[:4]) + struct.pack("<I", 1) + bytes(data[8:]))
    _refused(v1, "version")
    huge = tmp_path / "huge.gguf"
    huge.write_bytes(bytes(data[:8]) + struct.pack("<Q", 1 << 40) + bytes(data[16:]))
    _refused(huge, "damaged")


def _with_arch(good: Path, tmp_path: Path, arch: bytes) -> Path:
    data = good.read_bytes()
    old = struct.pack("<Q", 5) + b"llama"
    assert len(arch) == 5 and data.count(old) >= 1
    p = tmp_path / f"{arch.decode()}.gguf"
    p.write_bytes(data.replace(old, struct.pack("<Q", 5) + arch, 1))  # general.architecture
    return p


def test_unknown_architecture_is_refused_by_llama_cpp(good, tmp_path):
    pytest.importorskip("llama_cpp")
    p = _with_arch(good, tmp_path, b"zzzzz")
    assert gguf.inspect_gguf(p).architecture == "zzzzz"  # the header itself is fine
    err = _refused(p, "unsupported")
    assert "unknown model architecture" in err.message and "zzzzz" in err.message


def test_without_llama_cpp_the_load_check_says_skipped(good, monkeypatch):
    monkeypatch.setattr(gguf, "_LOAD_SCRIPT", "import sys; print('missing'); sys.exit(3)")
    info, check = gguf.validate_model_file(good)
    assert check.status == "skipped" and "not installed" in check.detail


def test_a_hanging_loader_is_bounded(good, monkeypatch):
    monkeypatch.setattr(gguf, "_LOAD_SCRIPT", "import time; time.sleep(30)")
    _refused_timeout = pytest.raises(HearthNetError)
    with _refused_timeout as exc:
        gguf.validate_model_file(good, timeout=0.5)
    assert exc.value.details["reason"] == "load_timeout"
