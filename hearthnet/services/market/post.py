"""The marketplace post (spec svc-market-chat-file §1.1): its fields, its status, its
bounds, and the one check of a post's data, used both for the owner's `market.post` input
(bad_request) and for `market.post.created` events received from peers (a malformed one is
left out of the view: every node applies the same check, so every view agrees).

Beyond the spec (issue 9): an optional `quantity` (positive int) and a `fulfilled` status
(a post expired with reason `fulfilled`)."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from hearthnet.identity.manifest import parse_rfc3339, rfc3339

CATEGORIES = ("offer", "request", "info", "emergency")
STATUSES = ("active", "fulfilled", "expired")
STATUS_FILTERS = STATUSES + ("all",)
MAX_TITLE = 200
MAX_BODY = 4000
MAX_TAGS = 10
MAX_TAG = 32
MAX_LABEL = 200
MAX_CLIENT_ID = 128
MAX_QUANTITY = 1_000_000_000
# Any ttl a view accepts from a peer: every node must judge a received post alike, so
# this is a constant, not a node's `[market] max_ttl_seconds` (which bounds own posts).
MAX_ANY_TTL = 10 * 365 * 86400
UPDATABLE = ("category", "title", "body", "location", "tags", "quantity", "ttl_seconds")


def _str_problem(name: str, value: Any, lo: int, hi: int) -> str | None:
    if not isinstance(value, str) or not lo <= len(value) <= hi or (lo and not value.strip()):
        return f"{name} must be a string of {lo}-{hi} characters" + (" (not blank)" if lo else "")
    return None


def location_problem(loc: Any) -> str | None:
    if loc is None:
        return None
    if not isinstance(loc, dict) or set(loc) - {"lat", "lng", "label"} or not {"lat", "lng"} <= set(loc):
        return "location must be {lat, lng, label?} or null"
    for key, bound in (("lat", 90.0), ("lng", 180.0)):
        v = loc[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > bound:
            return f"location.{key} must be a number within ±{bound:g}"
    return _str_problem("location.label", loc.get("label", ""), 0, MAX_LABEL)


def tags_problem(tags: Any) -> str | None:
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        return f"tags must be a list of at most {MAX_TAGS} strings"
    for t in tags:
        problem = _str_problem("each tag", t, 1, MAX_TAG)
        if problem:
            return problem
    return None


def quantity_problem(q: Any) -> str | None:
    if q is None:
        return None
    if type(q) is not int or not 1 <= q <= MAX_QUANTITY:
        return f"quantity must be a whole number 1-{MAX_QUANTITY}"
    return None


def ttl_problem(ttl: Any, max_ttl: int) -> str | None:
    if type(ttl) is not int or not 1 <= ttl <= max_ttl:
        return f"ttl_seconds must be a whole number of seconds 1-{max_ttl}"
    return None


_FIELD_CHECKS = {
    "category": lambda v: None if v in CATEGORIES else f"category must be one of {', '.join(CATEGORIES)}",
    "title": lambda v: _str_problem("title", v, 1, MAX_TITLE),
    "body": lambda v: _str_problem("body", v, 0, MAX_BODY),
    "location": location_problem,
    "tags": tags_problem,
    "quantity": quantity_problem,
    "ttl_seconds": lambda v: ttl_problem(v, MAX_ANY_TTL),
}


def field_problem(name: str, value: Any) -> str | None:
    check = _FIELD_CHECKS.get(name)
    return None if check is None else check(value)


def post_problem(data: Mapping[str, Any]) -> str | None:
    """What makes a `market.post.created` data unusable, or None."""
    problem = _str_problem("client_id", data.get("client_id"), 1, MAX_CLIENT_ID)
    if problem:
        return problem
    for name in ("category", "title", "body", "location", "tags", "ttl_seconds"):
        problem = field_problem(name, data.get(name))
        if problem:
            return problem
    return quantity_problem(data.get("quantity"))


def content_hash(title: str, body: str) -> str:
    """What a post's vector depends on (the search cache's key)."""
    return hashlib.blake2b(f"{title}\n{body}".encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class Post:
    """One post as the view derives it (created + updates + the winning expiry)."""

    event_id: str
    lamport: int
    author: str
    client_id: str
    category: str
    title: str
    body: str
    location: dict[str, Any] | None
    tags: list[str]
    quantity: int | None
    ttl_seconds: int
    created_at: datetime
    changed_lamport: int  # the last event that changed it (created, updated, expired)
    expired_via_event_id: str | None = None
    expiry_reason: str | None = None
    expired_by: str | None = None
    content: str = field(default="", compare=False)
    title_lower: str = field(default="", compare=False, repr=False)  # what substring search reads
    rest_lower: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        self.content = content_hash(self.title, self.body)
        self.title_lower = self.title.lower()
        self.rest_lower = " ".join((self.body, self.category, *self.tags)).lower()
        self._times = (rfc3339(self.created_at), rfc3339(self.expires_at))  # formatted once, listed often

    @property
    def expires_at(self) -> datetime:
        try:
            return self.created_at + timedelta(seconds=self.ttl_seconds)
        except OverflowError:  # an author's clock near year 9999: never expires by time
            return datetime.max.replace(tzinfo=self.created_at.tzinfo)

    def status(self, now: datetime) -> str:
        if self.expiry_reason is not None:
            return "fulfilled" if self.expiry_reason == "fulfilled" else "expired"
        return "expired" if now >= self.expires_at else "active"

    def is_expired(self, now: datetime) -> bool:
        return self.status(now) != "active"

    @property
    def text(self) -> str:
        """What search reads."""
        return f"{self.title}\n{self.body}"

    def to_wire(self, now: datetime) -> dict[str, Any]:
        return {"event_id": self.event_id, "lamport": self.lamport, "author": self.author,
                "category": self.category, "title": self.title, "body": self.body,
                "location": self.location, "tags": list(self.tags), "quantity": self.quantity,
                "created_at": self._times[0], "expires_at": self._times[1],
                "status": self.status(now), "expiry_reason": self.expiry_reason,
                "expired_via_event_id": self.expired_via_event_id, "changed_lamport": self.changed_lamport}


def parse_time(value: Any) -> datetime | None:
    try:
        return parse_rfc3339(value)
    except (ValueError, TypeError, OverflowError):
        return None
