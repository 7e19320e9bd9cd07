"""Where a node's directories are (XDG) and where its run dir is: plain functions, no
dataclasses, so `hearthnet status --json` (hearthnet.fastcli) finds the running node without
the cost of hearthnet.paths' imports. hearthnet.paths re-exports them."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

APP = "hearthnet"


def default_run_dir(env: dict[str, str] | None = None) -> Path:
    """default_paths().run_dir, computed alone."""
    return run_dir_for(Path(_user_dir("data")), env)


_XDG = {"data": ("XDG_DATA_HOME", "~/.local/share"), "config": ("XDG_CONFIG_HOME", "~/.config"),
        "cache": ("XDG_CACHE_HOME", "~/.cache"), "state": ("XDG_STATE_HOME", "~/.local/state")}


def _user_dir(kind: str) -> str:
    """platformdirs' user_<kind>_dir(APP) on Linux, without importing platformdirs (~20 ms
    of every CLI command): $XDG_<KIND>_HOME when it is absolute, else the XDG default."""
    home = os.environ.get("HOME", "")
    if not sys.platform.startswith("linux") or (home and not os.path.isabs(home)):
        import platformdirs  # other platforms, and the odd relative HOME: its own rules

        return str(getattr(platformdirs, f"user_{kind}_dir")(APP))
    var, default = _XDG[kind]
    base = os.environ.get(var, "")
    return os.path.join(base if os.path.isabs(base) else os.path.expanduser(default), APP)


def run_dir_for(data_dir: Path, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("HEARTHNET_RUN_DIR"):
        return Path(env["HEARTHNET_RUN_DIR"])
    name = run_dir_name(data_dir)
    runtime = env.get("XDG_RUNTIME_DIR")
    # A node run by `systemd --user` (hearthnet service install --user) has a private /tmp
    # and its run dir in $XDG_RUNTIME_DIR under the same name: find it while it runs.
    if runtime and (Path(runtime) / name / "api.json").exists():
        return Path(runtime) / name
    return Path("/tmp") / name


def run_dir_name(data_dir: Path) -> str:
    """The run dir's name: one per user and data dir."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return f"hearthnet-{os.getuid()}-{digest}"
