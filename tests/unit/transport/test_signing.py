from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import generate
from hearthnet.transport import signing
from hearthnet.transport.signing import ReplayCache, sign_request, sign_response, verify_request, verify_response

T0 = datetime(2026, 5, 26, 8, 14, 22, tzinfo=timezone.utc)
ALICE, BOB, ROOT = generate(), generate(), generate()
COMMUNITY = ROOT.node_id_full
BODY = {"params": {"model": "x"}, "input": {"text": "hi", "n": 1.0}}


def signed(body=BODY, kp=ALICE, cap="llm.chat", **kw):
    return sign_request(kp, COMMUNITY, cap, "1.0", body, now=T0, **kw)


def verify(headers, body=BODY, at=T0, cache=None, **kw):
    return verify_request(headers, body, replay=ReplayCache() if cache is None else cache, now=at, **kw)


def code_of(fn, *a, **kw) -> str:
    with pytest.raises(HearthNetError) as exc:
        fn(*a, **kw)
    return exc.value.code


def test_signed_request_verifies_and_names_the_caller():
    h = signed()
    assert set(signing.REQUEST_HEADERS) <= set(h)
    assert h[signing.H_TIMESTAMP] == "2026-05-26T08:14:22Z"
    assert len(h[signing.H_REQUEST_ID]) == 26
    assert verify(h, community_id=COMMUNITY) == ALICE.node_id_full


def test_body_is_compared_canonically_not_bytewise():
    # 1.0 and 1 are the same canonical number; key order is irrelevant.
    h = signed({"b": 1.0, "a": [1, 2]})
    assert verify(h, {"a": [1, 2], "b": 1}) == ALICE.node_id_full


def test_headers_are_case_insensitive_for_plain_dicts():
    h = {k.lower(): v for k, v in signed().items()}
    assert verify(h) == ALICE.node_id_full


def test_get_request_signs_null_body():
    h = signed(None, cap=signing.SYNC_HEADS)
    assert verify(h, None, expect_capability=signing.SYNC_HEADS) == ALICE.node_id_full
    assert code_of(verify, h, {}) == "invalid_signature"


def test_tampered_body_is_invalid_signature():
    assert code_of(verify, signed(), {**BODY, "input": {"text": "rm -rf"}}) == "invalid_signature"


def test_tampered_header_is_invalid_signature():
    for name, value in [(signing.H_CAPABILITY, "rag.ingest"), (signing.H_VERSION, "1.1"),
                        (signing.H_COMMUNITY, BOB.node_id_full), (signing.H_TIMESTAMP, "2026-05-26T08:14:23Z")]:
        assert code_of(verify, {**signed(), name: value}) == "invalid_signature", name


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


@pytest.mark.parametrize("name,value", [(signing.H_VERSION, "1"), (signing.H_REQUEST_ID, "not-a-ulid"),
                                        (signing.H_TIMESTAMP, "yesterday"), (signing.H_CAPABILITY, "LLM Chat")])
def test_malformed_header_is_bad_request(name, value):
    assert code_of(verify, {**signed(), name: value}) == "bad_request"


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
    later = sign_request(ALICE, COMMUNITY, "llm.chat", "1.0", BODY, now=T0 + timedelta(seconds=121))
    verify(later, at=T0 + timedelta(seconds=121), cache=cache)  # purges the stale entry
    assert len(cache) == 1


def test_same_request_id_from_another_node_is_not_a_replay():
    cache = ReplayCache()
    h = signed(request_id="01J0000000000000000000000A")
    verify(h, cache=cache)
    assert verify(signed(kp=BOB, request_id="01J0000000000000000000000A"), cache=cache) == BOB.node_id_full


def test_unverified_requests_do_not_enter_the_replay_cache():
    cache, h = ReplayCache(), signed()
    code_of(verify, {**h, signing.H_SIGNATURE: "ed25519:AAAA"}, cache=cache)
    assert len(cache) == 0
    assert verify(h, cache=cache) == ALICE.node_id_full


def test_full_replay_cache_refuses_instead_of_forgetting():
    cache = ReplayCache(max_entries=2)
    verify(signed(), cache=cache)
    verify(signed(), cache=cache)
    with pytest.raises(HearthNetError) as exc:
        verify(signed(), cache=cache)
    assert exc.value.code == "rate_limited" and exc.value.details["retry_after_ms"] > 0


def test_other_community_is_unauthorized():
    assert code_of(verify, signed(), community_id=BOB.node_id_full) == "unauthorized"


def test_route_capability_must_match():
    h = signed(None, cap=signing.SYNC_HEADS)
    assert code_of(verify, h, None, expect_capability=signing.SYNC_EVENTS) == "bad_request"


def test_unsignable_body_is_bad_request():
    assert code_of(signed, {"x": float("nan")}) == "bad_request"


# ---- responses --------------------------------------------------------------------------


def test_signed_response_verifies():
    h = sign_response(BOB, "RID", 200, {"ok": True}, now=T0)
    verify_response(h, {"ok": True}, expected_from=BOB.node_id_full, request_id="RID", status=200, now=T0)


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
