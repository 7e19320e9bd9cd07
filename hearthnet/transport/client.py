"""PeerClient: signed, pinned HTTPS calls to other nodes (spec core-bus-transport §7–§12).

One aiohttp ClientSession for all peers: TLS 1.3 (`client_ssl_context`), a connection
limit per host, idle connections closed after CONNECTION_IDLE_SECONDS, no proxies from
the environment (LAN traffic must not detour), no redirects (a signed request is for one
node only).

Pinning. Every request to a known node carries `ssl=aiohttp.Fingerprint(pin)`, so aiohttp
compares the certificate right after the TLS handshake, before a single request byte is
sent, and pooled connections are keyed by that pin (a connection opened without a pin is
never reused for a pinned request). On first contact with a node id the pin comes from
its signed manifest (`GET /manifest`, anonymous, nothing secret sent), fetched without
aiohttp by hearthnet/transport/peer_http.py: the certificate presented on the connection
that served the manifest must be the one it declares, which proves that the endpoint
holds that certificate, and only then is the pin recorded.

Note: with a Fingerprint aiohttp uses its own unverified client context (TLS 1.2+); TLS
1.3 is still what is negotiated because our server context refuses anything older.

Errors: a peer's error body becomes PeerCallError (a HearthNetError with the peer's code,
`http_status` set). Connection refused / reset / TLS failure -> `partition`; a certificate
other than the pinned one -> `invalid_signature`; the deadline -> `timeout`.
"""
from __future__ import annotations

import json
import logging
from contextlib import aclosing, asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
from yarl import URL

from hearthnet.constants import (
    LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS,
    MAX_REQUEST_BYTES,
    RPC_DEFAULT_TIMEOUT_SECONDS,
)
from hearthnet import jsonbound
from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import KeyPair
from hearthnet.transport import peer_http
from hearthnet.transport.peer_http import (  # PeerCallError and endpoint_address: imported from here too
    Endpoint,
    PeerCallError,
    endpoint_address,
    json_object,
    pin_mismatch,
)
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.signing import (
    H_REQUEST_ID,
    H_SIGNATURE,
    response_signature_required,
    sign_request,
    verify_response,
)
from hearthnet.transport.sse import TERMINAL_EVENTS, SseParser
from hearthnet.transport.tls import client_ssl_context, fingerprint_digest

log = logging.getLogger("hearthnet.transport.client")

CONNECTION_IDLE_SECONDS = 60  # spec core-identity-config §11
CONNECTIONS_PER_HOST = 16
CONNECTIONS_TOTAL = 256
JSON = "application/json"
EVENT_STREAM = "text/event-stream"
Frame = tuple[str, Any]


# --------------------------------------------------------------------------- helpers


def _url(host: str, port: int, path: str) -> URL:
    if not path.startswith("/"):
        raise HearthNetError("bad_request", f"path {path!r} must start with /")
    return URL.build(scheme="https", host=host.strip("[]"), port=port, path=path)


def _encode(body: Any) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise HearthNetError("bad_request", f"request body is not JSON: {exc}") from None


def _transport_error(exc: BaseException, where: str) -> HearthNetError:
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return pin_mismatch(where)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return HearthNetError("partition", f"peer unreachable: {where}: connection timed out")
    if isinstance(exc, TimeoutError):
        return HearthNetError("timeout", f"{where} did not answer in time")
    return HearthNetError("partition", f"peer unreachable: {where}: {exc or type(exc).__name__}")


async def _read_limited(resp: aiohttp.ClientResponse, limit: int = MAX_REQUEST_BYTES) -> bytes:
    # A peer must not be able to make us buffer an unbounded reply.
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise PeerCallError("internal_error", f"peer reply is over {limit} bytes", http_status=resp.status)
    return bytes(buf)


async def _json_reply(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    return json_object(resp.status, await _read_limited(resp))


async def _verified_json(resp: aiohttp.ClientResponse, node_id: str, request_id: str,
                         required: bool) -> dict[str, Any]:
    """The JSON reply of a signed request. A signed reply (every HearthNet peer signs
    its replies, errors too) must verify for `node_id` and our request; `required`
    (mutating capabilities) refuses an unsigned success. An error reply raises the
    peer's error once its signature (if any) checked out."""
    raw = await _read_limited(resp)
    signed = H_SIGNATURE in resp.headers
    # A success must be signed when `required`; an error reply is checked when signed
    # (an unsigned one can only make the call fail, never make us accept anything).
    if signed or (required and resp.status < 300):
        try:
            parsed = jsonbound.loads(raw) if raw else None
        except ValueError:
            raise PeerCallError("invalid_signature", "peer reply is not JSON, so its signature cannot be checked",
                                http_status=resp.status) from None
        verify_response(resp.headers, parsed, expected_from=node_id, request_id=request_id,
                        status=resp.status)
    return json_object(resp.status, raw)


# --------------------------------------------------------------------------- client


class PeerClient:
    def __init__(self, kp: KeyPair, community_id: str, pins: PinStore, *,
                 timeout: float = RPC_DEFAULT_TIMEOUT_SECONDS,
                 stream_timeout: float = LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS,
                 connections_per_host: int = CONNECTIONS_PER_HOST) -> None:
        self.kp, self.community_id, self.pins = kp, community_id, pins
        self.timeout, self.stream_timeout = timeout, stream_timeout
        self._per_host = connections_per_host
        self._session: aiohttp.ClientSession | None = None
        # aiohttp.Fingerprint hashes by identity and is part of the pool key: reuse one
        # object per pin or no connection would ever be reused.
        self._fingerprints: dict[str, aiohttp.Fingerprint] = {}

    async def __aenter__(self) -> "PeerClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=client_ssl_context(), limit=CONNECTIONS_TOTAL,
                                             limit_per_host=self._per_host,
                                             keepalive_timeout=CONNECTION_IDLE_SECONDS)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    def _pinned(self, fp: str) -> aiohttp.Fingerprint:
        if fp not in self._fingerprints:
            self._fingerprints[fp] = aiohttp.Fingerprint(fingerprint_digest(fp))
        return self._fingerprints[fp]

    # ---- manifests and pins ----------------------------------------------------------

    async def get_manifest(self, host: str, port: int, *, node_id: str | None = None) -> tuple[dict[str, Any], str]:
        """The verified node manifest served at host:port and its certificate fingerprint,
        which is pinned for the manifest's node id (TOFU; hearthnet/transport/peer_http.py)."""
        return await peer_http.get_manifest(self.pins, host, port, node_id=node_id, timeout=self.timeout)

    async def _pin_for(self, node_id: str, host: str, port: int) -> str:
        pin = self.pins.expected(node_id)
        if pin is None:
            _, pin = await self.get_manifest(host, port, node_id=node_id)
        return pin

    # ---- requests --------------------------------------------------------------------

    def _headers(self, node_id: str, capability: str, version: str, raw: bytes | None, accept: str,
                 timeout: float) -> dict[str, str]:
        """Signed for `node_id` only, with the raw body's hash and our deadline, so the
        peer applies the same deadline and nobody can stretch it on the way."""
        headers = sign_request(self.kp, self.community_id, capability, version, raw, to=node_id,
                               timeout_seconds=timeout)
        headers["Accept"] = accept
        return headers

    @asynccontextmanager
    async def _open(self, method: str, node_id: str, endpoint: Endpoint, path: str,
                    headers: dict[str, str], data: bytes | None, timeout: float) -> AsyncIterator[aiohttp.ClientResponse]:
        host, port = endpoint_address(endpoint)
        url = _url(host, port, path)
        pin = await self._pin_for(node_id, host, port)
        if data is not None:
            headers = {**headers, "Content-Type": JSON}
        try:
            async with self._http().request(method, url, headers=headers, data=data, ssl=self._pinned(pin),
                                            timeout=aiohttp.ClientTimeout(total=timeout),
                                            allow_redirects=False) as resp:
                yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc, f"{node_id} at {host}:{port}") from exc

    async def _signed_json(self, method: str, node_id: str, endpoint: Endpoint, path: str,
                           capability: str, version: str, body: Any, timeout: float | None) -> dict[str, Any]:
        deadline = timeout or self.timeout
        raw = None if method == "GET" else _encode(body)
        headers = self._headers(node_id, capability, version, raw, JSON, deadline)
        async with self._open(method, node_id, endpoint, path, headers, raw, deadline) as resp:
            return await _verified_json(resp, node_id, headers[H_REQUEST_ID],
                                        response_signature_required(capability))

    async def call(self, node_id: str, endpoint: Endpoint, capability: str, version: str, body: Any, *,
                   timeout: float | None = None) -> dict[str, Any]:
        """A non-stream capability call (POST /bus/v1/call); the peer's JSON reply.
        Mutating capabilities must come back signed by `node_id` (CONTRACT §5)."""
        return await self._signed_json("POST", node_id, endpoint, "/bus/v1/call", capability, version, body, timeout)

    async def get_signed(self, node_id: str, endpoint: Endpoint, path: str, capability: str, *,
                         version: str = "1.0", timeout: float | None = None) -> dict[str, Any]:
        """A signed GET of a non-capability route, e.g. `/sync/v1/heads` as `sync.heads`."""
        return await self._signed_json("GET", node_id, endpoint, path, capability, version, None, timeout)

    async def post_signed(self, node_id: str, endpoint: Endpoint, path: str, capability: str, body: Any, *,
                          version: str = "1.0", timeout: float | None = None) -> dict[str, Any]:
        """A signed POST of a non-capability route, e.g. `/sync/v1/events` as `sync.events`."""
        return await self._signed_json("POST", node_id, endpoint, path, capability, version, body, timeout)

    async def get_public(self, node_id: str, endpoint: Endpoint, path: str, *,
                         timeout: float | None = None) -> dict[str, Any]:
        """An unsigned GET of an anonymous route (e.g. `/community/manifest`) over a
        connection pinned to `node_id`'s certificate; the JSON object it answers. Nothing
        about us is sent, so a node that is not (yet) a member may use it."""
        headers = {"Accept": JSON}
        async with self._open("GET", node_id, endpoint, path, headers, None, timeout or self.timeout) as resp:
            return await _json_reply(resp)

    async def stream(self, node_id: str, endpoint: Endpoint, capability: str, version: str, body: Any, *,
                     timeout: float | None = None) -> AsyncIterator[Frame]:
        """(event, data) frames of a streaming call; the last is ("done", meta) or
        ("error", body). A refusal before the stream starts raises PeerCallError (nothing
        reached the caller, so it is safe to try elsewhere); a failure after it started
        is the terminal ("error", ...) frame. Leaving early (break + aclose, or
        cancellation) closes the connection, which cancels the work on the peer. Use
        `contextlib.aclosing(client.stream(...))` so that happens promptly."""
        deadline = timeout or self.stream_timeout
        raw = _encode(body)
        headers = self._headers(node_id, capability, version, raw, EVENT_STREAM, deadline)
        async with self._open("POST", node_id, endpoint, "/bus/v1/call", headers, raw, deadline) as resp:
            if resp.status >= 300 or resp.content_type == JSON:
                # an error raises; a plain JSON reply (a capability that does not stream) is the result
                yield "done", await _verified_json(resp, node_id, headers[H_REQUEST_ID],
                                                   response_signature_required(capability))
                return
            if resp.content_type != EVENT_STREAM:
                raise PeerCallError("internal_error", f"peer answered {resp.content_type}, not an event stream",
                                    http_status=resp.status)
            if H_SIGNATURE in resp.headers:  # the stream's headers are signed with body null
                verify_response(resp.headers, None, expected_from=node_id,
                                request_id=headers[H_REQUEST_ID], status=resp.status)
            # aclosing: closing this generator must close the inner one (and so the
            # connection) now, not whenever the garbage collector gets to it.
            async with aclosing(_sse_frames(resp, node_id)) as frames:
                async for frame in frames:
                    yield frame


async def _sse_frames(resp: aiohttp.ClientResponse, where: str) -> AsyncIterator[Frame]:
    """Frames as they arrive; always ends with a terminal frame; closes (not releases)
    the connection unless the stream ended cleanly, so the peer notices at once."""
    parser, clean = SseParser(), False
    try:
        async for chunk in resp.content.iter_any():
            for frame in parser.feed(chunk):
                yield frame
                if frame[0] in TERMINAL_EVENTS:
                    clean = True
                    return
        yield "error", HearthNetError("partition", f"{where} ended the stream without done/error").to_wire()
    except ValueError as exc:
        yield "error", HearthNetError("internal_error", f"{where} sent a malformed frame: {exc}").to_wire()
    except (aiohttp.ClientError, TimeoutError) as exc:
        yield "error", _transport_error(exc, where).to_wire()
    finally:
        if not clean:
            resp.close()
