from __future__ import annotations

import json
from typing import Any

import pytest

from hearthnet.identity import keys
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import sign_payload
from hearthnet.ledger.errors import LedgerError
from hearthnet.ledger.events import (
    ENVELOPE_FIELDS,
    EVENT_TYPES,
    MAX_FRONTIER,
    admission_verifies,
    build_admission,
    build_event,
    co_sign,
    data_problem,
    shape_problem,
    valid_co_signers,
    verify_event_shape,
    verify_event_signature,
)
from tests.unit.ledger.conftest import NOW, post_data

KP = keys.generate()
OTHER = keys.generate()
CID = KP.node_id_full
POLICY = {"min_signatures_to_invite": 1, "min_signatures_to_demote": 3, "min_signatures_to_revoke": 3,
          "capability_token_ttl_seconds": 86400, "federation_enabled": True, "default_member_can_invite": True}

# One valid `data` per type of the closed set.
SAMPLES: dict[str, dict[str, Any]] = {
    "community.created": {"name": "Maple", "founder_node_id": CID, "policy": POLICY},
    "community.member.invited": {"invitee_node_id": OTHER.node_id_full, "display_name": "b",
                                 "initial_level": "member", "expires_at": "2026-11-27T00:00:00Z"},
    "community.member.joined": {"invite_event_id": "01JD0000000000000000000000", "node_manifest": {},
                                "admission": build_admission(KP, "01JD0000000000000000000000", OTHER.node_id_full, NOW)},
    "community.member.revoked": {"target_node_id": OTHER.node_id_full, "reason": "compromised", "co_signers": [],
                                 "frontier": ["01JD0000000000000000000000", "01JD0000000000000000000001"]},
    "community.member.promoted": {"target_node_id": OTHER.node_id_full, "new_level": "trusted", "co_signers": []},
    "community.member.demoted": {"target_node_id": OTHER.node_id_full, "new_level": "member", "co_signers": [],
                                 "frontier": []},
    "community.policy.updated": {"policy": POLICY},
    "node.manifest.updated": {"manifest": {"node_id": CID}},
    "market.post.created": post_data(),
    "market.post.updated": {"client_id": "c0", "target_event_id": "01JD0000000000000000000000", "fields": {"title": "t"}},
    "market.post.expired": {"client_id": "c0", "target_event_id": "01JD0000000000000000000000", "reason": "fulfilled"},
    "chat.message.sent": {"client_id": "c", "recipient": CID, "body": "hi", "attachments": []},
    "chat.message.delivered": {"target_event_id": "01JD0000000000000000000000", "delivered_at": "2026-11-26T10:00:00Z"},
    "chat.message.read": {"target_event_id": "01JD0000000000000000000000", "read_at": "2026-11-26T10:00:00Z"},
    "file.cid.advertised": {"cid": "blake3:ab", "sizes_bytes": 12},
    "file.cid.unpinned": {"cid": "blake3:ab"},
    "rag.document.ingested": {"corpus": "c", "doc_cid": "blake3:ab", "title": "t", "language": "en", "chunks": 3},
    "emergency.alert.issued": {"identifier": "flood-1", "status": "Exercise", "msg_type": "Alert",
                               "urgency": "Immediate", "severity": "Severe", "certainty": "Likely",
                               "headline": "River above 7 m", "description": "", "instruction": "Go to the school",
                               "area": "Lower town", "expires": "2026-11-27T10:00:00Z", "references": []},
    "emergency.alert.acknowledged": {"target_event_id": "01JD0000000000000000000000", "status": "need_help",
                                     "note": "grandmother needs a lift"},
}


def test_samples_cover_the_closed_set() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_type_builds_a_valid_signed_envelope(event_type: str) -> None:
    ev = build_event(KP, CID, 7, event_type, SAMPLES[event_type], now=NOW)
    assert tuple(ev) == ENVELOPE_FIELDS
    assert ev["schema_version"] == 1 and ev["lamport"] == 7 and ev["wall_clock"] == "2026-11-26T12:00:00Z"
    assert ev["author"] == CID and len(ev["event_id"]) == 26
    assert shape_problem(ev) is None
    assert verify_event_signature(ev)


def test_signature_covers_the_canonical_json_of_every_other_field() -> None:
    ev = build_event(KP, CID, 1, "market.post.created", post_data(), now=NOW)
    body = {k: v for k, v in ev.items() if k != "signature"}
    assert keys.verify_bytes(canonical_json(body), ev["signature"], KP.verify_key)
    # Key order and whitespace do not matter (canonical form), every value does.
    roundtrip = json.loads(json.dumps(ev, indent=3, sort_keys=False))
    assert verify_event_signature(roundtrip)
    for field, value in (("lamport", 2), ("wall_clock", "2026-11-26T12:00:01Z"), ("event_type", "market.post.updated"),
                         ("community_id", OTHER.node_id_full), ("author", OTHER.node_id_full),
                         ("event_id", "01JD0000000000000000000000"), ("schema_version", 2)):
        assert not verify_event_signature({**ev, field: value}), field
    tampered = json.loads(json.dumps(ev))
    tampered["data"]["title"] = "Ladder (free!)"
    assert not verify_event_signature(tampered)


def test_signature_by_another_key_does_not_verify() -> None:
    ev = build_event(KP, CID, 1, "file.cid.unpinned", {"cid": "x"})
    forged = sign_payload({**ev, "author": CID}, OTHER)  # claims KP, signed by OTHER
    assert not verify_event_signature(forged)
    assert not verify_event_signature({**ev, "signature": "ed25519:AAAA"})
    assert not verify_event_signature({**ev, "signature": 42})


@pytest.mark.parametrize("mutate, why", [
    (lambda e: e.pop("signature"), "missing signature"),
    (lambda e: e.update(extra=1), "unknown fields"),
    (lambda e: e.update(schema_version=2), "schema_version"),
    (lambda e: e.update(schema_version=True), "schema_version"),
    (lambda e: e.update(event_id="not-a-ulid"), "ULID"),
    (lambda e: e.update(lamport=0), "lamport"),
    (lambda e: e.update(lamport=2.5), "lamport"),
    (lambda e: e.update(lamport=True), "lamport"),
    (lambda e: e.update(wall_clock="yesterday"), "wall_clock"),
    (lambda e: e.update(author="ed25519:ABCD-EFGH-IJKL-MNOP"), "full node ids"),
    (lambda e: e.update(event_type="community.member.teleported"), "unknown event type"),
    (lambda e: e.update(event_type="federation.peer.added"), "unknown event type"),
    (lambda e: e.update(data=[]), "data must be an object"),
    (lambda e: e["data"].pop("ttl_seconds"), "data.ttl_seconds is missing"),
    (lambda e: e["data"].update(ttl_seconds="soon"), "data.ttl_seconds has the wrong type"),
    (lambda e: e["data"].update(ttl_seconds=True), "data.ttl_seconds has the wrong type"),
    (lambda e: e["data"].update(tags="tools"), "data.tags has the wrong type"),
])
def test_shape_problems(mutate: Any, why: str) -> None:
    ev = build_event(KP, CID, 1, "market.post.created", post_data())
    mutate(ev)
    problem = shape_problem(ev)
    assert problem is not None and why in problem
    with pytest.raises(LedgerError) as err:
        verify_event_shape(ev)
    assert err.value.code == "schema_unknown"


@pytest.mark.parametrize("event_type, patch, why", [
    ("community.member.invited", {"initial_level": "emperor"}, "initial_level"),
    ("community.member.invited", {"invitee_node_id": "bob"}, "invitee_node_id"),
    ("community.member.invited", {"expires_at": "tomorrow"}, "expires_at"),
    ("community.created", {"policy": {"federation_enabled": True}}, "policy must have exactly"),
    ("community.policy.updated", {"policy": {**POLICY, "min_signatures_to_revoke": "3"}}, "policy.min_signatures"),
    ("market.post.expired", {"reason": "bored"}, "data.reason"),
    ("market.post.updated", {"target_event_id": "x"}, "not an event id"),
    ("chat.message.sent", {"recipient": "bob"}, "data.recipient is not a full node id"),
    ("emergency.alert.issued", {"severity": "Huge"}, "data.severity must be one of"),
    ("emergency.alert.issued", {"status": "Real"}, "data.status must be one of"),
    ("emergency.alert.issued", {"headline": "  "}, "headline must not be empty"),
    ("emergency.alert.issued", {"headline": "x" * 161}, "longer than 160"),
    ("emergency.alert.issued", {"expires": "soon"}, "data.expires is not an RFC 3339"),
    ("emergency.alert.issued", {"msg_type": "Cancel"}, "references must name"),
    ("emergency.alert.issued", {"references": ["01JD0000000000000000000000"]}, "references must name"),
    ("emergency.alert.issued", {"msg_type": "Update", "references": ["nope"]}, "at most 32 event ids"),
    ("emergency.alert.acknowledged", {"status": "fine"}, "data.status must be one of"),
    ("emergency.alert.acknowledged", {"note": "x" * 1025}, "longer than 1024"),
    ("community.member.joined", {"admission": None}, "data.admission has the wrong type"),
    ("community.member.joined", {"admission": {"by": CID, "at": "2026-11-26T10:00:00Z"}}, "exactly the fields"),
    ("community.member.joined", {"admission": {"by": "bob", "at": "2026-11-26T10:00:00Z", "signature": "x"}},
     "admission.by"),
    ("community.member.joined", {"admission": {"by": CID, "at": "0001-01-01T00:00:00+01:00", "signature": "x"}},
     "admission.at"),
    ("community.member.joined", {"admission": {"by": CID, "at": "2026-11-26T10:00:00Z", "signature": 7}},
     "admission.signature"),
    ("community.member.revoked", {"frontier": "01JD0000000000000000000000"}, "data.frontier has the wrong type"),
    ("community.member.revoked", {"frontier": ["not-a-ulid"]}, "ULIDs"),
    ("community.member.revoked", {"frontier": [7]}, "ULIDs"),
    ("community.member.revoked", {"frontier": ["01JD0000000000000000000001", "01JD0000000000000000000000"]},
     "sorted"),
    ("community.member.revoked", {"frontier": ["01JD0000000000000000000000"] * 2}, "sorted"),
    ("community.member.revoked", {"frontier": ["01JD0000000000000000000000"] * (MAX_FRONTIER + 1)},
     "more than"),
])
def test_value_problems(event_type: str, patch: dict[str, Any], why: str) -> None:
    problem = data_problem(event_type, {**SAMPLES[event_type], **patch})
    assert problem is not None and why in problem


def test_extra_data_fields_are_allowed_and_signed() -> None:
    ev = build_event(KP, CID, 1, "file.cid.advertised", {"cid": "x", "sizes_bytes": 1, "name": "notes.txt"})
    assert shape_problem(ev) is None and verify_event_signature(ev)
    assert data_problem("market.post.created", {**post_data(), "location": None}) is None


def test_build_event_refuses_to_sign_malformed_data() -> None:
    with pytest.raises(LedgerError) as err:
        build_event(KP, CID, 1, "market.post.created", {"title": "no"})
    assert err.value.code == "bad_request"
    with pytest.raises(LedgerError):
        build_event(KP, CID, 0, "file.cid.unpinned", {"cid": "x"})


def test_co_signatures_bind_community_type_and_payload() -> None:
    data = {"target_node_id": OTHER.node_id_full, "reason": "compromised", "co_signers": [],
            "frontier": ["01JD0000000000000000000000"]}
    third = keys.generate()
    data["co_signers"] = [co_sign(KP, CID, "community.member.revoked", data),
                          co_sign(OTHER, CID, "community.member.revoked", data),
                          co_sign(third, OTHER.node_id_full, "community.member.revoked", data),  # other community
                          {"node_id": "junk"}, "junk"]
    ev = build_event(KP, CID, 5, "community.member.revoked", data)
    assert valid_co_signers(ev) == {KP.node_id_full, OTHER.node_id_full}
    as_demote = {**ev, "event_type": "community.member.demoted"}
    assert valid_co_signers(as_demote) == set()  # a revoke signature is no demote signature
    changed = {**ev, "data": {**data, "reason": "inactive"}}
    assert valid_co_signers(changed) == set()
    other_frontier = {**ev, "data": {**data, "frontier": []}}  # the frontier is signed too
    assert valid_co_signers(other_frontier) == set()


def test_an_admission_binds_invite_invitee_time_and_inviter() -> None:
    invite_id, invitee = "01JD0000000000000000000000", OTHER.node_id_full
    adm = build_admission(KP, invite_id, invitee, NOW)
    assert adm["by"] == CID and adm["at"] == "2026-11-26T12:00:00Z"
    assert admission_verifies(adm, invite_id, invitee, CID)
    assert not admission_verifies(adm, "01JD0000000000000000000001", invitee, CID)  # another invite
    assert not admission_verifies(adm, invite_id, CID, CID)  # another invitee
    assert not admission_verifies(adm, invite_id, invitee, OTHER.node_id_full)  # another inviter
    assert not admission_verifies({**adm, "at": "2026-11-25T12:00:00Z"}, invite_id, invitee, CID)  # back-dated
    forged = {**build_admission(OTHER, invite_id, invitee, NOW), "by": CID}
    assert not admission_verifies(forged, invite_id, invitee, CID)
