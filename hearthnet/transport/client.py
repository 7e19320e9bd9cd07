"""PeerClient: signed, pinned HTTPS calls to other nodes (spec core-bus-transport §7–§12).

One aiohttp ClientSession for all peers: TLS 1.3 (`client_ssl_context`), a connection
limit per host, idle connections closed after CONNECTION_IDLE_SECONDS, no proxies from
the environment (LAN traffic must not detour), no redirects (a signed request is for one
node only).

Pinning. Every request to a known node carries `ssl=aiohttp.Fingerprint(pin)`, so aiohttp
compares the certificate right after the TLS handshake, before a single request byte is
sent, and pooled connections are keyed by that pin (a connection opened without a pin is
never reused for a pinned request). On first contact with a node id the pin comes from
its signed manifest (`GET /manifest`, anonymous, nothing secret sent); the manifest is
then fetched once more over a connection pinned to the fingerprint it declares, which
proves that the endpoint holds that certificate, and only then is the pin recorded.
Reading the certificate off a finished aiohttp response is not an option: aiohttp drops
the connection from the response as soon as a small body has arrived.

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
from typing import Any, AsyncIterator, Mapping, Union

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
from hearthnet.identity.manifest import verify_node_manifest
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.signing import (
    H_REQUEST_ID,
    H_SIGNATURE,
    response_signature_required,
    sign_request,
    verify_response,
)
from hearthnet.transport.sse import TERMINAL_EVENTS, SseParser
from hearthnet.transport.tls import ALL_INTERFACES, check_fingerprint_format, client_ssl_context, fingerprint_digest

log = logging.getLogger("hearthnet.transport.client")

CONNECTION_IDLE_SECONDS = 60  # spec core-identity-config §11
CONNECTIONS_PER_HOST = 16
CONNECTIONS_TOTAL = 256
JSON = "application/json"
EVENT_STREAM = "text/event-stream"
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "revoked", 404: "not_found",
                408: "timeout", 410: "expired", 429: "rate_limited", 501: "not_implemented",
                503: "partition"}
Endpoint = Union[Mapping[str, Any], tuple[str, int]]
Frame = tuple[str, Any]


class PeerCallError(HearthNetError):
    """An error answered by a peer; `http_status` is the status it came with."""

    def __init__(self, code: str | None = None, message: str = "", http_status: int = 0, **details: Any) -> None:
        super().__init__(code, message, **details)
        self.http_status = http_status


# --------------------------------------------------------------------------- helpers


def endpoint_address(endpoint: Endpoint) -> tuple[str, int]:
    """(host, port) of a manifest endpoint `{"transport","host","port"}` or a tuple."""
    if isinstance(endpoint, Mapping):
        if endpoint.get("transport", "https") != "https":
            raise HearthNetError("bad_request", f"peer endpoint {dict(endpoint)} is not https")
        host, port = endpoint.get("host"), endpoint.get("port")
    else:
        host, port = endpoint
    if not isinstance(host, str) or host in ALL_INTERFACES:
        raise HearthNetError("bad_request", f"endpoint host {host!r} is not an address to connect to")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise HearthNetError("bad_request", f"endpoint port {port!r} is not a TCP port")
    return host, port


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
        log.warning("peer certificate does not match its pin; refusing", extra={"peer": where})
        return HearthNetError("invalid_signature", f"{where} presented a certificate other than the pinned one; refusing")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return HearthNetError("partition", f"peer unreachable: {where}: connection timed out")
    if isinstance(exc, TimeoutError):
        return HearthNetError("timeout", f"{where} did not answer in time")
    return HearthNetError("partition", f"peer unreachable: {where}: {exc or type(exc).__name__}")


def _peer_error(status: int, raw: bytes) -> PeerCallError:
    try:
        body = jsonbound.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        # Keep only keys that cannot collide with the constructor's own parameters.
        wire = {k: v for k, v in body.items() if k not in ("code", "http_status")}
        err = PeerCallError.from_wire(wire)
        err.http_status = status
        return err  # type: ignore[return-value]  # from_wire builds cls
    code = STATUS_CODES.get(status, "internal_error")
    return PeerCallError(code, f"peer answered HTTP {status} without an error body", http_status=status)


async def _read_limited(resp: aiohttp.ClientResponse, limit: int = MAX_REQUEST_BYTES) -> bytes:
    # A peer must not be able to make us buffer an unbounded reply.
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise PeerCallError("internal_error", f"peer reply is over {limit} bytes", http_status=resp.status)
    return bytes(buf)


async def _json_reply(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    raw = await _read_limited(resp)
    if resp.status >= 300:
        raise _peer_error(resp.status, raw)
    try:
        reply = jsonbound.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise PeerCallError("internal_error", "peer reply is not a JSON object", http_status=resp.status)
    return reply


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
    if resp.status >= 300:
        raise _peer_error(resp.status, raw)
    try:
        reply = jsonbound.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise PeerCallError("internal_error", "peer reply is not a JSON object", http_status=resp.status)
    return reply


def _declared_fingerprint(manifest: Mapping[str, Any]) -> str:
    fp = manifest.get("tls_fingerprint")
    try:
        return check_fingerprint_format(fp)
    except HearthNetError:
        raise HearthNetError("invalid_signature", f"manifest of {manifest.get('node_id')} carries no valid tls_fingerprint") from None


def _same_node(manifest: Mapping[str, Any], node_id: str | None) -> None:
    if node_id is not None and manifest.get("node_id") != node_id:
        raise HearthNetError("invalid_signature", f"endpoint serves {manifest.get('node_id')}, not {node_id}")


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
        which is pinned for the manifest's node id (TOFU). With `node_id` of an already
        pinned node this is one pinned request; otherwise two (see module docstring)."""
        host, port = endpoint_address((host, port))
        pin = self.pins.expected(node_id) if node_id else None
        if pin is None:
            first = await self._fetch_manifest(host, port, ssl=True)
            _same_node(first, node_id)
            node_id, pin = first["node_id"], _declared_fingerprint(first)
            known = self.pins.expected(node_id)
            if known is not None and known != pin:
                raise HearthNetError("invalid_signature", f"{node_id} now declares certificate {pin}, but {known} is pinned")
        manifest = await self._fetch_manifest(host, port, ssl=self._pinned(pin))
        _same_node(manifest, node_id)
        if _declared_fingerprint(manifest) != pin:
            raise HearthNetError("invalid_signature", f"{node_id} declares a certificate other than the one it presented")
        self.pins.check(node_id, pin)
        return manifest, pin

    async def _fetch_manifest(self, host: str, port: int, *, ssl: Any) -> dict[str, Any]:
        where = f"{host}:{port}"
        try:
            async with self._http().get(_url(host, port, "/manifest"), ssl=ssl, headers={"Accept": JSON},
                                        timeout=aiohttp.ClientTimeout(total=self.timeout),
                                        allow_redirects=False) as resp:
                manifest = await _json_reply(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc, where) from exc
        return verify_node_manifest(manifest)

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
