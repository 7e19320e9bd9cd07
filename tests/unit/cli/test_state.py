from __future__ import annotations

from pathlib import Path

from hearthnet.cli.state import CliState


def test_config_loaded_once_and_lazily(env):
    state = CliState()
    assert state._config is None
    cfg = state.config()
    assert state.config() is cfg
    assert state.log_dir() == cfg.paths.log_dir == env.log_dir


def test_command_level_config_overrides(tmp_path):
    state = CliState(config_path=Path("/a.toml"))
    assert state.with_config_path(None) is state
    assert state.with_config_path(tmp_path / "b.toml").config_path == tmp_path / "b.toml"
