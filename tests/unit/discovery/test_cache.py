from __future__ import annotations

import json
import stat
from datetime import timedelta

import pytest

from hearthnet.discovery.cache import PeerCache, parse_host_port
from hearthnet.errors import HearthNetError
from hearthnet.identity.manifest import utcnow

from .conftest import FakeClock

NODE_A = "ed25519:" + "A" * 43
NODE_B = "ed25519:" + "B" * 43


class Wall:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def cache(tmp_path, wall) -> PeerCache:
    return PeerCache(tmp_path / "data" / "peers.json", wallclock=wall, clock=FakeClock())


@pytest.mark.parametrize("text,expected", [
    ("10.0.0.5:7080", ("10.0.0.5", 7080)),
    ("10.0.0.5", ("10.0.0.5", 7080)),
    ("Hearth.LOCAL:9000", ("hearth.local", 9000)),
    ("[fe80::1]:7081", ("fe80::1", 7081)),
    ("fe80::1", ("fe80::1", 7080)),
])
def test_parse_host_port(text, expected):
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["10.0.0.5:0", "10.0.0.5:99999", "10.0.0.5:http", "bad host:1", ":7080"])
def test_parse_host_port_rejects(text):
    with pytest.raises(HearthNetError) as err:
        parse_host_port(text)
    assert err.value.code == "bad_request"


def test_add_manual_is_idempotent_and_private(cache):
    first = cache.add_manual("10.0.0.5", 7080)
    again = cache.add_manual("10.0.0.5", 7080)
    assert first == again and first.manual and first.how_found == "manual" and first.node_id is None
    assert len(cache.load()) == 1
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    doc = json.loads(cache.path.read_text())
    assert doc["version"] == 1 and doc["peers"][0]["host"] == "10.0.0.5"


def test_verification_fills_in_a_manual_entry_and_keeps_it_manual(cache):
    cache.add_manual("10.0.0.5", 7080)
    assert cache.record_verified(NODE_A, "10.0.0.5", 7080, "sha256:aa", "udp")
    (entry,) = cache.load()
    assert (entry.node_id, entry.tls_fingerprint) == (NODE_A, "sha256:aa")
    assert entry.manual and entry.how_found == "manual"
    assert entry.last_verified is not None


def test_unchanged_reverification_is_throttled(cache):
    assert cache.record_verified(NODE_A, "10.0.0.6", 7080, None, "mdns")
    assert not cache.record_verified(NODE_A, "10.0.0.6", 7080, None, "mdns")
    assert cache.record_verified(NODE_A, "10.0.0.6", 7080, "sha256:new", "mdns")  # news is written


def test_a_node_that_moved_is_remembered_at_its_new_address(cache):
    cache.record_verified(NODE_A, "10.0.0.6", 7080, None, "udp")
    cache.record_verified(NODE_A, "10.0.0.9", 7080, None, "udp")
    assert [(e.host, e.node_id) for e in cache.load()] == [("10.0.0.9", NODE_A)]


def test_discovered_entries_are_forgotten_after_30_days_manual_never(cache, wall):
    cache.add_manual("10.0.0.5", 7080)
    cache.record_verified(NODE_B, "10.0.0.7", 7080, None, "udp")
    wall.now += timedelta(days=31)
    cache.record_verified(NODE_A, "10.0.0.8", 7080, None, "udp")
    assert sorted(e.host for e in cache.load()) == ["10.0.0.5", "10.0.0.8"]


def test_two_writers_do_not_lose_each_others_entries(tmp_path, wall):
    path = tmp_path / "peers.json"
    worker, cli = PeerCache(path, wallclock=wall), PeerCache(path, wallclock=wall)
    worker.record_verified(NODE_A, "10.0.0.6", 7080, None, "udp")
    cli.add_manual("10.0.0.5", 7080)
    worker.record_verified(NODE_B, "10.0.0.7", 7080, None, "mdns")
    assert sorted(e.host for e in cli.load()) == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    assert cli.remove("10.0.0.5", 7080) and not cli.remove("10.0.0.5", 7080)
    assert sorted(e.host for e in worker.load()) == ["10.0.0.6", "10.0.0.7"]


def test_corrupt_file_is_set_aside_not_overwritten(cache, caplog):
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text("{not json")
    assert cache.load() == []
    cache.add_manual("10.0.0.5", 7080)
    aside = list(cache.path.parent.glob("peers.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert [e.host for e in cache.load()] == ["10.0.0.5"]


def test_bad_entries_are_skipped(cache):
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text(json.dumps({"version": 1, "peers": [
        {"host": "10.0.0.5", "port": 7080}, {"host": "no such host!", "port": 1}, {"port": 3}, "x"]}))
    assert [e.host for e in cache.load()] == ["10.0.0.5"]
