from __future__ import annotations

import json
import os
import stat

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import generate
from hearthnet.transport.pinning import PinStore

NODE = generate().node_id_full
FP1, FP2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_first_seen_is_recorded_and_persisted(tmp_path):
    path = tmp_path / "tls" / "known_peers.json"
    pins = PinStore(path)
    assert pins.expected(NODE) is None
    assert pins.check(NODE, FP1) is True  # first contact: pinned
    assert pins.check(NODE, FP1) is False  # same again: fine
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["pins"][NODE]["fingerprint"] == FP1 and doc["pins"][NODE]["first_seen"].endswith("Z")
    assert PinStore(path).expected(NODE) == FP1  # survives a restart


def test_mismatch_is_refused_and_never_overwrites(tmp_path):
    pins = PinStore(tmp_path / "pins.json")
    pins.record(NODE, FP1)
    for fn in (pins.check, pins.record):
        with pytest.raises(HearthNetError) as exc:
            fn(NODE, FP2)
        assert exc.value.code == "invalid_signature"
    assert PinStore(tmp_path / "pins.json").expected(NODE) == FP1


def test_forget_allows_a_new_pin(tmp_path):
    pins = PinStore(tmp_path / "pins.json")
    pins.record(NODE, FP1)
    assert pins.forget(NODE) and not pins.forget(NODE)
    pins.record(NODE, FP2)
    assert PinStore(tmp_path / "pins.json").all() == {NODE: FP2}


@pytest.mark.parametrize("node,fp", [(generate().node_id_short, FP1), ("ed25519:nope", FP1),
                                     (NODE, "sha256:xyz"), (NODE, "a" * 64)])
def test_only_full_ids_and_sha256_fingerprints(tmp_path, node, fp):
    with pytest.raises(HearthNetError):
        PinStore(tmp_path / "pins.json").record(node, fp)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"pins": {"x": {"fingerprint": "y"}}}'])
def test_corrupt_file_refuses_rather_than_forgetting_pins(tmp_path, text):
    path = tmp_path / "pins.json"
    path.write_text(text)
    with pytest.raises(HearthNetError) as exc:
        PinStore(path)
    assert exc.value.code == "pins_invalid"
