"""What `hearthnet model add|ls|rm|pull|catalogue` do, without the CLI (it only renders).

Order matters for bad input: everything is checked (the file, the name, the server)
before config.toml is written, so a refusal leaves the file byte for byte as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearthnet.errors import HearthNetError
from hearthnet.models import backends, catalogue, detect
from hearthnet.models.gguf import GgufInfo, LoadCheck, validate_model_file

if TYPE_CHECKING:
    from hearthnet.config import Config
    from hearthnet.models.download import Progress


@dataclass
class Added:
    name: str
    entry: dict[str, Any]
    config_path: Path
    restart: backends.Restart
    gguf: GgufInfo | None = None
    load_check: LoadCheck | None = None
    source: str = "file"  # file | ollama | llama_server | pull
    download: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "entry": self.entry,
                "config_path": str(self.config_path),
                "gguf": self.gguf.to_dict() if self.gguf else None,
                "load_check": self.load_check.to_dict() if self.load_check else None,
                "download": self.download, **self.restart.to_dict()}


@dataclass
class Removed:
    name: str
    entry: dict[str, Any]
    config_path: Path
    restart: backends.Restart
    deleted_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "entry": self.entry, "config_path": str(self.config_path),
                "deleted_file": self.deleted_file, **self.restart.to_dict()}


@dataclass
class Listing:
    configured: list[dict[str, Any]]
    node_running: bool
    serving: list[str]
    detected: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"configured": self.configured, "node_running": self.node_running,
                "serving": self.serving, "detected": self.detected}


# --------------------------------------------------------------------------- add / rm / ls


def add_file(cfg: "Config", path: Path, name: str | None = None, *, source: str = "file",
             download: dict[str, Any] | None = None) -> Added:
    info, check = validate_model_file(path, cfg.models.load_check_seconds)
    model = backends.check_name(name or info.path.stem)
    entry = {"name": "llama_cpp", "model": model, "model_path": str(info.path.resolve())}
    written = backends.add_entry(cfg, entry)
    restart = backends.restart_llm(cfg, expect=model)
    return Added(model, entry, written, restart, info, check, source, download)


def add_server(cfg: "Config", kind: str, url: str | None, model: str | None,
               name: str | None = None) -> Added:
    """An Ollama (`kind` "ollama") or llama.cpp server ("llama_server") on this machine:
    it must answer, and serve the model named (default: its first)."""
    base = url or (cfg.models.detect_ollama_url if kind == "ollama" else cfg.models.detect_llama_cpp_url)
    probe = detect.probe_ollama if kind == "ollama" else detect.probe_llama_server
    found = probe(base, 2.0)
    label = "Ollama" if kind == "ollama" else "llama.cpp server"
    if found is None:
        raise HearthNetError("bad_request", f"no {label} answers at {base}; start it first "
                             "(or pass its --url)")
    if model is None:
        if not found.models:
            raise HearthNetError("bad_request", f"the {label} at {base} lists no model; "
                                 "pull one into it or pass --model")
        model = found.models[0]
    elif found.models and model not in found.models:
        raise HearthNetError("bad_request", f"the {label} at {base} has no model {model!r} "
                             f"(it has: {', '.join(found.models)})")
    backends.check_name(model)
    entry = detect.backend_entry("ollama" if kind == "ollama" else "llama_cpp_server", found.url, model)
    written = backends.add_entry(cfg, entry)
    restart = backends.restart_llm(cfg, expect=model)
    return Added(model, entry, written, restart, source=kind)


def remove(cfg: "Config", name: str, *, delete_file: bool = False) -> Removed:
    removed = backends.remove_entry(cfg, name)
    restart = backends.restart_llm(cfg, gone=name)
    deleted = None
    if delete_file and removed.get("model_path"):
        path = Path(str(removed["model_path"])).expanduser()
        if path.is_file():
            path.unlink()
            deleted = str(path)
    return Removed(name, removed, backends.config_file(cfg), restart, deleted)


def listing(cfg: "Config", *, detect_servers: bool = True) -> Listing:
    api = backends.running_api(cfg)
    serving = backends.serving_models(api) if api is not None else []
    configured = []
    for e in backends.raw_entries(backends.config_file(cfg)):
        name = backends.entry_name(e)
        configured.append({"name": name, "backend": e.get("name"),
                           "where": e.get("model_path") or e.get("url") or "",
                           "serving": name in serving if api is not None else None})
    found = [d.to_dict() for d in detect.offers(cfg)] if detect_servers else []
    return Listing(configured, api is not None, serving, found)


# --------------------------------------------------------------------------- pull


def online_mode(cfg: "Config") -> str:
    """This node's emergency mode: the running detector's, else one probe round now."""
    api = backends.running_api(cfg)
    if api is not None and cfg.emergency.enabled:
        try:
            out = api.output("emergency.status", {})
            if isinstance(out.get("mode"), str):
                return out["mode"]
        except HearthNetError:
            pass
    return _probe_once(cfg)


def _probe_once(cfg: "Config") -> str:
    import asyncio

    from hearthnet.emergency.probes import parse_target, run_round, tls_context
    from hearthnet.emergency.state import classify

    probes = [p for p in (parse_target(t) for t in cfg.emergency.probe_targets) if p.deciding]
    if not probes:
        return "online"  # nothing to probe: the detector says online too
    tls = tls_context(cfg.emergency.https_ca_file) if cfg.emergency.https_ca_file else None
    results = asyncio.run(run_round(probes, 3.0, None, tls))
    return classify([r.ok for r in results])


def models_dir(cfg: "Config") -> Path:
    return cfg.paths.data_dir / "models"


def pull(cfg: "Config", name: str, *, sha256: str | None = None, as_name: str | None = None,
         progress: "Progress | None" = None) -> Added:
    from hearthnet.models.download import download

    entry = catalogue.find(cfg, name)
    want = (sha256 or entry.sha256 or "").lower() or None
    if want is None:
        raise HearthNetError("bad_request", f"the catalogue has no verified sha256 for {name!r} yet; "
                             "read it from the file's page and pass --sha256 HEX",
                             hint=f"the file is {entry.url}")
    if sha256 and not catalogue.SHA256_RE.match(want):
        raise HearthNetError("bad_request", "--sha256 must be 64 hex digits")
    mode = online_mode(cfg)
    if mode != "online":
        raise HearthNetError("offline", f"this node is {mode} (emergency detector): `model pull` "
                             "downloads from the internet only when online; copy a GGUF file "
                             "here and use `hearthnet model add FILE` instead")
    dest = models_dir(cfg) / entry.file
    url = catalogue.download_url(cfg, entry)
    if dest.is_file():
        from hearthnet.models.download import sha256_of

        if sha256_of(dest) == want:  # already here: just add it
            return add_file(cfg, dest, as_name or entry.name, source="pull",
                            download={"url": url, "sha256": want, "resumed_from": None,
                                      "already_present": True})
    got = download(url, dest, want, progress=progress)
    return add_file(cfg, dest, as_name or entry.name, source="pull",
                    download={"url": url, "sha256": got.sha256, "size": got.size,
                              "resumed_from": got.resumed_from, "attempts": got.attempts,
                              "already_present": False})
