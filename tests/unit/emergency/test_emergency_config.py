"""[emergency] config: targets validated at load, the program wired in, the worker's
service built from the config."""
from __future__ import annotations

import pytest

from hearthnet.config import load_config
from hearthnet.errors import ConfigError
from hearthnet.supervise import programs_for, render_supervisor_conf


def _load(tmp_path, text: str = "", **env: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, env={**env})


def test_defaults_and_program(tmp_path):
    cfg = _load(tmp_path)
    assert cfg.emergency.enabled and cfg.emergency.probe_targets[0] == "1.1.1.1"
    progs = programs_for(cfg, no_ui=True)
    assert any(p.name == "emergency" for p in progs)
    assert "-m workers.emergency" in render_supervisor_conf(cfg, progs, debug=False)
    off = _load(tmp_path, HEARTHNET_EMERGENCY_ENABLED="false")
    assert not any(p.name == "emergency" for p in programs_for(off, no_ui=True))


def test_targets_from_env_and_validation(tmp_path):
    cfg = _load(tmp_path, HEARTHNET_EMERGENCY_PROBE_TARGETS="dns:10.0.0.1:5353, http204:http://x/generate_204")
    assert cfg.emergency.probe_targets == ("dns:10.0.0.1:5353", "http204:http://x/generate_204")
    assert _load(tmp_path, HEARTHNET_EMERGENCY_PROBE_TARGETS="").emergency.probe_targets == ()
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, '[emergency]\nprobe_targets = ["dns:not-an-ip"]\n')
    assert "emergency.probe_targets" in exc.value.message
