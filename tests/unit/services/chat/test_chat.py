"""Chat: encryption, the view, and the service on a fake mesh (conftest.py)."""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.services.chat.crypto import ENC_SCHEME, ChatCrypto, Undecryptable
from hearthnet.services.chat.service import MAX_BODY_BYTES, ChatService
from hearthnet.services.chat.view import ChatView
from tests.unit.services.chat.conftest import Mesh, req, settle

CID = "blake3:" + "ab" * 32


def message(sender: keys.KeyPair, recipient: str, body: str, attachments: list[dict[str, str]] | None = None,
            event_id: str = "01JD00000000000000000000A1", lamport: int = 5) -> dict[str, Any]:
    ct = ChatCrypto(sender).encrypt(recipient, body, attachments or [])
    return {"event_id": event_id, "lamport": lamport, "author": sender.node_id_full,
            "wall_clock": "2026-12-01T10:00:00Z", "event_type": "chat.message.sent",
            "data": {"client_id": "c1", "recipient": recipient, "body": ct, "attachments": [], "enc": ENC_SCHEME}}


def receipt(author: keys.KeyPair, kind: str, target: str, event_id: str, lamport: int) -> dict[str, Any]:
    field = "delivered_at" if kind == "delivered" else "read_at"
    return {"event_id": event_id, "lamport": lamport, "author": author.node_id_full,
            "wall_clock": "2026-12-01T10:01:00Z", "event_type": f"chat.message.{kind}",
            "data": {"target_event_id": target, field: "2026-12-01T10:01:00Z"}}


# ----------------------------------------------------------------------------- crypto


def test_round_trip_for_recipient_and_sender_and_nobody_else() -> None:
    a, b, c = keys.generate(), keys.generate(), keys.generate()
    ev = message(a, b.node_id_full, "is your grandmother OK? ✓", [{"cid": CID, "name": "map.png"}])
    expected = {"body": "is your grandmother OK? ✓", "attachments": [{"cid": CID, "name": "map.png"}]}
    assert ChatCrypto(b).decrypt(ev) == expected
    assert ChatCrypto(a).decrypt(ev) == expected  # the sender reads its own message
    with pytest.raises(Undecryptable):
        ChatCrypto(c).decrypt(ev)  # a carrier: not for it
    # not even by pretending to be the recipient: c's key gives another shared key
    forged = {**ev, "data": {**ev["data"], "recipient": c.node_id_full}}
    with pytest.raises(Undecryptable):
        ChatCrypto(c).decrypt(forged)


def test_the_envelope_hides_body_and_attachments_and_nonces_differ() -> None:
    a, b = keys.generate(), keys.generate()
    one, two = message(a, b.node_id_full, "generator at no. 12"), message(a, b.node_id_full, "generator at no. 12")
    assert one["data"]["body"] != two["data"]["body"]  # a fresh nonce per message
    raw = base64.b64decode(one["data"]["body"])
    assert b"generator" not in raw and one["data"]["attachments"] == []
    secret = message(a, b.node_id_full, "x", [{"cid": CID, "name": "passport.jpg"}])
    assert CID.encode() not in json.dumps(secret).encode() and b"passport" not in json.dumps(secret).encode()


@pytest.mark.parametrize("tamper", [
    lambda body: body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB"),  # flipped ciphertext bytes
    lambda body: body[:10],  # truncated
    lambda body: "not base64 !!",
    lambda body: base64.b64encode(b"\x00" * 24 + b"junk").decode(),
])
def test_tampered_ciphertext_is_undecryptable_never_an_exception(tamper: Any) -> None:
    a, b = keys.generate(), keys.generate()
    ev = message(a, b.node_id_full, "hello")
    ev["data"]["body"] = tamper(ev["data"]["body"])
    with pytest.raises(Undecryptable):
        ChatCrypto(b).decrypt(ev)


def test_a_valid_box_that_is_no_chat_plaintext_is_undecryptable() -> None:
    from nacl.public import Box

    a, b = keys.generate(), keys.generate()
    box = Box(a.signing_key.to_curve25519_private_key(), b.verify_key.to_curve25519_public_key())
    ev = message(a, b.node_id_full, "x")
    ev["data"]["body"] = base64.b64encode(bytes(box.encrypt(b'["not", "a", "message"]'))).decode()
    with pytest.raises(Undecryptable):
        ChatCrypto(b).decrypt(ev)


# ----------------------------------------------------------------------------- view


def test_view_keeps_only_our_messages_and_counts_receipts_and_unread() -> None:
    a, b, c = keys.generate(), keys.generate(), keys.generate()
    view = ChatView(ChatCrypto(b))
    m1 = message(a, b.node_id_full, "one", event_id="01JD00000000000000000000A1", lamport=5)
    m2 = message(a, b.node_id_full, "two", event_id="01JD00000000000000000000A2", lamport=6)
    mine = message(b, a.node_id_full, "back", event_id="01JD00000000000000000000A3", lamport=7)
    other = message(a, c.node_id_full, "not yours", event_id="01JD00000000000000000000A4", lamport=8)
    for ev in (m1, m2, mine, other, m1):  # m1 twice: idempotent
        view.apply(ev)
    assert [m.event_id for m in view.history()] == [m1["event_id"], m2["event_id"], mine["event_id"]]
    assert all(m.decrypted for m in view.history())
    assert view.unread_counts() == {a.node_id_full: 2}
    assert [m.event_id for m in view.undelivered_to_us()] == [m1["event_id"], m2["event_id"]]
    view.apply(receipt(b, "delivered", m1["event_id"], "01JD00000000000000000000B1", 9))
    view.apply(receipt(b, "read", m2["event_id"], "01JD00000000000000000000B2", 10))
    view.apply(receipt(c, "read", m1["event_id"], "01JD00000000000000000000B3", 11))  # not the recipient: ignored
    view.apply(receipt(a, "delivered", mine["event_id"], "01JD00000000000000000000B4", 12))
    assert view.unread_counts() == {a.node_id_full: 1}
    assert view.undelivered_to_us() == []  # read implies delivered
    assert view.messages[mine["event_id"]].delivered_at is not None
    assert view.by_client_id == {"c1": mine["event_id"]}
    assert [m.event_id for m in view.history(a.node_id_full, since_lamport=5, limit=1)] == [mine["event_id"]]
    assert view.peers() == [a.node_id_full]


def test_view_shows_an_undecryptable_message_without_crashing() -> None:
    a, b = keys.generate(), keys.generate()
    ev = message(a, b.node_id_full, "hi")
    ev["data"]["body"] = "garbage"
    view = ChatView(ChatCrypto(b))
    view.apply(ev)
    view.apply({"event_type": "chat.message.sent", "event_id": "x", "data": "not a dict"})
    (msg,) = view.history()
    assert msg.decrypted is False and msg.body is None and msg.to_wire(b.node_id_full)["direction"] == "in"


# ----------------------------------------------------------------------------- the service


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_send_direct_then_delivered_receipt_and_read() -> None:
    async def main() -> None:
        mesh = Mesh()
        a, b = await mesh.start("a"), await mesh.start("b")
        A, B = mesh.ids["a"], mesh.ids["b"]
        out = (await a.send(req("chat.send", {"client_id": "k1", "recipient": B, "body": "need power?"}, A)))["output"]
        assert out["delivered"] == "direct"
        await settle()
        (got,) = (await b.history(req("chat.history", {}, B)))["output"]["messages"]
        assert got["body"] == "need power?" and got["from"] == A and got["direction"] == "in" and got["decrypted"]
        assert got["delivered_at"] is not None and got["read_at"] is None
        # the receipt came straight back to A, without a gossip round
        (sent,) = (await a.history(req("chat.history", {"peer": B}, A)))["output"]["messages"]
        assert sent["delivered_at"] is not None and sent["body"] == "need power?" and sent["direction"] == "out"
        assert (await b.unread(req("chat.unread", {}, B)))["output"] == {"unread": [{"peer": A, "count": 1}],
                                                                        "total": 1}
        assert (await b.read(req("chat.read", {"peer": A}, B)))["output"]["marked"] == 1
        assert (await b.unread(req("chat.unread", {}, B)))["output"]["total"] == 0
        assert (await b.read(req("chat.read", {"peer": A}, B)))["output"]["marked"] == 0
        await settle()
        (sent,) = (await a.history(req("chat.history", {}, A)))["output"]["messages"]
        assert sent["read_at"] is not None
        await mesh.stop("a")
        await mesh.stop("b")

    run(main())


def test_client_id_makes_send_idempotent() -> None:
    async def main() -> None:
        mesh = Mesh()
        a = await mesh.start("a")
        A, B = mesh.ids["a"], mesh.ids["b"]
        inp = {"client_id": "same", "recipient": B, "body": "once"}
        outs = await asyncio.gather(*[a.send(req("chat.send", inp, A)) for _ in range(3)])
        assert len({o["output"]["event_id"] for o in outs}) == 1
        assert [o["meta"]["duplicate"] for o in outs].count(False) == 1
        assert outs[0]["output"]["delivered"] == "queued"  # b is offline
        assert len([e for e in mesh.ledgers[A].events if e["event_type"] == "chat.message.sent"]) == 1
        await mesh.stop("a")
        # a restarted worker rebuilds the view from the log: still one event
        a = await mesh.start("a")
        again = await a.send(req("chat.send", inp, A))
        assert again["output"]["event_id"] == outs[0]["output"]["event_id"] and again["meta"]["duplicate"]
        await mesh.stop("a")

    run(main())


def test_queued_message_reaches_recipient_through_a_third_node_which_cannot_read_it() -> None:
    async def main() -> None:
        mesh = Mesh()
        a, b = await mesh.start("a"), await mesh.start("b")
        A, B, C = mesh.ids["a"], mesh.ids["b"], mesh.ids["c"]
        out = (await a.send(req("chat.send", {"recipient": C, "body": "is grandma OK?"}, A)))["output"]
        assert out["delivered"] == "queued"
        await mesh.gossip()  # b now holds it
        await mesh.stop("a")
        assert (await b.history(req("chat.history", {}, B)))["output"]["messages"] == []
        c = await mesh.start("c")
        await mesh.gossip()
        (got,) = (await c.history(req("chat.history", {}, C)))["output"]["messages"]
        assert got["body"] == "is grandma OK?" and got["delivered_at"] is not None
        receipts = [e for e in mesh.ledgers[B].events if e["event_type"] == "chat.message.delivered"]
        assert len(receipts) == 1 and receipts[0]["author"] == C  # b carries the receipt for a
        a = await mesh.start("a")
        await mesh.gossip()
        (sent,) = (await a.history(req("chat.history", {}, A)))["output"]["messages"]
        assert sent["delivered_at"] is not None
        for n in ("a", "b", "c"):
            await mesh.stop(n)

    run(main())


def test_delivered_receipt_is_appended_once_across_restarts() -> None:
    async def main() -> None:
        mesh = Mesh()
        a = await mesh.start("a")
        A, B = mesh.ids["a"], mesh.ids["b"]
        await a.send(req("chat.send", {"recipient": B, "body": "hi"}, A))
        await mesh.start("b")
        await mesh.gossip()
        await mesh.stop("b")
        await mesh.start("b")
        await mesh.gossip()
        receipts = [e for e in mesh.ledgers[B].events if e["event_type"] == "chat.message.delivered"]
        assert len(receipts) == 1
        await mesh.stop("a")
        await mesh.stop("b")

    run(main())


@pytest.mark.parametrize("inp, code", [
    ({"body": "x"}, "bad_request"),  # no recipient
    ({"recipient": "ed25519:ABCD-EFGH-IJKL-MNOP", "body": "x"}, "bad_request"),  # a short id
    ({"recipient": "SELF", "body": "x"}, "bad_request"),
    ({"recipient": "B", "body": ""}, "bad_request"),
    ({"recipient": "B", "body": "   \n"}, "bad_request"),
    ({"recipient": "B", "body": "x" * (MAX_BODY_BYTES + 1)}, "bad_request"),
    ({"recipient": "B", "body": "ü" * (MAX_BODY_BYTES // 2 + 1)}, "bad_request"),  # bytes, not characters
    ({"recipient": "B", "body": 5}, "bad_request"),
    ({"recipient": "B", "body": "x", "attachments": [{"cid": "nope", "name": "a"}]}, "bad_request"),
    ({"recipient": "B", "body": "x", "attachments": "x"}, "bad_request"),
    ({"recipient": "B", "body": "x", "client_id": ""}, "bad_request"),
    ({"recipient": "STRANGER", "body": "x"}, "not_found"),
])
def test_bad_send_input(inp: dict[str, Any], code: str) -> None:
    async def main() -> None:
        mesh = Mesh()
        a = await mesh.start("a")
        A = mesh.ids["a"]
        subst = {"SELF": A, "B": mesh.ids["b"], "STRANGER": keys.generate().node_id_full}
        body = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in inp.items()}
        with pytest.raises(HearthNetError) as err:
            await a.send(req("chat.send", body, A))
        assert err.value.code == code, err.value.message
        assert [e for e in mesh.ledgers[A].events if e["event_type"] == "chat.message.sent"] == []
        await mesh.stop("a")

    run(main())


def test_an_attachment_only_message_is_fine_and_its_list_is_hidden() -> None:
    async def main() -> None:
        mesh = Mesh()
        a = await mesh.start("a")
        A, B = mesh.ids["a"], mesh.ids["b"]
        await a.send(req("chat.send", {"recipient": B, "attachments": [{"cid": CID, "name": "map.png"}]}, A))
        (ev,) = [e for e in mesh.ledgers[A].events if e["event_type"] == "chat.message.sent"]
        assert ev["data"]["attachments"] == [] and ev["data"]["enc"] == ENC_SCHEME
        (msg,) = (await a.history(req("chat.history", {}, A)))["output"]["messages"]
        assert msg["attachments"] == [{"cid": CID, "name": "map.png"}] and msg["body"] == ""
        await mesh.stop("a")

    run(main())


def test_self_capabilities_and_the_one_peer_capability() -> None:
    svc = ChatService(bus=None, kp=keys.generate())
    trust = {c.name: c.trust_required for c in svc.capabilities()}
    assert trust == {"chat.send": "self", "chat.history": "self", "chat.read": "self", "chat.unread": "self",
                     "chat.deliver": "member"}


def test_deliver_takes_only_the_callers_own_events_for_us() -> None:
    async def main() -> None:
        mesh = Mesh()
        await mesh.start("a")
        b = await mesh.start("b")
        A, B, C = mesh.ids["a"], mesh.ids["b"], mesh.ids["c"]
        to_c = message(mesh.kps["a"], C, "for c")
        with pytest.raises(HearthNetError) as err:  # b relaying a's event
            await b.deliver(req("chat.deliver", {"event": message(mesh.kps["a"], B, "x")}, C))
        assert err.value.code == "unauthorized"
        with pytest.raises(HearthNetError) as err:  # not addressed to b
            await b.deliver(req("chat.deliver", {"event": to_c}, A))
        assert err.value.code == "bad_request"
        with pytest.raises(HearthNetError) as err:
            await b.deliver(req("chat.deliver", {"event": {"event_type": "community.member.revoked"}}, A))
        assert err.value.code == "bad_request"
        # a forged event (bad signature) is refused by the ledger, reported, not stored
        forged = message(mesh.kps["a"], B, "x")
        out = (await b.deliver(req("chat.deliver", {"event": forged}, A)))["output"]
        assert out == {"stored": False, "reason": "invalid_signature"}
        await mesh.stop("a")
        await mesh.stop("b")

    run(main())


def test_history_and_read_input_checks() -> None:
    async def main() -> None:
        mesh = Mesh()
        a = await mesh.start("a")
        A = mesh.ids["a"]
        for cap, inp in (("chat.history", {"peer": "bob"}), ("chat.history", {"limit": 0}),
                         ("chat.history", {"limit": 5000}), ("chat.history", {"since_lamport": -1}),
                         ("chat.read", {}), ("chat.read", {"event_ids": "x"})):
            handler = a.history if cap == "chat.history" else a.read
            with pytest.raises(HearthNetError) as err:
                await handler(req(cap, inp, A))
            assert err.value.code == "bad_request", (cap, inp)
        await mesh.stop("a")

    run(main())
