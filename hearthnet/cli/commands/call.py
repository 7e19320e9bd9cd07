"""`hearthnet call NAME[@VERSION]`: one capability call through the local node.

The body is JSON given inline, as `@file`, or `-` for stdin. With `--stream` the token
texts go to stdout as they arrive and every other frame goes to stderr as a JSON line,
so `hearthnet call llm.chat --stream ... > answer.txt` captures only the answer. A wire
error exits with the code `hearthnet.errors.exit_code_for` gives its error code.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output
from hearthnet.errors import HearthNetError

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.config import Config

DEFAULT_VERSION = "1.0"
_VERSION = re.compile(r"^\d+\.\d+$")


@dataclass
class CallResult:
    response: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.response

    def human(self, out: Output) -> None:
        out.json(self.response)


def parse_target(target: str) -> tuple[str, str]:
    name, _, version = target.partition("@")
    version = version or DEFAULT_VERSION
    if not name:
        raise HearthNetError("usage", f"no capability name in {target!r} (expected NAME[@VERSION])")
    if not _VERSION.match(version):
        raise HearthNetError("usage", f"bad version {version!r} in {target!r}: expected MAJOR.MINOR, e.g. 1.0")
    return name, version


def parse_body(spec: str) -> dict[str, Any]:
    """`--body` as inline JSON, `@path` or `-` (stdin); must be a JSON object."""
    where = "--body"
    if spec == "-":
        text, where = sys.stdin.read(), "--body (stdin)"
    elif spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise HearthNetError("usage", f"cannot read --body file {path}: {exc.strerror or exc}") from None
        where = f"--body file {path}"
    else:
        text = spec
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HearthNetError(
            "usage", f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(body, dict):
        raise HearthNetError("usage", f'{where} must be a JSON object like {{"params": {{...}}, "input": {{...}}}}')
    return body


def call_capability(
    target: str, body_spec: str, *, stream: bool, as_json: bool, out: Output
) -> CallResult | None:
    """Parse the arguments first (a typo needs no running node), then call."""
    from hearthnet.localapi import LocalApi

    name, version = parse_target(target)
    body = parse_body(body_spec)
    api = LocalApi.for_running_node()
    if not stream:
        return CallResult(api.call(name, version, body, stream=False))  # type: ignore[arg-type]
    for event, data in api.call(name, version, body, stream=True):  # type: ignore[union-attr]
        if as_json:
            out.json_line({"event": event, "data": data})
        elif event == "token":
            out.write(str(data.get("text", "")))
        elif event == "response":
            out.json(data)
        else:
            out.json_line({"event": event, "data": data}, err=True)
    if not as_json:
        out.echo()  # the answer ends with a newline
    return None


@click.command("call")
@click.argument("target", metavar="NAME[@VERSION]")
@click.option("--body", "body_spec", default="{}", show_default=True, metavar="JSON|@FILE|-",
              help="The request {\"params\": ..., \"input\": ...}: inline, @file, or - for stdin.")
@click.option("--stream", is_flag=True, help="Ask for a stream; print tokens as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="JSON output (with --stream: one JSON line per frame).")
@click.pass_obj
def cli(state: "CliState", target: str, body_spec: str, stream: bool, as_json: bool) -> None:
    """Call a capability once through the local node.

    \b
    Example:
      hearthnet call llm.chat@1.0 --stream --body '{"params": {},
        "input": {"messages": [{"role": "user", "content": "Hi"}]}}'

    VERSION defaults to 1.0. Exit codes follow the wire error: 2 bad request,
    4 auth, 5 capacity/rate limit, 3 no node, 1 anything else.
    """
    out = Output()
    boundary.run(
        lambda: call_capability(target, body_spec, stream=stream, as_json=as_json, out=out),
        as_json=as_json,
        state=state,
        out=out,
    )
