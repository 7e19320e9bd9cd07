"""The `hearthnet` entry point: `status` and `status --json` without click, everything
else through it.

`hearthnet status` is what people and monitors poll, and importing click (with inspect,
enum, typing ...) and rich costs more than the whole request to the node (issue 11
targets: `status --json` <= 60 ms, the table <= 100 ms; bench/cli_latency.py). So exactly
these two command lines are served here on the success path only, with the C parts of the
standard library (hearthnet.http10 over _socket, hearthnet.leanjson over _json,
hearthnet.rundir): a node that answers with a status document prints what the click
command prints - the same envelope (hearthnet.cli.render's) or the same table
(hearthnet.statusview, the one renderer both use). Anything else - other arguments, no
node, a TCP endpoint, a bad answer, any error - goes to the click CLI (hearthnet.cli),
which asks again and renders the error its usual way (status is read-only, so asking
twice is harmless). Lives outside hearthnet.cli because that package's __init__ imports
click.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs this path ~5 ms
if TYPE_CHECKING:
    from typing import Any

FAST = {("status", "--json"): True, ("status",): False}  # argv -> as_json
SCHEMA_VERSION = 1  # hearthnet.cli.render.SCHEMA_VERSION (pinned equal by a unit test)
CONNECT_TIMEOUT_SECONDS = 2.0  # hearthnet.localapi's
GET_TIMEOUT_SECONDS = 15.0


class NodeTimedOut(Exception):
    """The node took the connection but sent no answer in GET_TIMEOUT_SECONDS: reported
    here, as the click command would, rather than asked again (a second long wait)."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(f"the node on http+unix://{socket_path} did not answer in time")  # LocalApi's words


def status_document() -> "dict[str, Any] | None":
    """The running node's status (the `status --json` result), or None for any failure
    but a timeout (NodeTimedOut)."""
    from hearthnet import http10, leanjson, rundir, statusview

    try:
        run_dir = rundir.default_run_dir_str()
        with open(os.path.join(run_dir, "api.json"), encoding="utf-8") as f:
            endpoint = leanjson.loads(f.read())
        with open(os.path.join(run_dir, "api.token"), encoding="utf-8") as f:
            token = f.read().strip()
        socket_path = endpoint.get("socket") if isinstance(endpoint, dict) else None
        if not token or not isinstance(socket_path, str):
            return None  # a TCP endpoint (http.client) or a starting node: the click path
        raw = http10.get(socket_path, "/api/v1/status",
                         {"Authorization": f"Bearer {token}", "Accept": "application/json"},
                         connect_timeout=CONNECT_TIMEOUT_SECONDS, timeout=GET_TIMEOUT_SECONDS)
        status, _, body = http10.parse(raw, socket_path)
        doc = leanjson.loads(body.decode("utf-8")) if status == 200 else None
    except TimeoutError:
        raise NodeTimedOut(socket_path) from None
    except Exception:  # the click path reports it properly
        return None
    return doc if isinstance(doc, dict) and not statusview.shape_problems(doc) else None


def envelope_text(doc: "dict[str, Any]") -> str:
    """What hearthnet.cli.render prints for a successful result: the envelope, sorted, indent 2."""
    from hearthnet import leanjson

    return leanjson.dumps({**doc, "ok": True, "schema_version": SCHEMA_VERSION})


def table_text(doc: "dict[str, Any]") -> str:
    """What the click command prints for a person (hearthnet.statusview, styled for stdout)."""
    from hearthnet import statusview

    return statusview.render(doc, styles=statusview.wants_style(sys.stdout),
                             config_file=str(doc["node"].get("config_file") or ""))


def try_fast(argv: list[str]) -> bool:
    """Serve `argv` here if it is a fast command and the node answers; True if served."""
    as_json = FAST.get(tuple(argv))
    if as_json is None:
        return False
    try:
        doc = status_document()
        if doc is None:
            return False
        text = envelope_text(doc) + "\n" if as_json else table_text(doc)
        text.encode(sys.stdout.encoding or "utf-8")  # unprintable here: let click decide
    except KeyboardInterrupt:  # Ctrl-C while waiting: what the click command's boundary says
        _fail(as_json, "user_abort", "aborted")
    except NodeTimedOut as exc:
        _fail(as_json, "timeout", str(exc))
    except Exception:  # an odd document: the click path renders it or its error
        return False
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `hearthnet status | head`: quiet, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    return True


def _fail(as_json: bool, code: str, message: str) -> None:
    """End as the click command's error boundary ends on this error (hearthnet.cli.boundary)."""
    from hearthnet.cli import boundary
    from hearthnet.errors import HearthNetError

    def fail() -> None:
        raise KeyboardInterrupt if code == "user_abort" else HearthNetError(code, message)

    raise SystemExit(boundary.execute(fail, as_json=as_json))


def main() -> None:
    if try_fast(sys.argv[1:]):
        raise SystemExit(0)
    from hearthnet.cli import main as click_main

    click_main()


if __name__ == "__main__":
    main()
