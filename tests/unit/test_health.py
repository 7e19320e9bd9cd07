"""hearthnet.health: a node's signed health summary, and every way one fails to verify."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hearthnet import health
from hearthnet.identity import keys

NOW = datetime(2026, 12, 1, 15, 0, 0, tzinfo=timezone.utc)
COMMUNITY = "ed25519:" + "C" * 43
FACTS = {"display_name": "alice", "community_id": COMMUNITY, "version": "0.11.0", "profile": "hearth",
         "uptime_seconds": 42, "online_state": "online",
         "sync": {"peers": 2, "lag_seconds": 3.0, "last_round_seconds_ago": 1.0, "never_synced": 0, "failing": []},
         "event_log": {"head": 7, "count": 12}, "checks_run": 10, "failing_checks": []}


@pytest.fixture
def kp() -> keys.KeyPair:
    return keys.generate()


def verify(doc, node_id, nonce="n1", now=NOW, community=COMMUNITY):
    return health.verify_summary(doc, node_id=node_id, community_id=community, nonce=nonce, now=now)


def test_a_summary_verifies_for_its_node_and_carries_the_facts(kp):
    doc = health.build_summary(kp, FACTS, nonce="n1", now=NOW)
    assert verify(doc, kp.node_id_full) == health.Verdict(True)
    assert doc["node_id"] == kp.node_id_full and doc["issued_at"] == "2026-12-01T15:00:00Z"
    assert doc["type"] == health.SUMMARY_TYPE and doc["healthy"] is True
    assert {k: doc[k] for k in health.FACT_FIELDS} == FACTS
    assert keys.verify_payload_with_node_id(doc, kp.node_id_full)  # the manifest's signing, nothing new


def test_healthy_is_false_for_a_failure_and_true_with_only_warnings(kp):
    warn = dict(FACTS, failing_checks=[{"name": "llm_backend_configured", "status": "warn", "message": "m", "fix": "f"}])
    assert health.build_summary(kp, warn, now=NOW)["healthy"] is True
    fail = dict(FACTS, failing_checks=[{"name": "disk_space", "status": "fail", "message": "m", "fix": "f"}])
    assert health.build_summary(kp, fail, now=NOW)["healthy"] is False


def test_a_tampered_summary_is_unverified(kp):
    doc = health.build_summary(kp, dict(FACTS, failing_checks=[{"name": "disk_space", "status": "fail",
                                                                "message": "m", "fix": "f"}]), nonce="n1", now=NOW)
    doc.update(healthy=True, failing_checks=[])  # a relay hiding the failure
    v = verify(doc, kp.node_id_full)
    assert not v.verified and "signature" in v.reason


def test_a_summary_signed_by_another_key_is_unverified(kp):
    forger = keys.generate()
    doc = health.build_summary(forger, FACTS, nonce="n1", now=NOW)
    doc["node_id"] = kp.node_id_full
    doc = {**doc, "signature": forger.sign(doc)["signature"]}  # well-formed, wrong key
    assert "signature" in verify(doc, kp.node_id_full).reason


def test_another_members_genuine_summary_is_unverified(kp):
    other = keys.generate()
    doc = health.build_summary(other, FACTS, nonce="n1", now=NOW)  # valid, but not who we asked
    v = verify(doc, kp.node_id_full)
    assert not v.verified and "names node" in v.reason


@pytest.mark.parametrize("age", [timedelta(seconds=121), timedelta(hours=5), -timedelta(seconds=121)])
def test_a_stale_or_future_summary_is_unverified(kp, age):
    doc = health.build_summary(kp, FACTS, nonce="n1", now=NOW - age)
    v = verify(doc, kp.node_id_full)
    assert not v.verified and "stale" in v.reason


def test_within_the_window_it_verifies(kp):
    doc = health.build_summary(kp, FACTS, nonce="n1", now=NOW - timedelta(seconds=119))
    assert verify(doc, kp.node_id_full).verified


def test_a_replayed_summary_for_another_nonce_is_unverified(kp):
    doc = health.build_summary(kp, FACTS, nonce="old", now=NOW)
    v = verify(doc, kp.node_id_full, nonce="new")
    assert not v.verified and "replay" in v.reason


def test_another_communitys_summary_is_unverified(kp):
    doc = health.build_summary(kp, dict(FACTS, community_id="ed25519:" + "D" * 43), nonce="n1", now=NOW)
    assert "another community" in verify(doc, kp.node_id_full).reason


@pytest.mark.parametrize("doc", [None, [], "summary", 7, {"type": "x"}, {k: None for k in health.SUMMARY_FIELDS}])
def test_anything_that_is_no_summary_is_unverified_never_an_exception(kp, doc):
    v = verify(doc, kp.node_id_full)
    assert not v.verified and "summary" in v.reason


def test_a_deeply_nested_summary_is_refused_before_it_is_canonicalised(kp):
    deep: object = []
    for _ in range(5000):
        deep = [deep]
    doc = health.build_summary(kp, FACTS, nonce="n1", now=NOW)
    doc["sync"] = deep
    v = verify(doc, kp.node_id_full)
    assert not v.verified and "nested" in v.reason


def test_a_bad_issued_at_is_unverified(kp):
    doc = health.build_summary(kp, FACTS, nonce="n1", now=NOW)
    doc["issued_at"] = "yesterday"
    doc = kp.sign(doc)
    assert "timestamp" in verify(doc, kp.node_id_full).reason
