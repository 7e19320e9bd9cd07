"""`[market]` in config.toml: defaults, environment overrides, validation, the settings
the worker derives, and the program `hearthnet run` starts."""
from __future__ import annotations

import pytest

from hearthnet.config import load_config
from hearthnet.errors import ConfigError
from hearthnet.services.market.service import MarketSettings
from hearthnet.supervise import programs_for, render_supervisor_conf


def _load(tmp_path, text: str = "", **env: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, env={**env})


def test_defaults_settings_and_program(tmp_path):
    cfg = _load(tmp_path)
    m = cfg.market
    assert (m.enabled, m.default_ttl_seconds, m.max_ttl_seconds, m.search_cache_entries, m.sweep_seconds) == \
        (True, 604800, 2592000, 5000, 60.0)
    s = MarketSettings.from_config(cfg)
    assert (s.max_ttl_seconds, s.cache_entries, s.embedding_model) == (2592000, 5000, "all-MiniLM-L6-v2")
    progs = programs_for(cfg, no_ui=True)
    assert any(p.name == "market" for p in progs)
    assert "-m workers.market" in render_supervisor_conf(cfg, progs, debug=False)


def test_overrides_and_validation(tmp_path):
    cfg = _load(tmp_path, "[market]\nmax_ttl_seconds = 86400\ndefault_ttl_seconds = 3600\n",
                HEARTHNET_MARKET_ENABLED="false", HEARTHNET_MARKET_SWEEP_SECONDS="5")
    assert cfg.market.max_ttl_seconds == 86400 and cfg.market.sweep_seconds == 5
    assert not any(p.name == "market" for p in programs_for(cfg, no_ui=True))
    for bad in ("default_ttl_seconds = 0", "search_cache_entries = 0", "sweep_seconds = 0"):
        with pytest.raises(ConfigError) as exc:
            _load(tmp_path, f"[market]\n{bad}\n")
        assert "market." in exc.value.message
