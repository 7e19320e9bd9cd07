"""Shared plumbing of the HTTP backends (OpenAI-compatible, Ollama, and the embedding
service's `openai` backend): the session and auth of `HttpClient`, error mapping,
Retry-After parsing, the cancel watcher, and the requires-internet guess."""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import time
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator, Sequence
from urllib.parse import urlsplit

import aiohttp

from hearthnet.errors import HearthNetError
from hearthnet.services.llm.backends.base import BackendModel, CancelEvent, LlmBackend

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DEFAULT_HTTP_MAX_CONCURRENT = 4
DEFAULT_HTTP_CTX = 4096
_BODY_EXCERPT = 300


def requires_internet(url: str) -> bool:
    """False for loopback, private, link-local and LAN-style hosts (no dot, .local,
    .lan, .home.arpa, .internal); True for anything else (a public API)."""
    host = (urlsplit(url).hostname or "").lower()
    if not host or host == "localhost":
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return not ("." not in host or host.endswith((".local", ".lan", ".home.arpa", ".internal")))
    return not (ip.is_private or ip.is_loopback or ip.is_link_local)


def retry_after_ms(value: str | None) -> int | None:
    """Retry-After is delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0, int(float(value) * 1000))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int((when.timestamp() - time.time()) * 1000))


def _message_from_body(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:_BODY_EXCERPT]
    if isinstance(doc, dict):
        err = doc.get("error", doc.get("detail", doc.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:_BODY_EXCERPT]
    return text.strip()[:_BODY_EXCERPT]


def error_for_status(status: int, body: str, headers: Any, what: str, reason: str = "") -> HearthNetError:
    """Map a backend HTTP error onto a contract error code."""
    detail = _message_from_body(body) or reason or ""
    if status == 429:
        return HearthNetError(
            "rate_limited",
            f"{what} is rate limiting requests: {detail}".rstrip(": "),
            retry_after_ms=retry_after_ms(headers.get("Retry-After")),
        )
    if status >= 500:
        return HearthNetError("internal_error", f"{what} failed with HTTP {status}: {detail}")
    if status in (401, 403):
        return HearthNetError(
            "internal_error", f"{what} rejected the credentials (HTTP {status}): {detail}"
        )
    if status in (400, 413, 422):
        return HearthNetError("bad_request", f"{what} rejected the request: {detail}")
    return HearthNetError("internal_error", f"{what} answered HTTP {status}: {detail}")


async def raise_for_status(resp: aiohttp.ClientResponse, what: str) -> None:
    if resp.status < 400:
        return
    try:
        body = await resp.text(errors="replace")
    except (aiohttp.ClientError, asyncio.TimeoutError):
        body = ""
    raise error_for_status(resp.status, body, resp.headers, what, resp.reason or "")


def unreachable(url: str, exc: BaseException) -> HearthNetError:
    return HearthNetError("internal_error", f"backend unreachable at {url}: {exc}")


@contextlib.asynccontextmanager
async def cancel_watcher(
    cancel: CancelEvent | None, resp: aiohttp.ClientResponse
) -> AsyncIterator[None]:
    """While the body streams, close the response as soon as `cancel` is set; the
    pending read then fails and the reader reports `cancelled`."""
    if cancel is None:
        yield
        return

    async def watch() -> None:
        if isinstance(cancel, asyncio.Event):
            await cancel.wait()
        else:
            while not cancel.is_set():
                await asyncio.sleep(0.02)
        resp.close()

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()
        # asyncio.wait never raises the watcher's CancelledError (ours still propagates).
        await asyncio.wait({task})


def http_timeout() -> aiohttp.ClientTimeout:
    # No total/read timeout: the caller's deadline governs generation time.
    return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)


def as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class HttpClient:
    """One aiohttp session per event loop, the bearer key read from `api_key_env` per
    call, POST with the error mapping, and a start-up probe. Shared by the LLM HTTP
    backends and the embedding service's `openai` backend."""

    #: what log lines and errors call this client, e.g. "openai" or "embedding openai"
    name: str = "http"

    def __init__(self, *, base_url: str, api_key_env: str | None, kind: str) -> None:
        self.name = kind
        self.base_url = base_url
        self._api_key_env = api_key_env or None
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._served = 0
        self._last_error: str | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/x-ndjson, application/json"}
        if self._api_key_env:
            key = os.environ.get(self._api_key_env)  # read per call, never stored or logged
            if not key:
                raise HearthNetError(
                    "internal_error",
                    f"{self.name} backend: environment variable {self._api_key_env} "
                    "(api_key_env) is not set",
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(timeout=http_timeout())
            self._session_loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _post(self, url: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        session = self._session_now()
        headers = self._headers()
        try:
            return await session.post(url, json=payload, headers=headers)
        except (aiohttp.ClientConnectorError, asyncio.TimeoutError) as exc:
            self._last_error = f"unreachable: {exc}"
            raise unreachable(self.base_url, exc) from exc
        except aiohttp.ClientError as exc:
            self._last_error = str(exc)
            raise HearthNetError(
                "internal_error", f"request to {self.name} backend at {self.base_url} failed: {exc}"
            ) from exc

    async def _probe(self, url: str) -> None:
        """warm(): one GET to see that the server answers. A failure is logged and kept
        for health() but does not fail the worker: the server may come up later."""
        session = self._session_now()
        try:
            async with session.get(
                url, headers=self._headers(), timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status >= 400:
                    self._last_error = f"{url} answered HTTP {resp.status}"
                else:
                    self._last_error = None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self._last_error = f"backend unreachable at {self.base_url}: {exc}"
        except HearthNetError as exc:
            self._last_error = exc.message
        if self._last_error:
            log.warning("%s backend: %s", self.name, self._last_error)


class HttpBackend(HttpClient, LlmBackend):
    """Session handling, auth header and model catalogue shared by HTTP backends."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str | None,
        models: Sequence[str] | None = None,
        api_key_env: str | None = None,
        ctx: int | None = None,
        max_concurrent: int | None = None,
        kind: str,
    ) -> None:
        names = [str(m) for m in (models or ()) if m]
        if model and model not in names:
            names.insert(0, str(model))
        if not names:
            raise ValueError(f"{kind} backend at {base_url} needs `model` (or `models`)")
        super().__init__(base_url=base_url, api_key_env=api_key_env, kind=kind)
        internet = requires_internet(base_url)
        self._models = [
            BackendModel(
                name=n,
                quant="api",
                ctx_max=int(ctx) if ctx else DEFAULT_HTTP_CTX,
                modalities=("text",),
                requires_internet=internet,
            )
            for n in names
        ]
        self._max_concurrent = int(max_concurrent) if max_concurrent else DEFAULT_HTTP_MAX_CONCURRENT

    @property
    def models(self) -> list[BackendModel]:
        return list(self._models)

    def max_concurrent(self, model: str | None = None) -> int:
        return self._max_concurrent

    def health(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "url": self.base_url,
            "models": [m.name for m in self._models],
            "served": self._served,
            "last_error": self._last_error,
        }

    def _check_model(self, model: str) -> None:
        if not self.serves(model):
            raise HearthNetError(
                "not_implemented",
                f"model {model!r} is not served by the {self.name} backend at {self.base_url}",
            )


def strip_url(url: str, suffixes: Sequence[str]) -> str:
    url = url.strip().rstrip("/")
    changed = True
    while changed:
        changed = False
        for s in suffixes:
            if url.endswith(s):
                url = url[: -len(s)].rstrip("/")
                changed = True
    return url
