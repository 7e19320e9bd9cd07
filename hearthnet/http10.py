"""One HTTP/1.0 GET over a unix socket, with the C socket module only: how the CLI asks
the node's local API (`<run dir>/api.sock`) for a document. HTTP/1.0 makes the server
close after the body and never chunk it, so reading to EOF is the whole client; importing
http.client (email.*) or even socket.py (selectors, enum) costs a CLI command more than
the request. hearthnet.localapi maps the errors to contract codes; hearthnet.fastcli
gives up on any of them and leaves the command to the click CLI."""
from __future__ import annotations

import _socket


class ConnectFailed(OSError):
    """Nothing accepts on the socket (the node is not running): `cause` says why."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.cause = cause


class BadResponse(Exception):
    """The answer is not a whole HTTP/1.0 response: `code` is the contract error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def get(socket_path: str, path: str, headers: dict[str, str], *, connect_timeout: float,
        timeout: float) -> bytes:
    """The raw response to `GET path`. ConnectFailed when nothing listens; TimeoutError
    or another OSError when the connection breaks after that."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(connect_timeout)
        try:
            sock.connect(socket_path)
        except OSError as exc:
            raise ConnectFailed(exc) from None
        sock.settimeout(timeout)
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "localhost", **headers}.items())
        sock.sendall(f"GET {path} HTTP/1.0\r\n{head}\r\n".encode("utf-8"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def split(data: bytes) -> tuple[int, str, dict[str, str], bytes, int] | None:
    """A whole HTTP/1.0 response taken apart: (status, reason, header fields by lower-case
    name, body cut to its Content-Length, bytes of that length that never came); None when
    it has no status line and complete head (the connection closed before). The one
    parser of both HTTP/1.0 clients: this module's and the peer manifest fetch
    (transport/peer_http.py), which map the outcome to their own errors."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = fields.get("content-length", "")
    missing = 0
    if length.isdigit():
        missing = max(0, int(length) - len(body))
        body = body[:int(length)]
    return int(parts[1]), parts[2] if len(parts) > 2 else "", fields, body, missing


def parse(data: bytes, where: str) -> tuple[int, str, bytes]:
    """(status, reason, body) of a whole HTTP/1.0 response; BadResponse for a cut-off one
    (`connection_lost`) or a chunked one (`bad_response`)."""
    reply = split(data)
    if reply is None:
        raise BadResponse("connection_lost", f"the node on {where} closed the connection "
                                             f"mid-response ({len(data)} bytes)")
    status, reason, fields, body, missing = reply
    if "chunked" in fields.get("transfer-encoding", "").lower():
        raise BadResponse("bad_response", f"the node on {where} chunked an HTTP/1.0 response")
    if missing:
        raise BadResponse("connection_lost", f"the node on {where} closed the connection "
                                             f"after {len(body)} of {len(body) + missing} bytes")
    return status, reason, body
