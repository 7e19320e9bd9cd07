"""The package as users get it: a wheel built from the repo, installed into a fresh venv,
must run `hearthnet init` and `hearthnet run` (template and workers ship in the wheel)."""
from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from hearthnet.testing.nodes import Node

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_wheel_install_runs(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("hearthnet-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hearthnet/supervisor.conf" in names
    assert "workers/llm.py" in names and "workers/broker.py" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=600)

    node = Node(tmp_path / "home", "wheel", python=python)
    node.cwd = tmp_path  # keep the checkout off sys.path: import the installed package
    where = subprocess.run([python, "-c", "import hearthnet, workers; print(hearthnet.__file__, workers.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(env_dir) in where and str(REPO) not in where
    try:
        node.init()
        node.start(wait_workers=("broker", "gateway", "llm"))
        r = node.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        node.stop()  # SIGTERM, up to 15 s, then kill: exit code 0 means it stopped by itself
        assert node.proc.returncode == 0
        assert node.leftovers() == []
    finally:
        node.cleanup()
