"""`hearthnet watch TOPIC...`: print live updates as they come (README "Live updates").

Follows GET /api/v1/subscribe on the running node. When the node goes away (restart,
crash) or ends the feed, it says so on stderr, waits, reconnects and resumes with the
last token it printed, so nothing is missed or printed twice. Ctrl-C ends it (exit 0);
no node at the start is exit 3, a bad topic exit 2.
"""
from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output, short_node_id
from hearthnet.errors import HearthNetError, NodeNotRunning

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.localapi import LiveFrame, LocalApi

RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # waits between reconnects, the last one repeated


def follow(connect: Callable[[], "LocalApi"], topics: list[str], since: str | None = None,
           note: Callable[[str], None] = lambda _: None,
           sleep: Callable[[float], None] = time.sleep) -> Iterator["LiveFrame"]:
    """The frames of `topics` for as long as the caller iterates, across reconnects:
    each attempt asks `connect()` for a fresh client (a restarted node has a new token)
    and resumes after the last token yielded, so no event is missed or repeated. Raises
    only before the first connection (NodeNotRunning, a bad topic or token); after it,
    every failure is an outage to wait out (one `note` per outage)."""
    token, connected, failures = since, False, 0
    while True:
        try:
            for frame in connect().subscribe(topics, token):
                if frame.topic == "subscribed":
                    if failures:
                        note(f"reconnected; resuming after {token}" if token else "reconnected")
                    connected, failures = True, 0
                    token = frame.token or token
                    continue
                token = frame.token or token
                yield frame
        except HearthNetError as exc:
            if not connected:
                raise
            if failures == 0:
                note(f"live feed lost ({exc.code}: {exc.message}); reconnecting…")
            sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
            failures += 1


def summary(ev: dict[str, Any]) -> str:
    """A short, one-line description of an event's data (no chat bodies: they are ciphertext)."""
    kind, data = str(ev.get("event_type", "?")), ev.get("data") if isinstance(ev.get("data"), dict) else {}
    if kind == "market.post.created":
        return f"{data.get('category', '?')}: {data.get('title', '')}"
    if kind in ("market.post.updated", "market.post.expired"):
        extra = data.get("reason") or ", ".join(sorted((data.get("fields") or {}).keys()))
        return f"post {str(data.get('target_event_id', ''))[:12]} {extra}".rstrip()
    if kind == "chat.message.sent":
        return f"message to {short_node_id(data.get('recipient'))}"
    if kind in ("chat.message.delivered", "chat.message.read"):
        return f"{kind.rsplit('.', 1)[-1]} {str(data.get('target_event_id', ''))[:12]}"
    parts = [f"{k}={v}" for k, v in data.items() if isinstance(v, (str, int, float)) and len(str(v)) < 40]
    return " ".join(parts[:4])


def human_line(frame: "LiveFrame", names: dict[str, str]) -> str:
    ev = frame.data
    at = str(ev.get("wall_clock", ""))[11:19] or "--:--:--"
    author = ev.get("author")
    who = names.get(author) or short_node_id(author) if isinstance(author, str) else "?"
    return f"{at}  {frame.topic:<26} {who:<20} {ev.get('event_type', '?')}: {summary(ev)}"


def display_names(api: "LocalApi") -> dict[str, str]:
    """node id -> display name from the governance worker's member list (one call at
    start; {} when it fails: short ids are shown instead)."""
    try:
        members = api.output("community.members.list", {}).get("members") or []
    except HearthNetError:
        return {}
    return {m["node_id"]: str(m["display_name"]) for m in members
            if isinstance(m, dict) and isinstance(m.get("node_id"), str) and m.get("display_name")}


def watch(state: "CliState", topics: list[str], since: str | None, as_json: bool, out: Output) -> None:
    from hearthnet.localapi import LocalApi

    paths = state.config().paths if state.config_path else None  # else: the default node's run dir
    connect = lambda: LocalApi.for_running_node(paths)  # noqa: E731
    names: dict[str, str] = {}
    if not as_json:
        try:
            names = display_names(connect())
        except NodeNotRunning:
            pass  # follow() says so properly
    note = lambda text: out.echo(f"watch: {text}", err=True)  # noqa: E731
    # Ctrl-C is the way out, even when started with SIGINT ignored (a job a non-interactive
    # shell put in the background inherits SIG_IGN, and Python then never raises
    # KeyboardInterrupt): the command would otherwise run until killed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for frame in follow(connect, topics, since, note):
            if as_json:
                out.json_line({"topic": frame.topic, "id": frame.token, "event": frame.data})
            else:
                out.echo(human_line(frame, names))
                out.out.flush()
    except KeyboardInterrupt:
        return None  # Ctrl-C is how one leaves: exit 0


@click.command("watch")
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC...")
@click.option("--since", metavar="TOKEN", help="Resume after this token (an `id` printed by --json).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: {topic, id, event}.")
@click.pass_obj
def cli(state: "CliState", topics: tuple[str, ...], since: str | None, as_json: bool) -> None:
    """Print live updates of TOPIC... as they come (community.event,
    marketplace.post.created|updated|expired, chat.message.<node id>,
    chat.receipt.<node id>)."""
    out = Output()
    boundary.run(lambda: watch(state, list(topics), since, as_json, out), as_json=as_json, state=state, out=out)
