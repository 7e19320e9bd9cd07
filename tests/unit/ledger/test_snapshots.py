from __future__ import annotations

import json

import pytest

from hearthnet.identity import keys
from hearthnet.identity.canonical import canonical_json
from hearthnet.ledger.errors import LedgerError
from hearthnet.ledger.snapshots import (
    SnapshotStore,
    build_snapshot,
    restore_view,
    take_snapshot,
    trusted_signers,
    verify_snapshot,
)
from tests.unit.ledger.conftest import Community


@pytest.fixture
def store(community: Community, tmp_path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "state", community.cid)


def test_snapshot_is_signed_canonical_json_written_atomically(community: Community, store: SnapshotStore) -> None:
    snap = build_snapshot(community.root, community.cid, 3, {"community": community.log.view.snapshot_state()})
    path = store.save(snap)
    assert path == store.dir / "3.bin" and path.read_bytes() == canonical_json(snap)
    assert [p.name for p in store.dir.iterdir()] == ["3.bin"]  # no temp file left behind
    signers = trusted_signers(community.log.view)
    assert store.load(3, signers) == snap and store.latest(signers) == snap


def test_verification_refuses_tampering_and_untrusted_signers(community: Community) -> None:
    signers = trusted_signers(community.log.view)
    snap = build_snapshot(community.root, community.cid, 3, {"community": {}})
    verify_snapshot(snap, community.cid, signers)
    with pytest.raises(LedgerError) as err:
        verify_snapshot({**snap, "lamport": 4}, community.cid, signers)
    assert err.value.code == "invalid_signature"
    stranger = keys.generate()
    with pytest.raises(LedgerError):
        verify_snapshot(build_snapshot(stranger, community.cid, 3, {}), community.cid, signers)
    with pytest.raises(LedgerError) as err:
        verify_snapshot(snap, stranger.node_id_full, signers)
    assert err.value.code == "bad_snapshot"


def test_latest_skips_a_bad_file_and_leaves_it(community: Community, store: SnapshotStore) -> None:
    signers = trusted_signers(community.log.view)
    good = build_snapshot(community.root, community.cid, 3, {"community": {}})
    store.save(good)
    store.dir.joinpath("9.bin").write_bytes(b"garbage")
    assert store.list() == [3, 9]
    assert store.latest(signers) == good
    assert store.dir.joinpath("9.bin").read_bytes() == b"garbage"


def test_prune_keeps_the_newest(community: Community, store: SnapshotStore) -> None:
    for lamport in range(1, 11):
        store.save(build_snapshot(community.root, community.cid, lamport * 10, {}))
    assert store.prune(keep_last_n=7) == [10, 20, 30]
    assert store.list() == [40, 50, 60, 70, 80, 90, 100]


def test_take_snapshot_at_head_minus_lag_and_restore_matches_full_replay(community: Community,
                                                                          store: SnapshotStore) -> None:
    community.add_member("a", "trusted")
    for n in range(10):
        community.log.append_local(community.root, "file.cid.unpinned", {"cid": str(n)})
    cut = community.log.head() - 4
    snap = take_snapshot(community.log, community.root, store, lag=4)
    assert snap is not None and snap["lamport"] == snap["covers_events_up_to"] == cut
    assert take_snapshot(community.log, community.root, store, lag=4) is None  # nothing new to cover
    late = community.add_member("b")  # after the snapshot
    loaded = store.latest(trusted_signers(community.log.view))
    view = restore_view(loaded, community.log)
    assert view.snapshot_state() == community.log.view.snapshot_state()
    assert view.is_member(late.node_id_full)
    assert json.loads(store.path_for(cut).read_bytes())["state"]["community"]["head_lamport"] == cut


def test_only_an_anchor_takes_snapshots(community: Community, store: SnapshotStore) -> None:
    member = community.add_member("m")
    assert take_snapshot(community.log, member, store, lag=1) is None and store.list() == []
