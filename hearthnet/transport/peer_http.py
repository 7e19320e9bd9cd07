"""What talking to a peer needs before any signed call, without aiohttp: endpoint
checks, a peer's error body, and its signed node manifest over TLS with pinning.

The manifest GET is one HTTP/1.0 request on an asyncio TLS stream (`client_ssl_context`):
HTTP/1.0 makes the peer close after the body and never chunk it, so reading to EOF, with
a size bound, is the whole parser. The discovery worker fetches manifests and nothing
else from peers, so it does not load aiohttp's client at all (about 9 MiB of its memory,
bench/memory.py); PeerClient (hearthnet/transport/client.py) uses the same function.

Pinning (spec core-bus-transport §12). With a pin (a node already known), the certificate
the endpoint presents is compared right after the TLS handshake, before a byte of the
request is sent. On first contact there is no pin: the manifest is fetched, verified, and
the certificate presented on that very connection must be the one the manifest declares
(`tls_fingerprint`). That proves the endpoint holds that certificate's key, so a stranger
replaying someone else's signed manifest cannot plant a pin; only then is it recorded.

Errors: connection refused / reset / TLS failure / connect timeout -> `partition`; the
deadline after connecting -> `timeout`; a certificate other than the pinned or declared
one -> `invalid_signature`; a peer's error body -> PeerCallError with its code and status.
"""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import Any, Mapping, Union

from hearthnet import http10, jsonbound
from hearthnet.constants import MAX_REQUEST_BYTES
from hearthnet.errors import HearthNetError
from hearthnet.identity.manifest import verify_node_manifest
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.tls import ALL_INTERFACES, check_fingerprint_format, client_ssl_context, fingerprint

log = logging.getLogger("hearthnet.transport.client")

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "revoked", 404: "not_found",
                408: "timeout", 410: "expired", 429: "rate_limited", 501: "not_implemented",
                503: "partition"}
HEAD_MAX_BYTES = 64 * 1024
MAX_REPLY_BYTES = MAX_REQUEST_BYTES  # the bound PeerClient applies to every reply
Endpoint = Union[Mapping[str, Any], tuple[str, int]]


class PeerCallError(HearthNetError):
    """An error answered by a peer; `http_status` is the status it came with."""

    def __init__(self, code: str | None = None, message: str = "", http_status: int = 0, **details: Any) -> None:
        super().__init__(code, message, **details)
        self.http_status = http_status


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


def peer_error(status: int, raw: bytes) -> PeerCallError:
    """The HearthNetError a peer's error reply carries (or one named after its status)."""
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


def json_object(status: int, raw: bytes) -> dict[str, Any]:
    """A peer's JSON object reply; an error status raises the peer's error."""
    if status >= 300:
        raise peer_error(status, raw)
    try:
        reply = jsonbound.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise PeerCallError("internal_error", "peer reply is not a JSON object", http_status=status)
    return reply


def pin_mismatch(where: str) -> HearthNetError:
    log.warning("peer certificate does not match its pin; refusing", extra={"peer": where})
    return HearthNetError("invalid_signature", f"{where} presented a certificate other than the pinned one; refusing")


def unreachable(where: str, exc: BaseException) -> HearthNetError:
    why = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
    return HearthNetError("partition", f"peer unreachable: {where}: {why or type(exc).__name__}")


# --------------------------------------------------------------------------- manifests


_context: ssl.SSLContext | None = None


def _client_context() -> ssl.SSLContext:
    global _context
    if _context is None:
        _context = client_ssl_context()
    return _context


async def fetch_manifest(host: str, port: int, *, pin: str | None, timeout: float) -> tuple[dict[str, Any], str]:
    """(verified manifest, fingerprint of the certificate it came over) from host:port.
    With `pin`, any other certificate is refused before the request is sent."""
    where = f"{host}:{port}"
    connected = False
    try:
        async with asyncio.timeout(timeout):
            # No SNI and no name check: peers are addressed by IP (IPv6 with a zone too)
            # and proven by the certificate's fingerprint, as in client_ssl_context.
            reader, writer = await asyncio.open_connection(host.strip("[]"), port, ssl=_client_context(),
                                                           server_hostname="")
            connected = True
            try:
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                presented = fingerprint(der)
                if pin is not None and presented != pin:
                    raise pin_mismatch(where)
                writer.write(f"GET /manifest HTTP/1.0\r\nHost: {_host_header(host, port)}\r\n"
                             "Accept: application/json\r\n\r\n".encode("ascii"))
                status, body = await _read_response(reader, where, MAX_REPLY_BYTES)
            finally:
                writer.transport.abort()  # read to EOF already, or refused: nothing to wait for
    except TimeoutError:
        if not connected:
            raise HearthNetError("partition", f"peer unreachable: {where}: connection timed out") from None
        raise HearthNetError("timeout", f"{where} did not answer in time") from None
    except (OSError, EOFError, ValueError) as exc:  # refused, reset, TLS failed, an unusable address
        raise unreachable(where, exc) from exc
    return verify_node_manifest(json_object(status, body)), presented


def _host_header(host: str, port: int) -> str:
    return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"


async def _read_response(reader: asyncio.StreamReader, where: str, limit: int) -> tuple[int, bytes]:
    """(status, body) of an HTTP/1.0 reply, read to EOF or to its Content-Length (a peer
    that keeps the connection open anyway is not waited for); a peer must not make us
    buffer an unbounded reply."""
    data = bytearray()
    end = -1
    while chunk := await reader.read(64 * 1024):
        data += chunk
        if len(data) > limit + HEAD_MAX_BYTES:
            raise PeerCallError("internal_error", f"peer reply is over {limit} bytes")
        if end < 0:  # looked for once it is found: a big body is not rescanned per chunk
            end = data.find(b"\r\n\r\n")
            if end < 0 and len(data) > HEAD_MAX_BYTES:
                raise PeerCallError("internal_error", f"peer reply head is over {HEAD_MAX_BYTES} bytes")
        if end >= 0 and _complete(data, end):
            break
    reply = http10.split(bytes(data))
    if reply is None:
        raise HearthNetError("partition", f"peer unreachable: {where}: the connection closed mid-reply")
    status, _, _, body, missing = reply
    if missing:
        raise HearthNetError("partition", f"peer unreachable: {where}: the connection closed after "
                                          f"{len(body)} of {len(body) + missing} bytes")
    if len(body) > limit:
        raise PeerCallError("internal_error", f"peer reply is over {limit} bytes", http_status=status)
    return status, body


def _complete(data: bytearray, end: int) -> bool:
    """The body the head (ending at `end`) announces by its Content-Length has arrived."""
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(data) - end - 4 >= int(value.strip())
    return False


def _declared_fingerprint(manifest: Mapping[str, Any]) -> str:
    fp = manifest.get("tls_fingerprint")
    try:
        return check_fingerprint_format(fp)
    except HearthNetError:
        raise HearthNetError("invalid_signature",
                             f"manifest of {manifest.get('node_id')} carries no valid tls_fingerprint") from None


def same_node(manifest: Mapping[str, Any], node_id: str | None) -> None:
    if node_id is not None and manifest.get("node_id") != node_id:
        raise HearthNetError("invalid_signature", f"endpoint serves {manifest.get('node_id')}, not {node_id}")


async def get_manifest(pins: PinStore, host: str, port: int, *, node_id: str | None = None,
                       timeout: float) -> tuple[dict[str, Any], str]:
    """The verified node manifest served at host:port and its certificate fingerprint,
    which is pinned for the manifest's node id (TOFU; see the module docstring)."""
    host, port = endpoint_address((host, port))
    manifest, presented = await fetch_manifest(host, port, pin=pins.expected(node_id) if node_id else None,
                                               timeout=timeout)
    same_node(manifest, node_id)
    node, declared = manifest["node_id"], _declared_fingerprint(manifest)
    known = pins.expected(node)
    if known is not None and known != declared:
        raise HearthNetError("invalid_signature", f"{node} now declares certificate {declared}, but {known} is pinned")
    if presented != declared:
        raise HearthNetError("invalid_signature", f"{node} declares a certificate other than the one it presented")
    pins.check(node, declared)
    return manifest, declared
