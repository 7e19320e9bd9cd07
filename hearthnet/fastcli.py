"""The `hearthnet` entry point: `status --json` without click, everything else through it.

`hearthnet status --json` is what scripts and monitors poll, and importing click (with
inspect, enum, typing …) costs more than the whole request to the node (issue 11 target:
<= 60 ms, bench/cli_latency.py). So exactly that command line is served here on the
success path only, with the standard library and hearthnet.localapi: a node that answers
with a status document prints the same envelope as the click command. Anything else - other
arguments, no node, a bad answer, any error - goes to the click CLI (hearthnet.cli), which
asks again and renders the error its usual way (status is read-only, so asking twice is
harmless). Lives outside hearthnet.cli because that package's __init__ imports click.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

FAST_ARGV = ("status", "--json")
SCHEMA_VERSION = 1  # hearthnet.cli.render.SCHEMA_VERSION (pinned equal by a unit test)


def status_document() -> dict[str, Any] | None:
    """The running node's status (the `status --json` result), or None for any failure."""
    try:
        from hearthnet.localapi import LocalApi

        doc = LocalApi.for_running_node().get("/api/v1/status")
    except Exception:  # the click path reports it properly
        return None
    shape = (("node", dict), ("workers", list), ("capabilities", list))
    if not all(isinstance(doc.get(key), kind) for key, kind in shape):
        return None
    return doc


def envelope_text(doc: dict[str, Any]) -> str:
    """What hearthnet.cli.render prints for a successful result: the envelope, sorted, indent 2."""
    return json.dumps({**doc, "ok": True, "schema_version": SCHEMA_VERSION},
                      indent=2, sort_keys=True, ensure_ascii=False, default=str)


def try_fast(argv: list[str]) -> bool:
    """Serve `argv` here if it is the fast command and the node answers; True if served."""
    if tuple(argv) != FAST_ARGV:
        return False
    doc = status_document()
    if doc is None:
        return False
    try:
        text = envelope_text(doc) + "\n"
        text.encode(sys.stdout.encoding or "utf-8")  # unprintable here: let click decide
    except (TypeError, ValueError):
        return False
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `hearthnet status --json | head`: quiet, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    return True


def main() -> None:
    if try_fast(sys.argv[1:]):
        raise SystemExit(0)
    from hearthnet.cli import main as click_main

    click_main()


if __name__ == "__main__":
    main()
