"""The [[llm.backends]] entries of config.toml, as `hearthnet model` sees them, and the
restart of only the llm worker(s) that makes a running node use them.

Every write goes through `config.update_config_file` (atomic, validated by loading the
result before it replaces the file, other keys and "${VAR}" references kept). The entries
are read from the file as written (not from the loaded Config), so environment overrides
and expanded references never get baked into it.

A backend's *name* here is the model name the llm worker serves it under: `model` when
set, else the GGUF file's stem (llama_cpp, as LlamaCppBackend does), else the server URL.
"""
from __future__ import annotations

import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearthnet.errors import HearthNetError, NodeNotRunning

if TYPE_CHECKING:
    from hearthnet.config import Config

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
WAIT_LOADED_SECONDS = 60.0


def config_file(cfg: "Config") -> Path:
    return cfg.source or cfg.paths.config_file


def entry_name(entry: dict[str, Any]) -> str:
    if entry.get("model"):
        return str(entry["model"])
    if entry.get("model_path"):
        return Path(str(entry["model_path"])).stem
    if entry.get("models"):
        return str(entry["models"][0])
    return str(entry.get("url") or entry.get("name") or "?")


def raw_entries(path: Path) -> list[dict[str, Any]]:
    """The [[llm.backends]] tables exactly as written in the file."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HearthNetError("invalid_toml", f"{path}: {exc}", path=str(path)) from exc
    llm = doc.get("llm")
    backends = llm.get("backends") if isinstance(llm, dict) else None
    return [dict(b) for b in backends if isinstance(b, dict)] if isinstance(backends, list) else []


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise HearthNetError("bad_request", f"model name {name!r} must be 1-128 letters, digits "
                             "or . _ : / - (starting with a letter or digit); choose one with --name")
    return name


def add_entry(cfg: "Config", entry: dict[str, Any]) -> Path:
    """Append one backend; refuses a name that is already configured."""
    from hearthnet.config import update_config_file

    path = config_file(cfg)
    entries = raw_entries(path)
    name = entry_name(entry)
    if any(entry_name(e) == name for e in entries):
        raise HearthNetError("bad_request", f"a model named {name!r} is already configured; "
                             f"pick another --name or `hearthnet model rm {name}` first")
    return update_config_file(path, {"llm": {"backends": [*entries, entry]}})


def remove_entry(cfg: "Config", name: str) -> dict[str, Any]:
    """Drop the backend called `name`; the removed entry. not_found when none is."""
    from hearthnet.config import update_config_file

    path = config_file(cfg)
    entries = raw_entries(path)
    keep = [e for e in entries if entry_name(e) != name]
    if len(keep) == len(entries):
        known = ", ".join(entry_name(e) for e in entries) or "none"
        raise HearthNetError("not_found", f"no model named {name!r} is configured (configured: {known})")
    removed = next(e for e in entries if entry_name(e) == name)
    update_config_file(path, {"llm": {"backends": keep}})
    return removed


# --------------------------------------------------------------------------- the running node


@dataclass
class Restart:
    node_running: bool
    restarted: list[str]  # llm process names supervisord restarted
    serving: list[str]  # models the llm worker offers afterwards (llm.chat params.models)
    waited_for: str | None = None  # the model `add` waited for, when it did
    loaded: bool | None = None  # is `waited_for` served now (add: True, rm: False); None: no node

    def to_dict(self) -> dict[str, Any]:
        return {"node_running": self.node_running, "restarted": self.restarted,
                "serving": self.serving, "loaded": self.loaded}


def running_api(cfg: "Config") -> Any:
    """The local API of the node running from this config, or None."""
    from hearthnet.localapi import LocalApi

    try:
        api = LocalApi.for_running_node(cfg.paths)
    except NodeNotRunning:
        return None
    return api if api.health() else None


def llm_processes(cfg: "Config") -> list[str]:
    from hearthnet.gateway.introspect import program_of
    from hearthnet.supervisor_rpc import SupervisorRpc

    procs = SupervisorRpc(cfg.paths.supervisor_socket).processes()
    return [p["name"] for p in procs if program_of(p.get("name", "")) == "llm"]


def serving_models(api: Any) -> list[str]:
    """The models the llm worker(s) of the running node offer now."""
    try:
        caps = api.get("/api/v1/capabilities").get("capabilities", [])
    except HearthNetError:
        return []
    for c in caps:
        if c.get("name") == "llm.chat" and c.get("local", True):
            models = (c.get("params") or {}).get("models") or []
            return [str(m.get("name")) for m in models if isinstance(m, dict)]
    return []


def restart_llm(cfg: "Config", *, expect: str | None = None, gone: str | None = None,
                wait: float = WAIT_LOADED_SECONDS) -> Restart:
    """Restart only the llm program's processes (every other worker keeps its pid), then
    wait until the worker offers `expect` / no longer offers `gone`."""
    from hearthnet.supervisor_rpc import SupervisorRpc

    api = running_api(cfg)
    if api is None:
        return Restart(False, [], [])
    rpc = SupervisorRpc(cfg.paths.supervisor_socket)
    names = llm_processes(cfg)
    restarted = [n for n in names if rpc.restart_program(n)]
    rpc.poke_in_background()
    if len(restarted) != len(names) or not names:
        raise HearthNetError("internal_error", "the config was written but supervisord did not "
                             f"restart the llm worker ({', '.join(names) or 'none found'}); "
                             "restart the node to use it")
    target = expect or gone
    deadline = time.monotonic() + wait
    while True:
        serving = serving_models(api)
        done = (expect in serving) if expect else (gone not in serving)
        if done or target is None or time.monotonic() > deadline:
            return Restart(True, restarted, serving, target, (target in serving) if target else None)
        time.sleep(0.2)
