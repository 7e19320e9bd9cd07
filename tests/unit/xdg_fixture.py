"""Shared test isolation: every test gets its own XDG tree and run dir under tmp_path,
and no HEARTHNET_* variable leaks in from the developer's shell.

Import `isolated_xdg` into a test module (autouse) to apply it there."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith("HEARTHNET_"):
            monkeypatch.delenv(var)
    for var, sub in (
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("HEARTHNET_RUN_DIR", str(tmp_path / "run"))
    return tmp_path
