"""Live updates for the UI: one background subscription to the local API's SSE feed
(`LocalApi.subscribe(["community.event"])`, README "Live updates") that counts, per tab,
the events that concern it. A one-second Gradio timer on the page compares those counts
with what the page last showed and re-renders only the tabs that changed, so a chat
message or a post from another node appears within about a second without polling the
capabilities. On a broken feed it reconnects, resuming after the last event it saw."""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from hearthnet.errors import HearthNetError
from hearthnet.localapi import LocalApi

log = logging.getLogger("hearthnet.ui.live")

GROUPS = {"chat": ("chat.message.",), "market": ("market.post.",),
          "emergency": ("emergency.alert.",), "mesh": ("community.member.",)}
RETRY_SECONDS = 2.0


def group_of(event_type: str) -> str | None:
    for group, prefixes in GROUPS.items():
        if event_type.startswith(prefixes):
            return group
    return None


class LiveWatch:
    def __init__(self, api_factory: Callable[[], LocalApi]) -> None:
        self.api_factory = api_factory
        self.versions: Counter = Counter()
        self._lock = threading.Lock()
        self._since: str | None = None

    def start(self) -> "LiveWatch":
        threading.Thread(target=self._run, name="ui-live", daemon=True).start()
        return self

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.versions)

    def seen(self, event_type: str) -> None:
        group = group_of(event_type)
        if group is not None:
            with self._lock:
                self.versions[group] += 1

    def _run(self) -> None:
        while True:
            try:
                for frame in self.api_factory().subscribe(["community.event"], self._since):
                    if frame.topic == "subscribed":
                        continue
                    self._since = frame.token or self._since
                    self.seen(str(frame.data.get("event_type") or ""))
            except HearthNetError as exc:
                if exc.code == "bad_request":  # a resume token the node no longer knows
                    self._since = None
                log.info("live feed ended (%s); reconnecting", exc.code)
            except Exception:  # the feed must never take the UI down
                log.exception("live feed failed; reconnecting")
            time.sleep(RETRY_SECONDS)
