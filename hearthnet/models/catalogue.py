"""Known small GGUF models that `hearthnet model pull NAME` downloads (catalogue.json).

`[models] catalogue_file` names a JSON file of the same shape whose entries add to (or,
by name, replace) the built-in ones: a community's own list, or a test's. `[models]
catalogue_url_base` makes every download come from `<base>/<file>` instead of the entry's
own URL: a LAN mirror, or a test's local HTTP server.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearthnet.errors import HearthNetError

if TYPE_CHECKING:
    from hearthnet.config import Config

BUILTIN = Path(__file__).with_name("catalogue.json")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.gguf$")


@dataclass(frozen=True)
class Entry:
    name: str
    url: str
    file: str
    sha256: str | None  # None: not verified yet
    license: str
    size_bytes: int | None = None
    approx_mb: int | None = None
    description: str = ""
    architecture: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "file": self.file, "sha256": self.sha256,
                "license": self.license, "size_bytes": self.size_bytes, "approx_mb": self.approx_mb,
                "description": self.description, "architecture": self.architecture,
                "verified": self.sha256 is not None}


def _entry(raw: Any, where: str) -> Entry:
    if not isinstance(raw, dict):
        raise HearthNetError("bad_request", f"{where}: a catalogue entry must be an object")
    try:
        e = Entry(name=str(raw["name"]), url=str(raw["url"]), file=str(raw["file"]),
                  sha256=(str(raw["sha256"]).lower() if raw.get("sha256") else None),
                  license=str(raw.get("license") or "unknown"),
                  size_bytes=raw.get("size_bytes"), approx_mb=raw.get("approx_mb"),
                  description=str(raw.get("description") or ""),
                  architecture=str(raw.get("architecture") or ""))
    except KeyError as exc:
        raise HearthNetError("bad_request", f"{where}: entry lacks {exc.args[0]!r}") from None
    if not FILE_RE.match(e.file):  # it becomes a file name under <DATA>/models/
        raise HearthNetError("bad_request", f"{where}: file {e.file!r} is not a plain *.gguf name")
    if e.sha256 is not None and not SHA256_RE.match(e.sha256):
        raise HearthNetError("bad_request", f"{where}: sha256 of {e.name!r} is not 64 hex digits")
    if not e.url.startswith(("http://", "https://")):
        raise HearthNetError("bad_request", f"{where}: url of {e.name!r} is not http(s)")
    return e


def _read(path: Path) -> list[Entry]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HearthNetError("bad_request", f"catalogue {path}: {exc}") from exc
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list):
        raise HearthNetError("bad_request", f"catalogue {path}: no \"models\" list")
    return [_entry(m, f"catalogue {path}") for m in models]


def load(cfg: "Config") -> list[Entry]:
    """The built-in entries, then the configured file's (same name: the file's wins)."""
    entries = {e.name: e for e in _read(BUILTIN)}
    if cfg.models.catalogue_file:
        entries.update({e.name: e for e in _read(Path(cfg.models.catalogue_file).expanduser())})
    return list(entries.values())


def find(cfg: "Config", name: str) -> Entry:
    entries = load(cfg)
    for e in entries:
        if e.name == name:
            return e
    raise HearthNetError("not_found", f"no model {name!r} in the catalogue (known: "
                         f"{', '.join(e.name for e in entries)}); see `hearthnet model catalogue`")


def download_url(cfg: "Config", entry: Entry) -> str:
    base = cfg.models.catalogue_url_base
    return f"{base.rstrip('/')}/{entry.file}" if base else entry.url
