"""The UI's one way into the node: the local API (unix socket + owner token), wrapped so
every tab gets plain outputs or a `UiError` whose message is fit for the page (never a
traceback), and can ask whether a capability is served at all."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from hearthnet.errors import HearthNetError
from hearthnet.localapi import LocalApi

CAPS_TTL_SECONDS = 3.0  # the capability list is asked at most this often

# What to tell the owner when a tab's service is absent: how to turn it on.
HOW_TO_ENABLE = {
    "rag": "set `[rag] enabled = true` and install the knowledge extra (`scripts/setup`), then restart the node",
    "llm": "add an LLM backend under `[llm]` in config.toml (Settings tab has a snippet), then restart",
    "chat": "set `[chat] enabled = true` in config.toml and restart the node",
    "market": "set `[market] enabled = true` in config.toml and restart the node",
    "file": "the file worker is part of every node: see `hearthnet status` for why it is down",
    "emergency": "the emergency detector is not running on this node: set `[emergency] enabled = true` "
                 "(needs a HearthNet version with the detector) and restart",
    "alert": "signed alerts are not running on this node: they need a HearthNet version with the "
             "alert worker; then restart",
    "community": "the governance worker is part of every node: see `hearthnet status`",
}


class UiError(Exception):
    """A failure to show on the page: `message` is already phrased for a person."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def describe(exc: HearthNetError) -> str:
    text = f"{exc.message} ({exc.code})"
    hint = exc.details.get("hint") if isinstance(exc.details, dict) else None
    return f"{text} — {hint}" if hint else text


class UiClient:
    def __init__(self, api: LocalApi) -> None:
        self.api = api
        self._caps: set[str] = set()
        self._caps_at = 0.0

    # ---- capabilities ---------------------------------------------------------------

    def capabilities(self) -> set[str]:
        """Names of the capabilities the node can route (local or a peer's)."""
        now = time.monotonic()
        if now - self._caps_at > CAPS_TTL_SECONDS:
            try:
                doc = self.api.get("/api/v1/capabilities")
            except HearthNetError as exc:
                raise UiError(f"the node does not answer: {describe(exc)}", exc.code) from None
            rows = doc.get("capabilities") if isinstance(doc, dict) else None
            self._caps = {r.get("name") for r in rows or [] if isinstance(r, dict)}
            self._caps_at = now
        return self._caps

    def missing(self, *names: str) -> str | None:
        """None when every capability is served, else a message saying how to enable it."""
        try:
            have = self.capabilities()
        except UiError as exc:
            return exc.message
        absent = [n for n in names if n not in have]
        if not absent:
            return None
        prefix = absent[0].split(".", 1)[0]
        how = HOW_TO_ENABLE.get(prefix, "see `hearthnet status` for which workers run")
        return f"**Not running:** {', '.join(absent)} is not served on this node. To enable: {how}."

    # ---- calls ----------------------------------------------------------------------

    def call(self, name: str, inp: dict[str, Any] | None = None, version: str = "1.0") -> dict[str, Any]:
        try:
            return self.api.output(name, inp or {}, version)
        except HearthNetError as exc:
            raise UiError(describe(exc), exc.code) from None

    def stream(self, name: str, inp: dict[str, Any], version: str = "1.0") -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            frames = self.api.call(name, version, {"params": {}, "input": inp}, stream=True)
            assert not isinstance(frames, dict)
            yield from frames
        except HearthNetError as exc:
            raise UiError(describe(exc), exc.code) from None

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        try:
            return self.api.get(path, query or None)
        except HearthNetError as exc:
            raise UiError(describe(exc), exc.code) from None

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to a local API route (the Settings tab's rename and join)."""
        try:
            return self.api.post(path, body)
        except HearthNetError as exc:
            raise UiError(describe(exc), exc.code) from None

    def status(self) -> dict[str, Any]:
        return self.get("/api/v1/status")

    def traces(self, n: int = 200) -> list[dict[str, Any]]:
        doc = self.get("/api/v1/traces", n=n)
        rows = doc.get("traces") if isinstance(doc, dict) else None
        return [r for r in rows or [] if isinstance(r, dict)]
