"""`hearthnet market ls|post|done|search`: the neighbourhood board, through the running
node's market worker (market.list, market.post, market.expire, market.search; see
hearthnet/services/market/ and README "Marketplace").

`post` generates the client_id (so a retried call cannot post twice); `done ID` expires a
post with reason `fulfilled`, where ID is its event id or a unique prefix (6+ characters)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.durations import parse_ttl
from hearthnet.cli.render import Notice, Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState

CATEGORIES = ("offer", "request", "info", "emergency")  # = hearthnet.services.market.post.CATEGORIES
STATUSES = ("active", "fulfilled", "expired", "all")
POST_KEYS = ("event_id", "lamport", "author", "category", "title", "body", "location", "tags", "quantity",
             "created_at", "expires_at", "status", "expiry_reason")


def _post_row(p: dict[str, Any], out: Output, score: bool = False) -> list[Any]:
    from hearthnet.cli.render import short_node_id

    qty = f" ×{p['quantity']}" if isinstance(p.get("quantity"), int) else ""
    tags = " ".join(f"#{t}" for t in p.get("tags") or [])
    row = [p.get("event_id"), p.get("category"), f"{p.get('title')}{qty}",
           tags, short_node_id(p.get("author")), str(p.get("expires_at", ""))[:16].replace("T", " ")]
    status = p.get("status")
    row.append(out.text(str(status), "green" if status == "active" else "dim"))
    if score:
        row.append(f"{p.get('score', 0):.3f}")
    return row


_COLUMNS = ["id", "category", "title", "tags", "author", "expires", "status"]


# --------------------------------------------------------------------------- ls


@dataclass
class ListResult:
    posts: list[dict[str, Any]]
    max_lamport: int

    def to_dict(self) -> dict[str, Any]:
        return {"posts": [{k: p.get(k) for k in POST_KEYS} for p in self.posts], "max_lamport": self.max_lamport,
                "count": len(self.posts)}

    def human(self, out: Output) -> None:
        if not self.posts:
            out.echo("No posts (post one with `hearthnet market post --category offer --title ... --body ...`).")
            return
        out.table(_COLUMNS, [_post_row(p, out) for p in self.posts])


def list_posts(state: "CliState", category: str | None, status: str) -> ListResult:
    inp: dict[str, Any] = {"status": status, "limit": 500}
    if category:
        inp["category"] = category
    out = state.call("market.list", inp).get("output") or {}
    return ListResult(list(out.get("posts") or []), int(out.get("max_lamport") or 0))


# --------------------------------------------------------------------------- post


def post(state: "CliState", *, category: str, title: str, body: str, ttl: str | None, tags: tuple[str, ...],
         quantity: int | None) -> Notice:
    from hearthnet.ids import new_ulid

    inp: dict[str, Any] = {"client_id": new_ulid(), "category": category, "title": title, "body": body,
                           "tags": list(tags)}
    seconds = parse_ttl(ttl)
    if seconds is not None:
        inp["ttl_seconds"] = seconds
    if quantity is not None:
        inp["quantity"] = quantity
    reply = state.call("market.post", inp)
    out, meta = reply.get("output") or {}, reply.get("meta") or {}
    doc = {"event_id": out.get("event_id"), "lamport": out.get("lamport"), "client_id": inp["client_id"],
           "deduplicated": bool(meta.get("deduplicated"))}
    return Notice(doc, f"Posted {doc['event_id']} (neighbours see it after the next sync).")


# --------------------------------------------------------------------------- done


def done(state: "CliState", post_id: str) -> Notice:
    from hearthnet.ids import new_ulid

    reply = state.call("market.expire", {"client_id": new_ulid(), "event_id": post_id, "reason": "fulfilled"})
    out, meta = reply.get("output") or {}, reply.get("meta") or {}
    already = meta.get("already_expired")
    doc = {"event_id": out.get("event_id"), "lamport": out.get("lamport"), "post_event_id": meta.get("post_event_id"),
           "reason": "fulfilled", "already_expired": already}
    message = (f"That post was already closed ({already})." if already else
               f"Marked fulfilled ({doc['event_id']}).")
    return Notice(doc, message)


# --------------------------------------------------------------------------- search


@dataclass
class SearchResult:
    query: str
    posts: list[dict[str, Any]]
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "posts": [{**{k: p.get(k) for k in POST_KEYS}, "score": p.get("score")}
                                               for p in self.posts],
                "search_mode": self.meta.get("search_mode"), "search_reason": self.meta.get("search_reason"),
                "model": self.meta.get("model"), "not_embedded": self.meta.get("not_embedded")}

    def human(self, out: Output) -> None:
        mode, why = self.meta.get("search_mode"), self.meta.get("search_reason")
        out.echo(f"Search by {'meaning' if mode == 'semantic' else 'words'} ({mode}: {why}).")
        if self.meta.get("not_embedded"):
            out.echo(f"{self.meta['not_embedded']} posts were not embedded in time and were left out; "
                     "search again shortly.")
        if not self.posts:
            out.echo("Nothing found.")
            return
        out.table([*_COLUMNS, "score"], [_post_row(p, out, score=True) for p in self.posts], right=("score",))


def search(state: "CliState", text: str, k: int) -> SearchResult:
    reply = state.call("market.search", {"query": text, "k": k})
    out, meta = reply.get("output") or {}, reply.get("meta") or {}
    return SearchResult(text, list(out.get("posts") or []), meta)


# --------------------------------------------------------------------------- commands


@click.group("market")
def cli() -> None:
    """The neighbourhood board: offers, requests, information, emergencies."""


@cli.command("ls")
@click.option("--category", type=click.Choice(CATEGORIES), help="Only this category.")
@click.option("--status", type=click.Choice(STATUSES), default="active", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print {posts: [...], max_lamport, count}.")
@click.pass_obj
def ls_cmd(state: "CliState", category: str | None, status: str, as_json: bool) -> None:
    """Posts on the board, newest first (at most 500)."""
    boundary.run(lambda: list_posts(state, category, status), as_json=as_json, state=state)


@cli.command("post")
@click.option("--category", type=click.Choice(CATEGORIES), required=True)
@click.option("--title", required=True, help="One line, at most 200 characters.")
@click.option("--body", default="", help="The details, at most 4000 characters.")
@click.option("--ttl", help="How long it stays up: seconds, or e.g. 12h, 3d (default 7 days, at most the "
                            "node's [market] max_ttl_seconds).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more, at most 10).")
@click.option("--quantity", type=click.IntRange(min=1), help="How many (a whole number).")
@click.option("--json", "as_json", is_flag=True, help="Print {event_id, lamport, client_id, deduplicated}.")
@click.pass_obj
def post_cmd(state: "CliState", category: str, title: str, body: str, ttl: str | None, tags: tuple[str, ...],
             quantity: int | None, as_json: bool) -> None:
    """Post to the board (signed by this node). Exit 2 for bad input (e.g. a ttl over the maximum)."""
    boundary.run(lambda: post(state, category=category, title=title, body=body, ttl=ttl, tags=tags,
                              quantity=quantity), as_json=as_json, state=state)


@cli.command("done")
@click.argument("post_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True,
              help="Print {event_id, lamport, post_event_id, reason, already_expired}.")
@click.pass_obj
def done_cmd(state: "CliState", post_id: str, as_json: bool) -> None:
    """Mark post ID fulfilled (its event id or a unique prefix of 6+ characters).

    Exit 1 for an unknown post, 2 for an ambiguous prefix, 4 when this node may not close it."""
    boundary.run(lambda: done(state, post_id), as_json=as_json, state=state)


@cli.command("search")
@click.argument("text")
@click.option("-k", "k", type=click.IntRange(1, 100), default=10, show_default=True, help="How many posts.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {query, posts: [... + score], search_mode, search_reason, model, not_embedded}.")
@click.pass_obj
def search_cmd(state: "CliState", text: str, k: int, as_json: bool) -> None:
    """Active posts closest to TEXT: by meaning when a node in the mesh can embed, else by words
    (it says which)."""
    boundary.run(lambda: search(state, text, k), as_json=as_json, state=state)
