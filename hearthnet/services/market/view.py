"""The marketplace view (spec §1.3): posts derived from the ledger's `market.post.*`
events, held in memory. No table of its own: the event log is the only truth, and the
view is rebuilt from it (catch-up + subscription, service.py).

Order does not matter: a view fed the same events in any order ends equal.
- `created`: kept by event id (a second copy changes nothing).
- `updated`: kept per post; each field is last-writer-wins by (lamport, event_id). An
  update by anyone but the post's author is left out (the ledger refuses those already;
  the view does not rely on it).
- `expired`: kept per post; the winner is the greatest (kind, lamport, event_id), where
  a person's reason (fulfilled, withdrawn, user_request) outranks the sweeper's `stale`,
  so a sweeper racing the author never turns "fulfilled" into "expired". Several
  sweepers expiring one post are harmless: one post, one winner. An expiry with reason
  `user_request` by anyone but the author is left out.
A `created` whose data fails the post check (post.py) is left out on every node alike.
Events may arrive before their post (replay in any order): they wait in their maps and
count once the post arrives.
"""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from hearthnet.services.market.post import (UPDATABLE, Post, field_problem, parse_time, post_problem)

CREATED, UPDATED, EXPIRED = "market.post.created", "market.post.updated", "market.post.expired"
EVENT_TYPES = (CREATED, UPDATED, EXPIRED)
SNAPSHOT_VERSION = 1


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _expiry_rank(fact: Mapping[str, Any]) -> tuple[int, int, str]:
    return (0 if fact["reason"] == "stale" else 1, fact["lamport"], fact["event_id"])


class MarketView:
    def __init__(self) -> None:
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        self._created: dict[str, dict[str, Any]] = {}  # post id -> {event_id, lamport, author, wall_clock, data}
        self._updates: dict[str, dict[str, dict[str, Any]]] = {}  # post id -> update id -> fact
        self._expiries: dict[str, dict[str, dict[str, Any]]] = {}  # post id -> expiry id -> fact
        self._clients: dict[tuple[str, str, str], tuple[str, int]] = {}  # (author, type, client_id) -> (id, lamport)
        self._ignored: set[str] = set()  # created events whose data fails the post check
        self._rebuild_derived()

    def _rebuild_derived(self) -> None:
        self._posts: dict[str, Post] = {}
        for post_id in self._created:
            self._derive(post_id)
        self._order = sorted(self._posts, key=lambda i: (self._posts[i].lamport, i))
        self._order_dirty = False
        self._max_lamport = max((f["lamport"] for f in self._facts()), default=0)
        self.version = getattr(self, "version", 0) + 1
        self._active_cache: tuple[int, datetime, list[Post]] | None = None

    def _facts(self) -> Iterable[Mapping[str, Any]]:
        yield from self._created.values()
        for by_id in (*self._updates.values(), *self._expiries.values()):
            yield from by_id.values()

    def snapshot_state(self) -> dict[str, Any]:
        """Everything the view holds, JSON-able; restore_state() of it gives an equal view."""
        return copy.deepcopy({
            "version": SNAPSHOT_VERSION,
            "created": self._created,
            "updates": self._updates,
            "expiries": self._expiries,
            "clients": sorted([*k, *v] for k, v in self._clients.items()),
            "ignored": sorted(self._ignored),
        })

    def restore_state(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"market view snapshot version {state.get('version')!r} is not {SNAPSHOT_VERSION}")
        state = copy.deepcopy(dict(state))
        self._created = state["created"]
        self._updates = state["updates"]
        self._expiries = state["expiries"]
        self._clients = {(a, t, c): (i, lam) for a, t, c, i, lam in state["clients"]}
        self._ignored = set(state["ignored"])
        self._rebuild_derived()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MarketView) and self.snapshot_state() == other.snapshot_state()

    # ------------------------------------------------------------------ apply

    def apply(self, ev: Mapping[str, Any]) -> bool:
        """Fold one event in (any order, any number of times); True if the view changed."""
        kind, data = ev.get("event_type"), ev.get("data")
        if kind not in EVENT_TYPES or not isinstance(data, dict):
            return False
        fact = {"event_id": ev["event_id"], "lamport": ev["lamport"], "author": ev["author"]}
        client_id = data.get("client_id")
        if isinstance(client_id, str):
            key, value = (ev["author"], kind, client_id), (ev["event_id"], ev["lamport"])
            self._clients[key] = min(self._clients.get(key, value), value)
        if kind == CREATED:
            return self._apply_created(ev, fact, data)
        target = data.get("target_event_id")
        if not isinstance(target, str):
            return False
        if kind == UPDATED:
            fields = data.get("fields")
            if not isinstance(fields, dict):
                return False
            fact["fields"] = {k: v for k, v in fields.items() if k in UPDATABLE and field_problem(k, v) is None}
            store = self._updates
        else:
            fact["reason"] = data.get("reason")
            store = self._expiries
        known = store.setdefault(target, {})
        if ev["event_id"] in known:
            return False
        known[ev["event_id"]] = fact
        self._changed(ev["lamport"])
        if target in self._created:
            self._derive(target)
        return True

    def _apply_created(self, ev: Mapping[str, Any], fact: dict[str, Any], data: Mapping[str, Any]) -> bool:
        post_id = ev["event_id"]
        if post_id in self._created or post_id in self._ignored:
            return False
        if post_problem(data) is not None or parse_time(ev.get("wall_clock")) is None:
            self._ignored.add(post_id)
            return True
        fact["wall_clock"] = ev["wall_clock"]
        fact["data"] = {k: copy.deepcopy(data.get(k)) for k in
                        ("client_id", "category", "title", "body", "location", "tags", "ttl_seconds", "quantity")}
        self._created[post_id] = fact
        self._changed(ev["lamport"])
        if self._derive(post_id):
            self._order.append(post_id)
            self._order_dirty = True
        return True

    def _changed(self, lamport: int) -> None:
        self.version += 1
        self._active_cache = None
        self._max_lamport = max(self._max_lamport, lamport)

    def _derive(self, post_id: str) -> bool:
        """(Re)compute one post from its facts; False when it has none (yet)."""
        created = self._created.get(post_id)
        if created is None:
            return False
        d, author = dict(created["data"]), created["author"]
        changed = created["lamport"]
        for upd in sorted(self._updates.get(post_id, {}).values(), key=lambda f: (f["lamport"], f["event_id"])):
            if upd["author"] == author:
                d.update(upd["fields"])
                changed = max(changed, upd["lamport"])
        valid = [e for e in self._expiries.get(post_id, {}).values()
                 if e["author"] == author or e["reason"] != "user_request"]
        win = max(valid, key=_expiry_rank) if valid else None
        if win is not None:
            changed = max(changed, win["lamport"])
        self._posts[post_id] = Post(
            event_id=post_id, lamport=created["lamport"], author=author, client_id=d["client_id"],
            category=d["category"], title=d["title"], body=d["body"], location=d["location"],
            tags=list(d["tags"]), quantity=d.get("quantity"), ttl_seconds=d["ttl_seconds"],
            created_at=parse_time(created["wall_clock"]), changed_lamport=changed,
            expired_via_event_id=win["event_id"] if win else None, expiry_reason=win["reason"] if win else None,
            expired_by=win["author"] if win else None)
        return True

    # ------------------------------------------------------------------ queries

    def get(self, event_id: str) -> Post | None:
        return self._posts.get(event_id)

    def __len__(self) -> int:
        return len(self._posts)

    def max_lamport(self) -> int:
        return self._max_lamport

    def by_client(self, author: str, event_type: str, client_id: str) -> tuple[str, int] | None:
        """The event `author` wrote with this client_id (the idempotency key), if any."""
        return self._clients.get((author, event_type, client_id))

    def expiry_of(self, post_id: str) -> tuple[str, int] | None:
        """(event id, lamport) of the expiry that decides the post's status."""
        post = self._posts.get(post_id)
        if post is None or post.expired_via_event_id is None:
            return None
        fact = self._expiries[post_id][post.expired_via_event_id]
        return fact["event_id"], fact["lamport"]

    def resolve(self, prefix: str) -> list[str]:
        """Post ids equal to or starting with `prefix` (any case)."""
        p = prefix.upper()
        if p in self._posts:
            return [p]
        return sorted(i for i in self._posts if i.startswith(p))

    def newest_first(self) -> Iterable[Post]:
        if self._order_dirty:
            self._order.sort(key=lambda i: (self._posts[i].lamport, i))
            self._order_dirty = False
        for post_id in reversed(self._order):
            yield self._posts[post_id]

    def list(self, *, category: str | None = None, tags: Iterable[str] | None = None, since_lamport: int = 0,
             status: str = "active", limit: int = 50, now: datetime | None = None) -> list[Post]:
        """Newest first; `since_lamport`: posts changed (created, updated, expired) after it;
        `tags`: posts holding every one (any case); `status`: active|fulfilled|expired|all."""
        now = now or _now()
        wanted = {t.lower() for t in tags or ()}
        out: list[Post] = []
        for post in self.newest_first():
            if len(out) >= limit:
                break
            if post.changed_lamport <= since_lamport or (category and post.category != category):
                continue
            if status != "all" and post.status(now) != status:
                continue
            if wanted and not wanted <= {t.lower() for t in post.tags}:
                continue
            out.append(post)
        return out

    def active(self, now: datetime | None = None) -> list[Post]:
        """Active posts, newest first; cached until the view changes or one of them expires."""
        now = now or _now()
        cached = self._active_cache
        if cached is not None and cached[0] == self.version and now < cached[1]:
            return cached[2]
        posts = [p for p in self.newest_first() if p.status(now) == "active"]
        until = min((p.expires_at for p in posts), default=datetime.max.replace(tzinfo=timezone.utc))
        self._active_cache = (self.version, until, posts)
        return posts

    def past_due(self, now: datetime | None = None) -> list[Post]:
        """Posts past expires_at with no expiry event yet (the sweeper's work)."""
        now = now or _now()
        return [p for p in self._posts.values() if p.expiry_reason is None and now >= p.expires_at]
