"""Live-update topics: parsing, which ledger types they need, which events they match."""
from __future__ import annotations

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.gateway import topics as T
from hearthnet.identity import keys

A, B = keys.generate().node_id_full, keys.generate().node_id_full


def ev(kind: str, **data: object) -> dict:
    return {"event_type": kind, "data": data, "author": A}


def test_the_spec_topics_parse() -> None:
    got = T.parse_topics(["community.event", "marketplace.post.created", "marketplace.post.updated",
                          "marketplace.post.expired", f"chat.message.{A}", f"chat.receipt.{B}",
                          "community.event"])
    assert [t.name for t in got] == ["community.event", "marketplace.post.created", "marketplace.post.updated",
                                     "marketplace.post.expired", f"chat.message.{A}", f"chat.receipt.{B}"]
    assert got[1].event_types == {"market.post.created"} and got[4].node == A
    assert got[5].event_types == {"chat.message.delivered", "chat.message.read"} and got[5].needs_target_author


@pytest.mark.parametrize("raw", ["", "market.post.created", "marketplace.post", "community.events",
                                 "chat.message.", "chat.message.bob", f"chat.message.{A}x",
                                 "chat.message.ed25519:AAAA-BBBB-CCCC-DDDD", "chat.receipt", 7, None])
def test_unknown_or_malformed_topics_are_bad_request(raw: object) -> None:
    with pytest.raises(HearthNetError) as err:
        T.parse_topics([raw])
    assert err.value.code == "bad_request"


def test_no_topic_or_too_many_is_bad_request() -> None:
    for raws in ([], [f"chat.message.{keys.generate().node_id_full}" for _ in range(T.MAX_TOPICS + 1)]):
        with pytest.raises(HearthNetError) as err:
            T.parse_topics(raws)
        assert err.value.code == "bad_request"


def test_event_types_filter_at_the_source() -> None:
    assert T.event_types(T.parse_topics(["marketplace.post.created", f"chat.message.{A}"])) == [
        "chat.message.sent", "market.post.created"]
    assert T.event_types(T.parse_topics(["marketplace.post.created", "community.event"])) is None


def test_an_event_goes_to_the_first_specific_topic_it_matches() -> None:
    both = T.parse_topics(["community.event", "marketplace.post.created"])
    assert T.match(both, ev("market.post.created")) == "marketplace.post.created"
    assert T.match(both, ev("community.member.joined")) == "community.event"
    assert T.match(T.parse_topics(["marketplace.post.expired"]), ev("market.post.created")) is None


def test_chat_topics_match_the_recipient_and_the_receipted_message_author() -> None:
    mine = T.parse_topics([f"chat.message.{A}", f"chat.receipt.{A}"])
    assert T.match(mine, ev("chat.message.sent", recipient=A)) == f"chat.message.{A}"
    assert T.match(mine, ev("chat.message.sent", recipient=B)) is None
    receipt = ev("chat.message.read", target_event_id="m1")
    assert T.receipt_target(receipt) == "m1" and T.receipt_target(ev("chat.message.sent")) is None
    assert T.match(mine, receipt, author_of_target=A) == f"chat.receipt.{A}"
    assert T.match(mine, receipt, author_of_target=B) is None
    assert T.match(mine, receipt, author_of_target=None) is None


@pytest.mark.parametrize("raw, want", [(None, None), ("", None), (" 0 ", 0), ("42", 42),
                                       (str(2 ** 63 - 1), 2 ** 63 - 1)])
def test_resume_tokens(raw: str | None, want: int | None) -> None:
    assert T.parse_token(raw) == want


@pytest.mark.parametrize("raw", ["-1", "1.5", "abc", "１２", str(2 ** 63), "9" * 30])
def test_bad_resume_tokens_are_bad_request(raw: str) -> None:
    with pytest.raises(HearthNetError) as err:
        T.parse_token(raw)
    assert err.value.code == "bad_request"
