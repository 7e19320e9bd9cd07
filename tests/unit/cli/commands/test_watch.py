"""`hearthnet watch`: resuming across reconnects, and the one-line summaries."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from hearthnet.cli.commands.watch import follow, human_line, summary
from hearthnet.errors import HearthNetError, NodeNotRunning
from hearthnet.localapi import LiveFrame


class FakeApi:
    def __init__(self, script: list[Any], calls: list[Any]) -> None:
        self.script, self.calls = script, calls

    def subscribe(self, topics: list[str], since: str | None = None) -> Iterator[LiveFrame]:
        self.calls.append((topics, since))
        for item in self.script:
            if isinstance(item, Exception):
                raise item
            yield item


def frame(token: str, topic: str = "community.event") -> LiveFrame:
    return LiveFrame(topic, token, {"event_id": f"e{token}"})


def test_no_node_at_the_start_is_raised() -> None:
    def connect() -> FakeApi:
        raise NodeNotRunning("node_not_running", "no node")

    with pytest.raises(NodeNotRunning):
        next(follow(connect, ["community.event"]))


def test_a_refused_first_request_is_raised() -> None:
    calls: list[Any] = []
    with pytest.raises(HearthNetError) as err:
        next(follow(lambda: FakeApi([HearthNetError("bad_request", "unknown topic")], calls), ["x"]))
    assert err.value.code == "bad_request"


def test_it_resumes_after_the_last_token_across_outages() -> None:
    calls: list[Any] = []
    scripts = [
        [LiveFrame("subscribed", "3", {}), frame("4"), frame("5"), HearthNetError("connection_lost", "gone")],
        None,  # the node is restarting: no endpoint yet
        [HearthNetError("connection_lost", "refused")],
        [LiveFrame("subscribed", "5", {}), frame("6")],
    ]
    notes: list[str] = []
    sleeps: list[float] = []

    def connect() -> FakeApi:
        script = scripts.pop(0)
        if script is None:
            raise NodeNotRunning("node_not_running", "no node")
        return FakeApi(script, calls)

    feed = follow(connect, ["community.event"], since="3", note=notes.append, sleep=sleeps.append)
    got = [next(feed).token for _ in range(3)]
    assert got == ["4", "5", "6"]
    assert [since for _, since in calls] == ["3", "5", "5"]
    assert len(sleeps) == 3 and sleeps == sorted(sleeps)
    assert notes[0].startswith("live feed lost (connection_lost") and notes[1] == "reconnected; resuming after 5"
    assert len(notes) == 2  # one note per outage, however many attempts


def test_without_since_the_subscribed_token_is_the_resume_point() -> None:
    calls: list[Any] = []
    scripts = [[LiveFrame("subscribed", "10", {}), HearthNetError("timeout", "silent")],
               [LiveFrame("subscribed", "10", {}), frame("11")]]
    feed = follow(lambda: FakeApi(scripts.pop(0), calls), ["community.event"], sleep=lambda _: None)
    assert next(feed).token == "11" and [s for _, s in calls] == [None, "10"]


def test_summaries_are_one_short_line_without_chat_bodies() -> None:
    post = {"event_type": "market.post.created", "author": "ed25519:x", "wall_clock": "2026-12-01T11:02:03Z",
            "data": {"category": "offer", "title": "Generator", "body": "long text"}}
    assert summary(post) == "offer: Generator"
    chat = {"event_type": "chat.message.sent", "data": {"recipient": "ed25519:y", "body": "secret"}}
    assert "secret" not in summary(chat)
    line = human_line(LiveFrame("marketplace.post.created", "7", post), {"ed25519:x": "alice"})
    assert line.startswith("11:02:03  marketplace.post.created") and "alice" in line and "\n" not in line
