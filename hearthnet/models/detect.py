"""An LLM server already running on this machine, which the node could use at once.

Two well-known servers on their default loopback ports: Ollama (GET /api/tags lists its
models) and llama.cpp's `llama-server` (GET /v1/models; it speaks the OpenAI API). Each
probe is one short GET to loopback only ([models] detect_* URLs can move the ports, e.g.
for tests, but never off this machine). Nothing here changes config: `init` offers what is
found and `doctor` names the command that adds it.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearthnet.errors import HearthNetError

if TYPE_CHECKING:
    from hearthnet.config import Config

PROBE_TIMEOUT_SECONDS = 0.5
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Detected:
    kind: str  # "ollama" | "llama_cpp_server"
    url: str  # the server's base URL
    models: tuple[str, ...]

    @property
    def add_command(self) -> str:
        flag = "--ollama" if self.kind == "ollama" else "--llama-server"
        model = f" --model {self.models[0]}" if self.models else ""
        return f"hearthnet model add {flag} {self.url}{model}"

    @property
    def label(self) -> str:
        return "an Ollama server" if self.kind == "ollama" else "a llama.cpp server"

    def describe(self) -> str:
        models = f" with models {', '.join(self.models)}" if self.models else " (no model listed)"
        return f"{self.label}{models} runs at {self.url}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "models": list(self.models),
                "add_command": self.add_command}


def loopback_url(url: str) -> urllib.parse.SplitResult:
    """The parsed URL; bad_request unless it is http(s) on a loopback address."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        loop = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = False
    if parts.scheme not in ("http", "https") or not loop:
        raise HearthNetError("bad_request", f"{url!r}: detection probes only loopback http(s) "
                             "URLs (127.0.0.1, ::1, localhost)")
    return parts


def get_json(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Any:
    """One GET on loopback; the JSON body, or None for no answer / not JSON / an error status."""
    parts = loopback_url(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(MAX_BODY)
        return json.loads(body) if resp.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def probe_ollama(base: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Detected | None:
    base = base.rstrip("/")
    doc = get_json(base + "/api/tags", timeout)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        return None
    names = [str(m.get("name") or m.get("model")) for m in doc["models"]
             if isinstance(m, dict) and (m.get("name") or m.get("model"))]
    return Detected("ollama", base, tuple(names))


def probe_llama_server(base: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Detected | None:
    base = base.rstrip("/")
    doc = get_json(base + "/v1/models", timeout)
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        names = [str(m["id"]) for m in doc["data"] if isinstance(m, dict) and m.get("id")]
        return Detected("llama_cpp_server", base, tuple(names))
    health = get_json(base + "/health", timeout)  # older servers: /health only
    if isinstance(health, dict) and health.get("status") in ("ok", "loading model"):
        return Detected("llama_cpp_server", base, ())
    return None


def detect_servers(cfg: "Config", timeout: float = PROBE_TIMEOUT_SECONDS) -> list[Detected]:
    """Servers answering at the configured loopback URLs (a non-loopback URL is skipped)."""
    found: list[Detected] = []
    for probe, url in ((probe_ollama, cfg.models.detect_ollama_url),
                       (probe_llama_server, cfg.models.detect_llama_cpp_url)):
        if not url:
            continue
        try:
            hit = probe(url, timeout)
        except HearthNetError:
            continue
        if hit is not None:
            found.append(hit)
    return found


def configured_urls(cfg: "Config") -> set[str]:
    """Base URLs the config already uses, so a detected server already added is not offered."""
    out = set()
    for b in cfg.llm.backends:
        if b.url:
            out.add(b.url.rstrip("/").removesuffix("/v1").removesuffix("/api"))
    return out


def offers(cfg: "Config", timeout: float = PROBE_TIMEOUT_SECONDS) -> list[Detected]:
    """Detected servers not configured yet."""
    have = configured_urls(cfg)
    return [d for d in detect_servers(cfg, timeout) if d.url not in have]


def backend_entry(kind: str, url: str, model: str) -> dict[str, Any]:
    """The [[llm.backends]] table for a server: ollama speaks its own API, llama-server
    the OpenAI one."""
    if kind == "ollama":
        return {"name": "ollama", "url": url.rstrip("/"), "model": model}
    return {"name": "openai", "url": url.rstrip("/") + "/v1", "model": model}


def init_offer(cfg: "Config", prompt: Any, *, ask: bool) -> str | None:
    """`hearthnet init`: when the node has no LLM backend and a local server answers,
    ask whether to use it (`ask`, an interactive run) or only say how (never a silent
    change). The line to add to init's message, or None."""
    if cfg.llm.backends:
        return None
    found = offers(cfg)
    if not found:
        return None
    d = found[0]
    if not ask or not d.models or not prompt.confirm(
            f"{d.describe()}. Use {d.models[0]!r} as this node's LLM?", True):
        return f"{d.describe()}; add it with `{d.add_command}`"
    from hearthnet.models.backends import add_entry

    add_entry(cfg, backend_entry(d.kind, d.url, d.models[0]))
    return f"added {d.label}'s model {d.models[0]!r} ({d.url}) as this node's LLM"
