from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import pytest

from hearthnet.errors import IdentityError
from hearthnet.identity import keys
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import (
    SHORT_ID_RE,
    KeyPair,
    b64url_decode,
    b64url_nopad,
    full_node_id,
    parse_node_id,
    short_node_id,
    sign_payload,
    verify_key_from_full,
    verify_payload,
    verify_payload_with_node_id,
)
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- canonical JSON


def test_canonical_json_numbers() -> None:
    assert canonical_json({"n": 1.0}) == b'{"n":1}'
    assert canonical_json({"n": 1.10}) == b'{"n":1.1}'
    assert canonical_json([1.00, 2.5, -0.0]) == b"[1,2.5,0]"
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'
    assert canonical_json({"s": "Grüße ☕"}) == '{"s":"Grüße ☕"}'.encode("utf-8")
    with pytest.raises(ValueError):
        canonical_json({"n": math.nan})
    with pytest.raises(ValueError):
        canonical_json([math.inf])


# --------------------------------------------------------------------------- ids


def test_short_id_matches_regex_and_known_vector() -> None:
    assert short_node_id(bytes(range(32))) == "ed25519:AAAQ-EAYE-AUDA-OCAJ"
    for _ in range(20):
        kp = keys.generate()
        assert SHORT_ID_RE.match(kp.node_id_short), kp.node_id_short
        assert short_node_id(kp.node_id_full) == kp.node_id_short


def test_full_id_round_trip() -> None:
    kp = keys.generate()
    assert kp.node_id_full.startswith("ed25519:")
    assert len(kp.node_id_full) == len("ed25519:") + 43
    assert parse_node_id(kp.node_id_full) == kp.public_bytes
    assert bytes(verify_key_from_full(kp.node_id_full)) == kp.public_bytes


@pytest.mark.parametrize(
    "bad",
    [
        "ed25519:AAAQ-EAYE-AUDA-OCAJ",  # short form is display-only
        "ed25519:" + b64url_nopad(bytes(31)),  # wrong length
        "ed25519:" + b64url_nopad(bytes(32)) + "=",  # padded
        b64url_nopad(bytes(32)),  # no prefix
        "ed25519:not base64!",
        "",
    ],
)
def test_parse_node_id_rejects(bad: str) -> None:
    with pytest.raises(IdentityError) as err:
        parse_node_id(bad)
    assert err.value.code == "bad_node_id"


def test_full_node_id_rejects_wrong_length() -> None:
    with pytest.raises(IdentityError):
        full_node_id(bytes(31))


def test_b64url_helpers_are_strict() -> None:
    data = bytes(range(256))
    assert b64url_decode(b64url_nopad(data)) == data
    assert "=" not in b64url_nopad(b"x")
    with pytest.raises(ValueError):
        b64url_decode("eA==")
    with pytest.raises(ValueError):
        b64url_decode("eB")  # non-canonical trailing bits


# --------------------------------------------------------------------------- signing


def test_sign_and_verify_detects_tampering() -> None:
    kp = keys.generate()
    payload = {"b": [1, 2], "a": "hello", "n": 2.0}
    signed = kp.sign(payload)
    assert "signature" not in payload  # the input is not mutated
    assert signed["signature"].startswith("ed25519:")
    assert verify_payload(signed, kp.verify_key)
    assert verify_payload(signed, kp.public_bytes)
    assert verify_payload_with_node_id(signed, kp.node_id_full)
    # Key order and 2.0 vs 2 do not matter: both have one canonical form.
    assert verify_payload({"n": 2, "signature": signed["signature"], "a": "hello", "b": [1, 2]}, kp.verify_key)

    assert not verify_payload({**signed, "a": "hellO"}, kp.verify_key)
    assert not verify_payload({**signed, "extra": 1}, kp.verify_key)
    other = keys.generate()
    assert not verify_payload(signed, other.verify_key)
    assert not verify_payload_with_node_id(signed, other.node_id_full)
    assert not verify_payload_with_node_id(signed, kp.node_id_short)
    sig = signed["signature"]
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert not verify_payload({**signed, "signature": flipped}, kp.verify_key)
    assert not verify_payload({k: v for k, v in signed.items() if k != "signature"}, kp.verify_key)
    assert not verify_payload({**signed, "signature": "rsa:" + sig[8:]}, kp.verify_key)


def test_resigning_replaces_signature() -> None:
    kp = keys.generate()
    twice = sign_payload(sign_payload({"x": 1}, kp), kp)
    assert verify_payload(twice, kp.verify_key)


def test_sign_bytes_format() -> None:
    kp = keys.generate()
    sig = kp.sign_bytes(b"data")
    assert sig.startswith("ed25519:")
    assert len(b64url_decode(sig[8:])) == 64
    assert keys.verify_bytes(b"data", sig, kp.verify_key)
    assert not keys.verify_bytes(b"datA", sig, kp.verify_key)


def test_keypair_repr_hides_private_key() -> None:
    kp = keys.generate()
    assert bytes(kp.signing_key).hex() not in repr(kp)
    assert kp.node_id_short in repr(kp)


# --------------------------------------------------------------------------- disk


def test_key_file_modes_and_layout(tmp_path: Path) -> None:
    keys_dir = tmp_path / "k" / "keys"
    kp = keys.generate()
    keys.save(kp, keys_dir)
    priv, pub = keys_dir / "device.ed25519", keys_dir / "device.pub"
    assert _mode(keys_dir) == 0o700
    assert _mode(priv) == 0o600
    assert _mode(pub) == 0o644
    assert priv.read_bytes() == bytes(kp.signing_key) and len(priv.read_bytes()) == 32
    assert pub.read_bytes() == kp.public_bytes
    assert sorted(p.name for p in keys_dir.iterdir()) == ["device.ed25519", "device.pub"]
    assert keys.load(keys_dir) == kp


def test_save_never_overwrites(tmp_path: Path) -> None:
    first = keys.generate()
    keys.save(first, tmp_path)
    with pytest.raises(IdentityError) as err:
        keys.save(keys.generate(), tmp_path)
    assert err.value.code == "keys_exist"
    assert keys.load(tmp_path).node_id_full == first.node_id_full
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_keys_permissions(tmp_path: Path) -> None:
    keys.save(keys.generate(), tmp_path)
    os.chmod(tmp_path / "device.ed25519", 0o644)
    with pytest.raises(IdentityError) as err:
        keys.load(tmp_path)
    assert err.value.code == "keys_permissions"
    assert "chmod 600" in err.value.message


def test_keys_missing(tmp_path: Path) -> None:
    with pytest.raises(IdentityError) as err:
        keys.load(tmp_path / "nowhere")
    assert err.value.code == "keys_missing"


def test_keys_invalid_length(tmp_path: Path) -> None:
    keys.save(keys.generate(), tmp_path)
    priv = tmp_path / "device.ed25519"
    priv.write_bytes(priv.read_bytes()[:31])
    with pytest.raises(IdentityError) as err:
        keys.load(tmp_path)
    assert err.value.code == "keys_invalid"


def test_public_key_mismatch_is_invalid(tmp_path: Path) -> None:
    keys.save(keys.generate(), tmp_path)
    (tmp_path / "device.pub").write_bytes(keys.generate().public_bytes)
    with pytest.raises(IdentityError) as err:
        keys.load(tmp_path)
    assert err.value.code == "keys_invalid"


def test_load_or_generate_is_stable(tmp_path: Path) -> None:
    first = keys.load_or_generate(tmp_path / "keys")
    second = keys.load_or_generate(tmp_path / "keys")
    assert first.node_id_full == second.node_id_full
    assert isinstance(second, KeyPair)
