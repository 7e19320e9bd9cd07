from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import generate, verify_bytes, verify_key_from_full
from hearthnet.transport import signing
from hearthnet.transport.signing import ReplayCache, sign_request, sign_response, verify_request, verify_response

T0 = datetime(2026, 5, 26, 8, 14, 22, tzinfo=timezone.utc)
ALICE, BOB, ROOT, SERVER = generate(), generate(), generate(), generate()
COMMUNITY = ROOT.node_id_full
BODY = json.dumps({"params": {"model": "x"}, "input": {"text": "hi", "n": 1.0}}).encode()


def signed(body=BODY, kp=ALICE, cap="llm.chat", to=SERVER.node_id_full, now=T0, **kw):
    return sign_request(kp, COMMUNITY, cap, "1.0", body, to=to, now=now, **kw)


def verify(headers, body=BODY, at=T0, cache=None, me=SERVER.node_id_full, **kw):
    return verify_request(headers, body, replay=ReplayCache() if cache is None else cache, now=at,
                          self_node_id=me, **kw)


def code_of(fn, *a, **kw) -> str:
    with pytest.raises(HearthNetError) as exc:
        fn(*a, **kw)
    return exc.value.code


def test_signed_request_verifies_and_names_the_caller():
    h = signed()
    assert set(signing.REQUEST_HEADERS) <= set(h)
    assert h[signing.H_TIMESTAMP] == "2026-05-26T08:14:22Z"
    assert h[signing.H_TO] == SERVER.node_id_full
    assert h[signing.H_BODY_HASH] == signing.body_hash(BODY) and h[signing.H_BODY_HASH].startswith("blake3:")
    assert len(h[signing.H_REQUEST_ID]) == 26
    assert verify(h, community_id=COMMUNITY) == ALICE.node_id_full


def test_the_envelope_is_the_documented_one():
    h = signed(timeout_seconds=30)
    env = signing.request_envelope("llm.chat", "1.0", h[signing.H_REQUEST_ID], ALICE.node_id_full,
                                   SERVER.node_id_full, COMMUNITY, "2026-05-26T08:14:22Z", 30.0,
                                   signing.body_hash(BODY))
    assert set(env) == {"capability", "version", "request_id", "from", "to", "community", "timestamp",
                        "timeout_seconds", "body_hash"}
    assert verify_bytes(canonical_json(env), h[signing.H_SIGNATURE], verify_key_from_full(ALICE.node_id_full))


def test_body_is_compared_bytewise_by_hash():
    # The raw bytes are signed: the same JSON re-encoded is another body.
    h = signed(b'{"b":1.0,"a":[1,2]}')
    assert verify(h, b'{"b":1.0,"a":[1,2]}') == ALICE.node_id_full
    assert code_of(verify, h, b'{"a":[1,2],"b":1}') == "invalid_signature"


def test_headers_alone_verify_and_the_body_is_checked_later():
    req = signing.verify_request_headers(signed(timeout_seconds=12.5), self_node_id=SERVER.node_id_full, now=T0)
    assert (req.sender, req.capability, req.timeout_seconds) == (ALICE.node_id_full, "llm.chat", 12.5)
    hasher = req.hasher()
    for i in range(0, len(BODY), 7):
        hasher.update(BODY[i:i + 7])
    hasher.check()
    bad = req.hasher()
    bad.update(BODY + b" ")
    assert code_of(bad.check) == "invalid_signature"


def test_headers_are_case_insensitive_for_plain_dicts():
    h = {k.lower(): v for k, v in signed().items()}
    assert verify(h) == ALICE.node_id_full


def test_get_request_signs_the_empty_body():
    h = signed(None, cap=signing.SYNC_HEADS)
    assert verify(h, None, expect_capability=signing.SYNC_HEADS) == ALICE.node_id_full
    assert verify(signed(None, cap=signing.SYNC_HEADS), b"", expect_capability=signing.SYNC_HEADS)
    assert code_of(verify, h, b"{}") == "invalid_signature"


def test_only_raw_bytes_are_signed():
    with pytest.raises(TypeError):
        signed({"input": {}})


def test_tampered_body_is_invalid_signature():
    assert code_of(verify, signed(), BODY.replace(b"hi", b"rm")) == "invalid_signature"


def test_tampered_header_is_invalid_signature():
    for name, value in [(signing.H_CAPABILITY, "rag.ingest"), (signing.H_VERSION, "1.1"),
                        (signing.H_COMMUNITY, BOB.node_id_full), (signing.H_TIMESTAMP, "2026-05-26T08:14:23Z"),
                        (signing.H_BODY_HASH, signing.body_hash(b"other")), (signing.H_TIMEOUT, "3600")]:
        assert code_of(verify, {**signed(timeout_seconds=5), name: value}) == "invalid_signature", name


def test_dropping_the_signed_timeout_is_invalid_signature():
    h = signed(timeout_seconds=5)
    del h[signing.H_TIMEOUT]
    assert code_of(verify, h) == "invalid_signature"


def test_request_for_another_node_is_refused():
    """Bound to its target: a member cannot replay another node's request to us."""
    h = signed(to=BOB.node_id_full)
    assert code_of(verify, h) == "invalid_signature"
    assert verify(h, me=BOB.node_id_full) == ALICE.node_id_full
    assert code_of(verify, {**signed(), signing.H_TO: BOB.node_id_full}) == "invalid_signature"


def test_own_request_coming_back_over_the_network_is_refused():
    h = signed(kp=SERVER, to=SERVER.node_id_full)
    assert code_of(verify, h) == "invalid_signature"


def test_wrong_key_is_invalid_signature():
    # Signed by Bob but claiming to come from Alice.
    h = {**signed(kp=BOB), signing.H_FROM: ALICE.node_id_full}
    assert code_of(verify, h) == "invalid_signature"


@pytest.mark.parametrize("sig", ["", "ed25519:AAAA", "rsa:xyz", "ed25519:" + "A" * 86])
def test_bad_or_missing_signature_is_invalid_signature(sig):
    assert code_of(verify, {**signed(), signing.H_SIGNATURE: sig}) == "invalid_signature"
    h = signed()
    del h[signing.H_SIGNATURE]
    assert code_of(verify, h) == "invalid_signature"


@pytest.mark.parametrize("sender", ["nobody", ALICE.node_id_short, "ed25519:!!!"])
def test_malformed_from_is_invalid_signature(sender):
    assert code_of(verify, {**signed(), signing.H_FROM: sender}) == "invalid_signature"


@pytest.mark.parametrize("name", [h for h in signing.REQUEST_HEADERS if h != signing.H_SIGNATURE])
def test_missing_header_is_bad_request(name):
    h = signed()
    del h[name]
    assert code_of(verify, h) == "bad_request"


@pytest.mark.parametrize("name,value", [
    (signing.H_VERSION, "1"), (signing.H_REQUEST_ID, "not-a-ulid"), (signing.H_TIMESTAMP, "yesterday"),
    (signing.H_CAPABILITY, "LLM Chat"), (signing.H_BODY_HASH, "sha256:00"), (signing.H_TIMEOUT, "0"),
    (signing.H_TIMEOUT, "3601"), (signing.H_TIMEOUT, "1e3"), (signing.H_TIMEOUT, "nan"), (signing.H_TIMEOUT, "-1"),
    (signing.H_TIMESTAMP, "0001-01-01T00:00:00+01:00"), (signing.H_TIMESTAMP, "9999-12-31T23:59:59-01:00"),
    (signing.H_TIMESTAMP, "2026-05-26T08:14:22"), (signing.H_TIMESTAMP, "2026-13-45T08:14:22Z"),
    (signing.H_TIMESTAMP, "٢٠٢٦-05-26T08:14:22Z"), (signing.H_TIMESTAMP, "x" * 5000)])
def test_malformed_header_is_bad_request(name, value):
    assert code_of(verify, {**signed(), name: value}) == "bad_request"


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-05-26T08:14:22+14:00"])
def test_far_timestamps_are_expired_never_a_crash(ts):
    # Signed at that moment (a genuine but absurd clock): expired. Altered: invalid_signature.
    genuine = signed(now=datetime.fromisoformat(ts.replace("Z", "+00:00")))
    assert code_of(verify, genuine) in ("expired", "bad_request")  # rfc3339() writes year 1 as "1-01-01"
    assert code_of(verify, {**signed(), signing.H_TIMESTAMP: ts}) == "invalid_signature"


def test_timeout_round_trips_exactly():
    for value in (0.001, 0.5, 1, 29.9999, 30, 120.25, 3600, 99999):
        h = signed(timeout_seconds=value)
        assert float(h[signing.H_TIMEOUT]) <= 3600
        req = signing.verify_request_headers(h, self_node_id=SERVER.node_id_full, now=T0)
        assert req.timeout_seconds == float(h[signing.H_TIMEOUT])


@pytest.mark.parametrize("skew", [121, -121, 3600])
def test_skew_over_120_s_is_expired(skew):
    assert code_of(verify, signed(), at=T0 + timedelta(seconds=skew)) == "expired"


@pytest.mark.parametrize("skew", [120, -120, 0])
def test_skew_up_to_120_s_is_accepted(skew):
    assert verify(signed(), at=T0 + timedelta(seconds=skew)) == ALICE.node_id_full


def test_replayed_request_id_is_refused_inside_the_window():
    cache, h = ReplayCache(), signed()
    assert verify(h, cache=cache) == ALICE.node_id_full
    assert code_of(verify, h, at=T0 + timedelta(seconds=5), cache=cache) == "invalid_signature"
    # After the window the timestamp check refuses it instead, and the entry is gone.
    assert code_of(verify, h, at=T0 + timedelta(seconds=121), cache=cache) == "expired"
    later = signed(now=T0 + timedelta(seconds=121))
    verify(later, at=T0 + timedelta(seconds=121), cache=cache)  # purges the stale entry
    assert len(cache) == 1 and cache.held_by(ALICE.node_id_full) == 1


def test_same_request_id_from_another_node_is_not_a_replay():
    cache = ReplayCache()
    h = signed(request_id="01J0000000000000000000000A")
    verify(h, cache=cache)
    assert verify(signed(kp=BOB, request_id="01J0000000000000000000000A"), cache=cache) == BOB.node_id_full


def test_unverified_requests_do_not_enter_the_replay_cache():
    cache, h = ReplayCache(), signed()
    code_of(verify, {**h, signing.H_SIGNATURE: "ed25519:AAAA"}, cache=cache)
    code_of(verify, signed(to=BOB.node_id_full), cache=cache)
    code_of(verify, h, BODY + b" ", cache=cache)  # body does not match: not remembered either
    assert len(cache) == 0
    assert verify(h, cache=cache) == ALICE.node_id_full


def test_a_sender_over_its_share_is_limited_and_nobody_else():
    cache = ReplayCache(max_per_sender=2)
    verify(signed(), cache=cache)
    verify(signed(), cache=cache)
    with pytest.raises(HearthNetError) as exc:
        verify(signed(), cache=cache)
    assert exc.value.code == "rate_limited" and exc.value.details["retry_after_ms"] > 0
    assert verify(signed(kp=BOB), cache=cache) == BOB.node_id_full  # Bob has his own share
    # Once Alice's entries age out of the window her share is free again.
    later = T0 + timedelta(seconds=121)
    assert verify(signed(now=later), at=later, cache=cache) == ALICE.node_id_full


def test_other_community_is_unauthorized():
    assert code_of(verify, signed(), community_id=BOB.node_id_full) == "unauthorized"


def test_route_capability_must_match():
    h = signed(None, cap=signing.SYNC_HEADS)
    assert code_of(verify, h, None, expect_capability=signing.SYNC_EVENTS) == "bad_request"


# ---- responses --------------------------------------------------------------------------


def test_signed_response_verifies():
    h = sign_response(BOB, "RID", 200, {"ok": True}, now=T0)
    verify_response(h, {"ok": True}, expected_from=BOB.node_id_full, request_id="RID", status=200, now=T0)


@pytest.mark.parametrize("body", [{"ok": True, "n": 1.0, "z": [None, "é"], "a": {"b": 2}}, None, [], "big" * 1000])
def test_a_reply_serialised_once_signs_what_sign_response_signs(body):
    raw, h = signing.signed_json_reply(BOB, "RID", 429, body, now=T0)
    assert raw == canonical_json(body)  # the wire body is the canonical form
    assert h == sign_response(BOB, "RID", 429, body, now=T0)  # Ed25519 is deterministic
    verify_response(h, json.loads(raw), expected_from=BOB.node_id_full, request_id="RID", status=429, now=T0)


@pytest.mark.parametrize("change", ["body", "status", "request", "signer", "missing", "stale"])
def test_bad_responses_are_refused(change):
    h = sign_response(BOB, "RID", 200, {"ok": True}, now=T0)
    args = dict(expected_from=BOB.node_id_full, request_id="RID", status=200, now=T0)
    body = {"ok": True}
    if change == "body":
        body = {"ok": False}
    elif change == "status":
        args["status"] = 201
    elif change == "request":
        args["request_id"] = "OTHER"
    elif change == "signer":
        args["expected_from"] = ALICE.node_id_full
    elif change == "missing":
        h = {k: v for k, v in h.items() if k != signing.H_SIGNATURE}
    elif change == "stale":
        args["now"] = T0 + timedelta(seconds=121)
    expected = "expired" if change == "stale" else "invalid_signature"
    assert code_of(verify_response, h, body, **args) == expected


def test_mutating_capabilities_need_signed_responses():
    for cap in ("market.post", "community.invite", "community.revoke", "rag.ingest", "market.expire",
                "chat.send", signing.SYNC_EVENTS):
        assert signing.response_signature_required(cap), cap
    for cap in ("llm.chat", "market.search", signing.SYNC_HEADS):
        assert not signing.response_signature_required(cap), cap
