"""InviteBlob, its text forms, the checks a redeemer makes, and the device id text."""
from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from hearthnet.errors import EXIT_AUTH, EXIT_ERROR, HearthNetError, exit_code_for
from hearthnet.identity import keys
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import b64url_decode, b64url_nopad
from hearthnet.onboarding.errors import CODES, OnboardingError
from hearthnet.onboarding.invite import (
    ID_PREFIX,
    INVITE_PREFIX,
    InviteBlob,
    check_invite,
    decode_invite,
    decode_node_id_text,
    encode_invite,
    encode_invite_contract,
    encode_invite_json,
    encode_node_id_text,
    parse_invitee,
)
from tests.unit.onboarding.conftest import NOW, make_blob


def code_of(text: str) -> str:
    with pytest.raises(OnboardingError) as err:
        decode_invite(text)
    return err.value.code


def test_round_trip_every_form(inviter, invitee):
    blob = make_blob(inviter, invitee)
    for text in (encode_invite(blob), encode_invite_json(blob), encode_invite_contract(blob)):
        assert decode_invite(text) == blob
    assert encode_invite(blob).startswith(INVITE_PREFIX)
    assert encode_invite_contract(blob).startswith("ed25519:")
    # the JSON forms carry exactly the canonical JSON of the blob
    payload = b64url_decode(encode_invite_json(blob)[len(INVITE_PREFIX):])
    assert payload == canonical_json(blob.to_dict())
    assert set(json.loads(payload)) == {"schema_version", "community_id", "community_name", "inviter_node_id",
                                        "invitee_node_id", "initial_level", "bootstrap_endpoints",
                                        "expires_at", "signature"}


def test_signature_is_over_the_canonical_json(inviter, invitee):
    blob = make_blob(inviter, invitee)
    assert keys.verify_payload_with_node_id(blob.to_dict(), inviter.node_id_full)
    assert blob.signature_ok()


@pytest.mark.parametrize("name, endpoints, separate_community", [
    ("Maple Street", [("192.168.1.20", 7080)], False),
    ("É" * 64, [("192.168.1.20", 7080), ("fd00::1:2", 7081), ("hearth-pi.local", 7080)], True),
])
def test_invite_text_stays_under_500_bytes(inviter, invitee, name, endpoints, separate_community):
    root = keys.generate() if separate_community else inviter
    blob = make_blob(inviter, invitee, community_id=root.node_id_full, community_name=name,
                     bootstrap_endpoints=[{"transport": "https", "host": h, "port": p} for h, p in endpoints])
    text = encode_invite(blob)
    assert len(text.encode()) < 500, len(text)
    assert decode_invite(text) == blob


def test_blob_that_would_not_pack_exactly_is_written_as_json(inviter, invitee):
    # "FD00::1" would come back as "fd00::1": packing would change a signed field
    blob = make_blob(inviter, invitee,
                     bootstrap_endpoints=[{"transport": "https", "host": "FD00::1", "port": 7080}])
    text = encode_invite(blob)
    assert b64url_decode(text[len(INVITE_PREFIX):])[:1] == b"{"
    assert decode_invite(text) == blob


def test_whitespace_and_quotes_around_a_pasted_invite_are_ignored(inviter, invitee):
    blob = make_blob(inviter, invitee)
    text = encode_invite(blob)
    assert decode_invite(f"  '{text[:50]}\n{text[50:]}'\n") == blob


def test_tampered_packed_text_is_invalid(inviter, invitee):
    text = encode_invite(make_blob(inviter, invitee))
    raw = bytearray(b64url_decode(text[len(INVITE_PREFIX):]))
    raw[-70] ^= 0x01  # inside the expiry / name / endpoints: a signed field changes
    assert code_of(INVITE_PREFIX + b64url_nopad(bytes(raw))) == "invite_invalid"


def test_altered_field_breaks_the_signature(inviter, invitee):
    doc = make_blob(inviter, invitee).to_dict()
    doc["initial_level"] = "trusted"
    forged = INVITE_PREFIX + b64url_nopad(canonical_json(doc))
    with pytest.raises(OnboardingError) as err:
        decode_invite(forged)
    assert err.value.code == "invite_invalid" and "signature" in err.value.message


def test_invite_signed_by_someone_other_than_the_named_inviter_is_invalid(inviter, invitee):
    mallory = keys.generate()
    doc = make_blob(inviter, invitee).to_dict()
    doc = mallory.sign({k: v for k, v in doc.items() if k != "signature"})
    assert code_of(encode_invite(InviteBlob.from_dict(doc))) == "invite_invalid"


@pytest.mark.parametrize("text", [
    "", "hello", "hearthnet://v1/", "hearthnet://v1/!!!", "hearthnet://v1/AQ", "hearthnet://v2/AQID",
    "hearthnet://v1/" + b64url_nopad(b"{not json"), "hearthnet://v1/" + b64url_nopad(b"\x07abc"),
    "hearthnet://v1/" + b64url_nopad(canonical_json({"schema_version": 1})),
    "x" * 9000,
])
def test_malformed_texts_are_invalid(text):
    assert code_of(text) == "invite_invalid"


def test_truncated_text_is_invalid(inviter, invitee):
    text = encode_invite(make_blob(inviter, invitee))
    assert code_of(text[:-8]) == "invite_invalid"


def test_node_id_and_device_id_texts_are_named_for_what_they_are(invitee):
    with pytest.raises(OnboardingError, match="node id, not an invite"):
        decode_invite(invitee.node_id_full)
    with pytest.raises(OnboardingError, match="device id"):
        decode_invite(encode_node_id_text(invitee.node_id_full, "porch"))


def test_bad_fields_are_never_signed(inviter, invitee):
    for over in ({"initial_level": "anchor"}, {"community_name": ""}, {"bootstrap_endpoints": []},
                 {"bootstrap_endpoints": [{"transport": "http", "host": "h", "port": 1}]},
                 {"expires_at": "tomorrow"}, {"invitee_node_id": "ed25519:AAAA-BBBB-CCCC-DDDD"}):
        with pytest.raises(OnboardingError) as err:
            make_blob(inviter, invitee, **over)
        assert err.value.code == "invite_invalid"


def test_expired_and_wrong_invitee_are_refused(inviter, invitee):
    blob = make_blob(inviter, invitee)
    check_invite(blob, invitee.node_id_full, NOW)
    with pytest.raises(OnboardingError) as err:
        check_invite(blob, invitee.node_id_full, NOW + timedelta(hours=24, seconds=1))
    assert err.value.code == "invite_expired" and err.value.exit_code == EXIT_AUTH
    with pytest.raises(OnboardingError) as err:
        check_invite(blob, keys.generate().node_id_full, NOW)
    assert err.value.code == "invitee_mismatch" and err.value.exit_code == EXIT_AUTH
    assert "hearthnet id" in err.value.details["hint"]


def test_every_code_has_an_exit_code_and_a_default_message():
    assert {c: exit_code_for(c) for c in CODES} == {
        "invite_invalid": EXIT_AUTH, "invite_expired": EXIT_AUTH, "invitee_mismatch": EXIT_AUTH,
        "community_manifest_invalid": EXIT_AUTH, "bootstrap_unreachable": EXIT_ERROR,
        "sync_failed": EXIT_ERROR, "already_member": EXIT_ERROR, "other_community": EXIT_ERROR}
    assert OnboardingError("sync_failed").message == CODES["sync_failed"]
    with pytest.raises(ValueError):
        OnboardingError("nope")


def test_device_id_text_round_trip(invitee):
    text = encode_node_id_text(invitee.node_id_full, "Bob's laptop")
    assert text.startswith(ID_PREFIX)
    payload = json.loads(base64.urlsafe_b64decode(text[len(ID_PREFIX):] + "=="))
    assert payload == {"node_id_full": invitee.node_id_full, "display_name": "Bob's laptop"}
    assert decode_node_id_text(text) == (invitee.node_id_full, "Bob's laptop")
    assert parse_invitee(text) == (invitee.node_id_full, "Bob's laptop")
    assert parse_invitee(f" {invitee.node_id_full} ") == (invitee.node_id_full, "")


def test_invitee_must_be_a_full_id(invitee):
    for bad in (invitee.node_id_short, "bob", ID_PREFIX + "e30"):
        with pytest.raises(HearthNetError) as err:
            parse_invitee(bad)
        assert err.value.code == "usage"
    with pytest.raises(HearthNetError, match="hearthnet id"):
        parse_invitee(invitee.node_id_short)
