"""Where a node's directories are (XDG) and where its run dir is: plain functions on str
paths, no dataclasses and no pathlib at import, so `hearthnet status` (hearthnet.fastcli)
finds the running node without the cost of hearthnet.paths' imports. hearthnet.paths
re-exports them."""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs the fast CLI ~5 ms
if TYPE_CHECKING:
    import hashlib
    from pathlib import Path

APP = "hearthnet"


def default_run_dir(env: dict[str, str] | None = None) -> "Path":
    """default_paths().run_dir, computed alone."""
    from pathlib import Path

    return Path(default_run_dir_str(env))


def default_run_dir_str(env: dict[str, str] | None = None) -> str:
    """default_run_dir() as a str (the fast CLI path imports no pathlib)."""
    return _run_dir_for(_user_dir("data"), env)


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


def run_dir_for(data_dir: "Path", env: dict[str, str] | None = None) -> "Path":
    from pathlib import Path

    return Path(_run_dir_for(str(data_dir), env))


def _run_dir_for(data_dir: str, env: dict[str, str] | None) -> str:
    env = os.environ if env is None else env
    if env.get("HEARTHNET_RUN_DIR"):
        return str(env["HEARTHNET_RUN_DIR"])
    name = run_dir_name(data_dir)
    runtime = env.get("XDG_RUNTIME_DIR")
    # A node run by `systemd --user` (hearthnet service install --user) has a private /tmp
    # and its run dir in $XDG_RUNTIME_DIR under the same name: find it while it runs.
    if runtime and os.path.exists(os.path.join(runtime, name, "api.json")):
        return os.path.join(runtime, name)
    return os.path.join("/tmp", name)


def run_dir_name(data_dir: "Path | str") -> str:
    """The run dir's name: one per user and data dir."""
    digest = _sha256(os.path.realpath(data_dir).encode()).hexdigest()[:12]
    return f"hearthnet-{os.getuid()}-{digest}"


def _sha256(data: bytes) -> "hashlib._Hash":
    """hashlib.sha256(data); the builtin module first: hashlib loads OpenSSL (~5 ms)."""
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    return sha256(data)
