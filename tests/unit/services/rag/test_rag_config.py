"""`[rag]` in config.toml: defaults, environment overrides, validation, the settings the
worker derives, and the program `hearthnet run` starts."""
from __future__ import annotations

import pytest

from hearthnet.config import load_config
from hearthnet.errors import ConfigError
from hearthnet.services.rag.service import RagSettings
from hearthnet.supervise import programs_for


def _load(tmp_path, text: str = "", **env: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, env={**env})


def test_defaults_and_settings(tmp_path):
    cfg = _load(tmp_path, '[embedding]\nmodel = "all-MiniLM-L6-v2"\n')
    r = cfg.rag
    assert (r.enabled, r.embedding_model, r.retrieval, r.relevance_threshold, r.auto_replicate) == \
        (True, "", "hybrid", 0.3, False)
    assert r.corpora_dir.name == "embeddings"
    s = RagSettings.from_config(cfg)
    assert s.embedding_model == "all-MiniLM-L6-v2" and s.corpora_dir == r.corpora_dir  # "" = [embedding] model
    assert any(p.name == "rag" for p in programs_for(cfg, no_ui=True))


def test_overrides_and_validation(tmp_path):
    cfg = _load(tmp_path, '[rag]\nretrieval = "vector"\nembedding_model = "m"\n',
                HEARTHNET_RAG_AUTO_REPLICATE="true", HEARTHNET_RAG_ENABLED="false")
    assert cfg.rag.retrieval == "vector" and cfg.rag.auto_replicate is True
    assert RagSettings.from_config(cfg).embedding_model == "m"
    assert not any(p.name == "rag" for p in programs_for(cfg, no_ui=True))
    for bad in ('retrieval = "bm25"', "relevance_threshold = 2.0"):
        with pytest.raises(ConfigError) as exc:
            _load(tmp_path, f"[rag]\n{bad}\n")
        assert "rag." in exc.value.message
