from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from hearthnet.discovery.errors import DiscoveryError
from hearthnet.discovery.registry import PeerEvent, PeerRecord, PeerRegistry, tls_fingerprint_of
from hearthnet.identity.keys import generate
from hearthnet.identity.manifest import utcnow

from .conftest import make_manifest


def _record(manifest, clock, source="udp", host="10.0.0.2", port=7080) -> PeerRecord:
    return PeerRecord.from_manifest(manifest, host=host, port=port, source=source, rtt_ms=1.5, now=clock())


@pytest.fixture
def registry(me, community, clock) -> PeerRegistry:
    return PeerRegistry(me.node_id_full, community.node_id_full, clock=clock)


def _events(registry: PeerRegistry) -> list[PeerEvent]:
    seen: list[PeerEvent] = []
    registry.subscribe(seen.append)
    return seen


def test_verified_peer_is_added_once_then_updated_on_news(registry, community, clock):
    events = _events(registry)
    kp = generate()
    first = make_manifest(kp, community.node_id_full)
    assert registry.upsert(_record(first, clock)) is True
    assert registry.upsert(_record(first, clock)) is False  # same facts: no event
    clock.advance(20)
    later = make_manifest(kp, community.node_id_full, now=utcnow() + timedelta(seconds=1))
    assert registry.upsert(_record(later, clock, source="mdns")) is False
    assert [e.kind for e in events] == ["added", "updated"]
    peer = registry.get(kp.node_id_full)
    assert peer is not None and peer.source == "udp"  # how found = the first way
    assert peer.last_seen == clock() and peer.node_id_short == kp.node_id_short
    assert registry.find_short(kp.node_id_short) == peer
    assert registry.all() == [peer] and len(registry) == 1


def test_record_without_manifest_is_not_a_peer(registry, community, clock):
    rec = _record(make_manifest(generate(), community.node_id_full), clock)
    with pytest.raises(DiscoveryError) as err:
        registry.upsert(PeerRecord(**{**rec.__dict__, "manifest": None}))
    assert err.value.code == "manifest_invalid" and err.value.details["reason"] == "unverified"
    assert registry.all() == []


@pytest.mark.parametrize("reason", ["invalid_signature", "expired", "self", "foreign_community", "mismatch"])
def test_rejections(registry, me, community, clock, reason):
    kp = me if reason == "self" else generate()
    cid = generate().node_id_full if reason == "foreign_community" else community.node_id_full
    manifest = make_manifest(kp, cid, now=utcnow() - timedelta(minutes=5) if reason == "expired" else None)
    rec = _record(manifest, clock)
    if reason == "invalid_signature":
        rec = PeerRecord(**{**rec.__dict__, "manifest": {**manifest, "display_name": "forged"}})
    if reason == "mismatch":
        rec = PeerRecord(**{**rec.__dict__, "node_id_full": generate().node_id_full})
    events = _events(registry)
    with pytest.raises(DiscoveryError) as err:
        registry.upsert(rec)
    assert err.value.code == "manifest_invalid" and err.value.details["reason"] == reason
    assert registry.all() == [] and events == []


def test_membership_check_when_wired(me, community, clock):
    members: set[str] = set()
    registry = PeerRegistry(me.node_id_full, community.node_id_full, clock=clock, is_member=members.__contains__)
    kp = generate()
    rec = _record(make_manifest(kp, community.node_id_full), clock)
    with pytest.raises(DiscoveryError, match="not a member"):
        registry.upsert(rec)
    members.add(kp.node_id_full)
    assert registry.upsert(rec)


def test_prune_stale_removes_peers_without_fresh_manifest(registry, community, clock):
    events = _events(registry)
    old, fresh = generate(), generate()
    registry.upsert(_record(make_manifest(old, community.node_id_full), clock))
    clock.advance(60)
    registry.upsert(_record(make_manifest(fresh, community.node_id_full), clock))
    clock.advance(31)
    assert registry.prune_stale(90) == 1
    assert [p.node_id_full for p in registry.all()] == [fresh.node_id_full]
    assert events[-1].kind == "removed" and events[-1].peer.node_id_full == old.node_id_full
    assert registry.prune_stale() == 0


def test_remove_for_community_and_unsubscribe(registry, community, clock):
    events: list[PeerEvent] = []
    unsubscribe = registry.subscribe(events.append)
    kp = generate()
    registry.upsert(_record(make_manifest(kp, community.node_id_full), clock))
    assert [p.node_id_full for p in registry.for_community(community.node_id_full)] == [kp.node_id_full]
    assert registry.for_community(generate().node_id_full) == []
    unsubscribe()
    assert registry.remove(kp.node_id_full) is not None
    assert registry.remove(kp.node_id_full) is None
    assert [e.kind for e in events] == ["added"]


def test_broken_subscriber_does_not_starve_others(registry, community, clock, caplog):
    def broken(event: PeerEvent) -> None:
        raise RuntimeError("boom")

    registry.subscribe(broken)
    events = _events(registry)
    with caplog.at_level(logging.ERROR):
        registry.upsert(_record(make_manifest(generate(), community.node_id_full), clock))
    assert [e.kind for e in events] == ["added"]
    assert "subscriber" in caplog.text and "boom" in caplog.text


def test_fingerprint_from_manifest(community):
    kp = generate()
    assert tls_fingerprint_of(make_manifest(kp, community.node_id_full)) is None
    assert tls_fingerprint_of(make_manifest(kp, community.node_id_full, tls_fingerprint="sha256:ab")) == "sha256:ab"
    assert tls_fingerprint_of({"tls_fingerprint": "sha256:cd", "endpoints": []}) == "sha256:cd"


def test_record_json_leaves_out_manifest(community, clock):
    rec = _record(make_manifest(generate(), community.node_id_full), clock)
    doc = rec.to_json(now=clock() + 2)
    assert "manifest" not in doc and doc["manifest_expires_at"] == rec.manifest["expires_at"]
    assert doc["last_seen_seconds_ago"] == 2.0 and doc["source"] == "udp"
