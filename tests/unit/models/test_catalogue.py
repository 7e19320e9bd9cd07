"""The catalogue of known small GGUFs (hearthnet/models/catalogue.py)."""
from __future__ import annotations

import json

import pytest

from hearthnet.config import load_config
from hearthnet.errors import HearthNetError
from hearthnet.models import catalogue


def test_builtin_entries_are_well_formed():
    entries = catalogue.load(load_config())
    names = {e.name for e in entries}
    assert "tinyllama-1.1b-chat" in names
    for e in entries:
        assert e.url.startswith("https://huggingface.co/") and e.file.endswith(".gguf")
        assert e.license and e.license != "unknown"
        # Built in means checked: every entry is pinned by sha256 and size.
        assert e.sha256 is not None and catalogue.SHA256_RE.match(e.sha256), e
        assert e.to_dict()["verified"] is True and e.to_dict()["size_bytes"], e


def test_a_catalogue_file_adds_and_replaces_and_the_url_base_moves_downloads(tmp_path, monkeypatch):
    extra = tmp_path / "cat.json"
    extra.write_text(json.dumps({"models": [
        {"name": "tiny", "url": "https://example.invalid/tiny.gguf", "file": "tiny.gguf",
         "sha256": "AB" * 32, "license": "MIT"},
        {"name": "tinyllama-1.1b-chat", "url": "https://mirror.invalid/t.gguf", "file": "t.gguf",
         "sha256": None, "license": "Apache-2.0"}]}))
    monkeypatch.setenv("HEARTHNET_MODELS_CATALOGUE_FILE", str(extra))
    monkeypatch.setenv("HEARTHNET_MODELS_CATALOGUE_URL_BASE", "http://127.0.0.1:9/m/")
    cfg = load_config()
    tiny = catalogue.find(cfg, "tiny")
    assert tiny.sha256 == "ab" * 32
    assert catalogue.find(cfg, "tinyllama-1.1b-chat").file == "t.gguf"
    assert catalogue.download_url(cfg, tiny) == "http://127.0.0.1:9/m/tiny.gguf"
    with pytest.raises(HearthNetError) as exc:
        catalogue.find(cfg, "nope")
    assert exc.value.code == "not_found" and "tiny" in exc.value.message


@pytest.mark.parametrize("bad", [
    {"name": "x", "url": "https://a/x.gguf", "file": "../../etc/x.gguf", "license": "MIT"},
    {"name": "x", "url": "https://a/x.gguf", "file": "x.bin", "license": "MIT"},
    {"name": "x", "url": "file:///x.gguf", "file": "x.gguf", "license": "MIT"},
    {"name": "x", "url": "https://a/x.gguf", "file": "x.gguf", "sha256": "123"},
    {"name": "x", "file": "x.gguf"},
])
def test_bad_entries_are_refused(tmp_path, monkeypatch, bad):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"models": [bad]}))
    monkeypatch.setenv("HEARTHNET_MODELS_CATALOGUE_FILE", str(f))
    with pytest.raises(HearthNetError) as exc:
        catalogue.load(load_config())
    assert exc.value.code == "bad_request"
