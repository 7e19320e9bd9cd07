"""A tiny client for the node's local API (gateway, `http://127.0.0.1:<transport.port>`).

Standard library only (http.client, imported on first connection, so a command that finds
no token file - no node - never pays for it), so CLI commands that talk to a node start fast.
Every route but `/health` needs `Authorization: Bearer <token>`, the token being the
contents of `<run dir>/api.token`, which `hearthnet run` writes 0600: being able to read
it is what proves the caller is the node's owner.

Errors:
- no token file, or nothing listening            -> NodeNotRunning (exit 3)
- an error body `{"error": code, "message": ...}` -> HearthNetError.from_wire (its code)
- anything else that is not the JSON we expect    -> HearthNetError("bad_response") (exit 1)
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hearthnet.errors import HearthNetError, NodeNotRunning

if TYPE_CHECKING:
    from hearthnet.paths import NodePaths
    import http.client

    from hearthnet.config import Config

CONNECT_TIMEOUT_SECONDS = 2.0
GET_TIMEOUT_SECONDS = 15.0
CALL_TIMEOUT_SECONDS = 130.0  # LLM generation may take 120 s (constants) + margin
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})

# HTTP status -> wire code, for error responses that carry no contract JSON body.
_CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "revoked",
    404: "not_found",
    408: "timeout",
    410: "expired",
    429: "rate_limited",
    500: "internal_error",
    501: "not_implemented",
    503: "partition",
}

Frame = tuple[str, dict[str, Any]]
LIVE_READ_TIMEOUT_SECONDS = 45.0  # 3 missed keep-alives (15 s): the link is dead


class LiveFrame(NamedTuple):
    """One frame of GET /api/v1/subscribe: `topic` is the SSE event (or `subscribed`),
    `token` its resume token (SSE id), `data` the signed event envelope (for
    `subscribed`: {topics, resume})."""

    topic: str
    token: str | None
    data: dict[str, Any]


class LocalApi:
    def __init__(
        self,
        host: str,
        port: int,
        token_file: Path,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        get_timeout: float = GET_TIMEOUT_SECONDS,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        socket_path: str | None = None,
    ) -> None:
        self.socket_path = socket_path  # the node's unix socket; else host:port over TCP
        self.host = "127.0.0.1" if host in WILDCARD_HOSTS else host.strip("[]")
        self.port = int(port)
        self.token_file = Path(token_file)
        self.connect_timeout = connect_timeout
        self.get_timeout = get_timeout
        self.call_timeout = call_timeout
        self._token: str | None = None

    @classmethod
    def from_config(cls, cfg: "Config") -> "LocalApi":
        return cls(cfg.transport.host, cfg.transport.port, cfg.paths.api_token_file)

    @classmethod
    def for_running_node(cls, paths: "NodePaths | None" = None) -> "LocalApi":
        """The node running from this data dir, found through the endpoint file that
        `hearthnet run` keeps in its run dir; no config.toml is read (fast CLI start)."""
        if paths is None:
            from hearthnet.rundir import default_run_dir  # not hearthnet.paths: fast start

            return cls.for_run_dir(default_run_dir())
        return cls.for_run_dir(paths.run_dir)

    @classmethod
    def for_run_dir(cls, run_dir: Path) -> "LocalApi":
        """The node whose run dir is `run_dir` (its api.json and api.token, hearthnet.paths)."""
        endpoint_file, token_file = run_dir / "api.json", run_dir / "api.token"
        try:
            doc = json.loads(endpoint_file.read_text(encoding="utf-8"))
            if "socket" in doc:
                return cls("localhost", 0, token_file, socket_path=str(doc["socket"]))
            host, port = str(doc["host"]), int(doc["port"])
        except FileNotFoundError:
            raise NodeNotRunning("node_not_running",
                                 f"no node is running here (start one with `hearthnet run`; "
                                 f"nothing at {endpoint_file})") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NodeNotRunning("node_not_running",
                                 f"cannot read {endpoint_file}: {exc}") from None
        return cls(host, port, token_file)

    @property
    def base_url(self) -> str:
        if self.socket_path:
            return f"http+unix://{self.socket_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ public API

    def health(self) -> bool:
        """True when something on the port answers GET /health with status ok."""
        import http.client

        try:
            conn = self._connect(self.connect_timeout)
        except NodeNotRunning:
            return False
        try:
            conn.request("GET", "/health", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                return False
            doc = json.loads(body)
            return isinstance(doc, dict) and doc.get("status") == "ok"
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            conn.close()

    def get(self, path: str, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET a local API route and return its JSON object."""
        token = self.token()
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            if clean:
                import urllib.parse

                path = f"{path}?{urllib.parse.urlencode(clean)}"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if self.socket_path:  # the usual case: no http.client (and its email.* imports)
            status, reason, raw = self._get_unix(path, headers)
        else:
            conn = self._connect(self.get_timeout)
            try:
                resp = self._send(conn, "GET", path, None, headers)
                status, reason, raw = resp.status, resp.reason, self._read(resp)
            finally:
                conn.close()
        if status >= 400:
            exc = _error_from(status, reason, raw)
            if status == 401:
                exc.details.setdefault(
                    "hint",
                    f"the node did not accept the token in {self.token_file}; is the node on "
                    f"{self.base_url} running from this data dir?",
                )
            raise exc
        return _json_object(raw, status)

    def _get_unix(self, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """One HTTP/1.0 GET over the node's unix socket (hearthnet.http10): (status,
        reason, body); importing http.client costs a CLI command more than the request."""
        from hearthnet import http10

        assert self.socket_path is not None
        try:
            raw = http10.get(self.socket_path, path, headers, connect_timeout=self.connect_timeout,
                             timeout=self.get_timeout)
        except http10.ConnectFailed as exc:
            raise NodeNotRunning(
                "node_not_running", f"no node answers on {self.base_url} ({_reason(exc.cause)})"
            ) from None
        except TimeoutError:
            raise HearthNetError("timeout", f"the node on {self.base_url} did not answer in time") from None
        except OSError as exc:
            raise HearthNetError(
                "connection_lost", f"the node on {self.base_url} closed the connection ({_reason(exc)})"
            ) from None
        return _parse_http10(raw, self.base_url)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON object to a local API route (e.g. /api/v1/settings/name) and return
        its JSON object; an error body raises its HearthNetError."""
        token = self.token()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Accept": "application/json"}
        payload = json.dumps(dict(body), ensure_ascii=False).encode("utf-8")
        conn = self._connect(self.call_timeout)
        try:
            resp = self._send(conn, "POST", path, payload, headers)
            raw = self._read(resp)
            if resp.status >= 400:
                raise _error_from(resp.status, resp.reason, raw)
            return _json_object(raw, resp.status)
        finally:
            conn.close()

    def output(self, name: str, inp: Mapping[str, Any], version: str = "1.0") -> dict[str, Any]:
        """A non-stream call with `{"params": {}, "input": inp}`: its `output` object
        (`bad_response` when the answer holds none)."""
        reply = self.call(name, version, {"params": {}, "input": dict(inp)})
        out = reply.get("output") if isinstance(reply, dict) else None
        if not isinstance(out, dict):
            raise HearthNetError("bad_response", f"the node's {name} answer holds no output")
        return out

    def call(
        self, name: str, version: str, body: Mapping[str, Any], *, stream: bool = False,
        node: str | None = None, timeout: float | None = None,
    ) -> dict[str, Any] | Iterator[Frame]:
        """POST /bus/v1/call. Without `stream`: the response JSON `{"output", "meta"}`.
        With `stream`: an iterator of `(event, data)` frames, parsed as they arrive; it
        ends after `done`, and raises the error of an `error` frame. (A capability that
        cannot stream gives one `response` frame holding the JSON response, then `done`.)
        `node` (a full node id) has only that node serve it; `timeout` is the call's
        deadline in seconds (the node answers `timeout` past it)."""
        token = self.token()
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "X-HearthNet-Capability": name,
            "X-HearthNet-Capability-Version": version,
        }
        if node:
            headers["X-HearthNet-Node"] = node
        if timeout is not None:
            from hearthnet.transport.signing import format_timeout

            headers["X-HearthNet-Timeout"] = format_timeout(timeout)
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        # Streams may legitimately be silent for a long time (a slow model): no timeout.
        wait = self.call_timeout if timeout is None else timeout + 2.0  # the node's answer first
        conn = self._connect(None if stream else wait)
        handed_off = False
        try:
            resp = self._send(conn, "POST", "/bus/v1/call", payload, headers)
            if resp.status >= 400:
                raise _error_from(resp.status, resp.reason, self._read(resp))
            if not stream:
                return _json_object(self._read(resp), resp.status)
            if "text/event-stream" not in resp.getheader("Content-Type", ""):
                # A capability that does not stream answers with plain JSON: hand it on
                # as a `response` frame + `done` so callers need only one code path.
                doc = _json_object(self._read(resp), resp.status)
                meta = doc.get("meta")
                return iter([("response", doc), ("done", meta if isinstance(meta, dict) else {})])
            handed_off = True  # the frame iterator closes the connection
            return _sse_frames(resp, conn)
        finally:
            if not handed_off:
                conn.close()

    def subscribe(self, topics: list[str], since: str | None = None, *,
                  read_timeout: float = LIVE_READ_TIMEOUT_SECONDS) -> Iterator[LiveFrame]:
        """GET /api/v1/subscribe (README "Live updates"): frames as they arrive, first
        `subscribed`. Resumes after `since` (a token from an earlier frame). Ends by
        raising: the server's `error` frame as its HearthNetError (details: `resume`),
        `connection_lost` when the node hangs up, `timeout` when even keep-alives stop."""
        import urllib.parse

        token = self.token()
        query = urllib.parse.urlencode([("topic", t) for t in topics])
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if since is not None:
            headers["Last-Event-ID"] = str(since)
        conn = self._connect(self.get_timeout)
        try:
            resp = self._send(conn, "GET", f"/api/v1/subscribe?{query}", None, headers)
            if resp.status >= 400:
                raise _error_from(resp.status, resp.reason, self._read(resp))
            assert conn.sock is not None
            conn.sock.settimeout(read_timeout)
        except BaseException:  # the error (or Ctrl-C) is re-raised; the socket is not left open
            conn.close()
            raise
        return _live_frames(resp, conn, self.base_url)

    def token(self) -> str:
        if self._token is None:
            try:
                text = self.token_file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise NodeNotRunning(
                    "node_not_running",
                    f"no node is running here (no API token at {self.token_file})",
                ) from None
            except PermissionError:
                raise HearthNetError(
                    "unauthorized",
                    f"cannot read the API token {self.token_file}: permission denied",
                    hint="run this command as the user who runs the node",
                ) from None
            if not text:
                raise NodeNotRunning(
                    "node_not_running", f"the API token {self.token_file} is empty; is the node starting?"
                )
            self._token = text
        return self._token

    # ------------------------------------------------------------------ plumbing

    def _connect(self, timeout_after_connect: float | None) -> "http.client.HTTPConnection":
        import http.client

        if self.socket_path:
            from hearthnet.unixhttp import UnixHTTPConnection

            conn: http.client.HTTPConnection = UnixHTTPConnection(self.socket_path,
                                                                  timeout=self.connect_timeout)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise NodeNotRunning(
                "node_not_running", f"no node answers on {self.base_url} ({_reason(exc)})"
            ) from None
        assert conn.sock is not None
        conn.sock.settimeout(timeout_after_connect)
        return conn

    def _send(
        self,
        conn: "http.client.HTTPConnection",
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> "http.client.HTTPResponse":
        import http.client

        try:
            conn.request(method, path, body=body, headers=headers)
            return conn.getresponse()
        except TimeoutError:
            raise HearthNetError("timeout", f"the node on {self.base_url} did not answer in time") from None
        except (OSError, http.client.HTTPException) as exc:
            raise HearthNetError(
                "connection_lost", f"the node on {self.base_url} closed the connection ({_reason(exc)})"
            ) from None

    def _read(self, resp: "http.client.HTTPResponse") -> bytes:
        import http.client

        try:
            return resp.read()
        except TimeoutError:
            raise HearthNetError("timeout", f"the node on {self.base_url} stopped answering mid-response") from None
        except (OSError, http.client.HTTPException) as exc:
            raise HearthNetError(
                "connection_lost", f"the node on {self.base_url} closed the connection ({_reason(exc)})"
            ) from None


def _parse_http10(data: bytes, where: str) -> tuple[int, str, bytes]:
    """(status, reason, body) of a whole HTTP/1.0 response; a cut-off one is connection_lost."""
    from hearthnet import http10

    try:
        return http10.parse(data, where)
    except http10.BadResponse as exc:
        raise HearthNetError(exc.code, exc.message) from None


def _reason(exc: BaseException) -> str:
    import socket

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text


def _json_object(raw: bytes, status: int) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise HearthNetError(
            "bad_response", f"the node sent a response that is not JSON (HTTP {status}): {_snippet(raw)}"
        ) from None
    if not isinstance(doc, dict):
        raise HearthNetError("bad_response", f"the node sent JSON that is not an object: {_snippet(raw)}")
    return doc


def _error_from(status: int, reason: str, raw: bytes) -> HearthNetError:
    """The contract error body if there is one, else a code from the HTTP status."""
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return HearthNetError.from_wire(doc)
    code = _CODE_FOR_STATUS.get(status, "internal_error" if status >= 500 else "bad_request")
    detail = f": {_snippet(raw)}" if raw.strip() else ""
    return HearthNetError(code, f"HTTP {status} {reason}{detail}")


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _sse_frames(resp: "http.client.HTTPResponse", conn: "http.client.HTTPConnection") -> Iterator[Frame]:
    """Parse `event:` / `data:` blocks as lines arrive (spec core-bus-transport §10)."""
    import http.client

    event: str | None = None
    data_lines: list[str] = []
    try:
        while True:
            try:
                raw = resp.readline()
            except (OSError, http.client.HTTPException) as exc:
                raise HearthNetError("connection_lost", f"the stream broke off ({_reason(exc)})") from None
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                if line.startswith(":"):
                    continue  # comment / keep-alive
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data_lines.append(value)
                continue
            if event is None and not data_lines:
                continue
            name, text = event or "message", "\n".join(data_lines)
            event, data_lines = None, []
            data = _frame_data(name, text)
            if name == "error":
                raise HearthNetError.from_wire(data if "error" in data else {"error": "internal_error", **data})
            yield name, data
            if name == "done":
                return
        raise HearthNetError("bad_response", "the node closed the stream before it sent `done`")
    finally:
        resp.close()
        conn.close()


def _frame_data(name: str, text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise HearthNetError("bad_response", f"a `{name}` frame carried invalid JSON: {text[:200]}") from None
    return data if isinstance(data, dict) else {"value": data}


def _live_frames(resp: "http.client.HTTPResponse", conn: "http.client.HTTPConnection",
                 where: str) -> Iterator[LiveFrame]:
    """SSE with ids: `event:`/`id:`/`data:` blocks; `:` comments are keep-alives."""
    import http.client

    event, token, data_lines = None, None, []
    try:
        while True:
            try:
                raw = resp.readline()
            except TimeoutError:
                raise HearthNetError("timeout", f"the live feed of {where} went silent") from None
            except (OSError, http.client.HTTPException) as exc:
                raise HearthNetError("connection_lost", f"the live feed broke off ({_reason(exc)})") from None
            if not raw:
                raise HearthNetError("connection_lost", f"the node on {where} ended the live feed")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "id":
                    token = value
                elif name == "data":
                    data_lines.append(value)
                continue
            if not data_lines:
                event, token = None, None
                continue
            name, doc = event or "message", _frame_data(event or "message", "\n".join(data_lines))
            frame, event, token, data_lines = LiveFrame(name, token, doc), None, None, []
            if name == "error":
                raise HearthNetError.from_wire(doc if "error" in doc else {"error": "internal_error", **doc})
            yield frame
    finally:
        resp.close()
        conn.close()
