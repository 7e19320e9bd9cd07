from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hearthnet.constants import MANIFEST_TTL_SECONDS
from hearthnet.errors import HearthNetError, IdentityError
from hearthnet.identity import keys
from hearthnet.identity.manifest import (
    DEFAULT_POLICY,
    NODE_MANIFEST_FIELDS,
    build_genesis_community_manifest,
    build_node_manifest,
    is_member,
    is_revoked,
    level_of,
    parse_rfc3339,
    read_community_manifest,
    rfc3339,
    verify_community_manifest,
    verify_node_manifest,
    write_community_manifest,
)
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)

NOW = datetime(2026, 5, 26, 8, 14, 22, 281000, tzinfo=timezone.utc)
HW = {"gpu": None, "vram_gb": 0.0, "ram_gb": 15.6, "cpu_cores": 8, "disk_free_gb": 120.5}
LOAD = {"cpu": 0.12, "vram_used_gb": 0.0, "in_flight_total": 0}


def _node_manifest(kp: keys.KeyPair, now: datetime = NOW, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        display_name="Anna's laptop",
        community_id=kp.node_id_full,
        profile="hearth",
        endpoints=[{"transport": "https", "host": "192.168.1.20", "port": 7080}],
        hardware=HW,
        capabilities=[{"name": "llm.chat", "version": "1.0", "stability": "stable",
                       "schema_hash": "blake3:" + "0" * 64, "params": {"model": "qwen"}, "max_concurrent": 2}],
        uptime_seconds=42,
        load=LOAD,
        now=now,
    )
    args.update(over)
    return build_node_manifest(kp, **args)


def test_rfc3339() -> None:
    assert rfc3339(NOW) == "2026-05-26T08:14:22Z"
    assert rfc3339(datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))) == "2026-01-01T00:00:00Z"
    assert parse_rfc3339("2026-05-26T08:14:22Z") == NOW.replace(microsecond=0)


def test_node_manifest_fields_and_ttl_exactly_30s() -> None:
    kp = keys.generate()
    m = _node_manifest(kp)
    assert set(m) == set(NODE_MANIFEST_FIELDS)
    assert m["version"] == 1 and m["contract_version"] == "1.0"
    assert m["node_id"] == kp.node_id_full
    assert m["issued_at"] == "2026-05-26T08:14:22Z"
    assert m["expires_at"] == "2026-05-26T08:14:52Z"
    delta = parse_rfc3339(m["expires_at"]) - parse_rfc3339(m["issued_at"])
    assert delta == timedelta(seconds=MANIFEST_TTL_SECONDS) == timedelta(seconds=30)
    assert verify_node_manifest(m, now=NOW) is m


def test_node_manifest_valid_until_expiry_then_rejected() -> None:
    m = _node_manifest(keys.generate())
    verify_node_manifest(m, now=NOW + timedelta(seconds=29))
    with pytest.raises(IdentityError) as err:
        verify_node_manifest(m, now=NOW + timedelta(seconds=31))
    assert err.value.code == "expired"


def test_node_manifest_tampering_is_invalid_signature() -> None:
    m = _node_manifest(keys.generate())
    with pytest.raises(IdentityError) as err:
        verify_node_manifest({**m, "profile": "anchor"}, now=NOW)
    assert err.value.code == "invalid_signature"


def test_node_manifest_signed_by_someone_else() -> None:
    kp, other = keys.generate(), keys.generate()
    forged = other.sign({**_node_manifest(kp), "node_id": kp.node_id_full})
    with pytest.raises(IdentityError) as err:
        verify_node_manifest(forged, now=NOW)
    assert err.value.code == "invalid_signature"


def test_node_manifest_missing_field_is_bad_manifest() -> None:
    kp = keys.generate()
    m = kp.sign({k: v for k, v in _node_manifest(kp).items() if k != "load"})
    with pytest.raises(IdentityError) as err:
        verify_node_manifest(m, now=NOW)
    assert err.value.code == "bad_manifest"
    assert "load" in err.value.message


def test_node_manifest_longer_than_ttl_is_refused() -> None:
    kp = keys.generate()
    m = kp.sign({**_node_manifest(kp), "expires_at": rfc3339(NOW + timedelta(days=365))})
    with pytest.raises(IdentityError) as err:
        verify_node_manifest(m, now=NOW)
    assert err.value.code == "bad_manifest"


def _cap(**over: Any) -> dict[str, Any]:
    cap = {"name": "llm.chat", "version": "1.0", "stability": "stable", "schema_hash": "blake3:" + "0" * 64,
           "params": {"model": "qwen"}, "max_concurrent": 2}
    cap.update(over)
    return {k: v for k, v in cap.items() if v is not _DROP}


_DROP = object()
_DEEP: Any = {}
for _ in range(40):
    _DEEP = {"x": _DEEP}

# Each: a manifest (signed by its own node, fresh) that is wrong in one field's shape.
BAD_FIELDS: dict[str, dict[str, Any]] = {
    "max_concurrent a word": {"capabilities": [_cap(max_concurrent="lots")]},
    "max_concurrent zero": {"capabilities": [_cap(max_concurrent=0)]},
    "max_concurrent huge": {"capabilities": [_cap(max_concurrent=10**9)]},
    "max_concurrent a bool": {"capabilities": [_cap(max_concurrent=True)]},
    "capability not an object": {"capabilities": ["llm.chat"]},
    "capability name pattern": {"capabilities": [_cap(name="LLM chat!")]},
    "capability name long": {"capabilities": [_cap(name="a." + "b" * 300)]},
    "capability version": {"capabilities": [_cap(version="1")]},
    "capability version type": {"capabilities": [_cap(version=1.0)]},
    "capability params a list": {"capabilities": [_cap(params=["model"])]},
    "capability params deep": {"capabilities": [_cap(params=_DEEP)]},
    "capability params bigint": {"capabilities": [_cap(params={"ctx": 2**70})]},
    "capability params huge": {"capabilities": [_cap(params={"models": list(range(10_000))})]},
    "capability schema_hash": {"capabilities": [_cap(schema_hash="md5:00")]},
    "capability stability": {"capabilities": [_cap(stability="forever")]},
    "capability missing field": {"capabilities": [_cap(max_concurrent=_DROP)]},
    "capability repeated": {"capabilities": [_cap(), _cap()]},
    "capabilities not a list": {"capabilities": {"llm.chat": 1}},
    "too many capabilities": {"capabilities": [_cap(name=f"x.c{i}") for i in range(300)]},
    "endpoints not a list": {"endpoints": "https://x"},
    "endpoint port a string": {"endpoints": [{"transport": "https", "host": "h", "port": "7080"}]},
    "endpoint port out of range": {"endpoints": [{"transport": "https", "host": "h", "port": 70000}]},
    "endpoint host missing": {"endpoints": [{"transport": "https", "port": 7080}]},
    "too many endpoints": {"endpoints": [{"transport": "https", "host": "h", "port": 1}] * 40},
    "display_name a number": {"display_name": 7},
    "display_name huge": {"display_name": "x" * 5000},
    "profile a list": {"profile": ["hearth"]},
    "community_id a map": {"community_id": {"id": 1}},
    "contract_version": {"contract_version": "one"},
    "hardware not an object": {"hardware": [1, 2]},
    "hardware ram a string": {"hardware": {**HW, "ram_gb": "16"}},
    "hardware cores negative": {"hardware": {**HW, "cpu_cores": -1}},
    "hardware vram negative": {"hardware": {**HW, "vram_gb": -1.5}},
    "load in_flight a float": {"load": {**LOAD, "in_flight_total": 0.5}},
    "uptime a string": {"uptime_seconds": "42"},
    "tls_fingerprint a number": {"tls_fingerprint": 5},
    "extra field deep": {"extra": _DEEP},
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_node_manifest_field_shapes_are_checked(case: str) -> None:
    kp = keys.generate()
    m = kp.sign({**_node_manifest(kp), **BAD_FIELDS[case]})
    with pytest.raises(IdentityError) as err:
        verify_node_manifest(m, now=NOW)
    assert err.value.code == "bad_manifest", err.value.message


def test_node_manifest_bad_timestamps_are_bad_manifest() -> None:
    kp = keys.generate()
    for stamp in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday", 5, None,
                  "2026-05-26T08:14:22"):
        m = kp.sign({**_node_manifest(kp), "issued_at": stamp})
        with pytest.raises(IdentityError) as err:
            verify_node_manifest(m, now=NOW)
        assert err.value.code == "bad_manifest", stamp


def test_parse_rfc3339_refuses_times_outside_utc_years() -> None:
    with pytest.raises(ValueError):
        parse_rfc3339("0001-01-01T00:00:00+01:00")
    with pytest.raises(ValueError):
        parse_rfc3339("2026-05-26T08:14:22Z" + " " * 100)


def test_node_manifest_with_a_model_catalogue_and_no_endpoints_is_fine() -> None:
    kp = keys.generate()
    catalogue = {"model": "qwen", "models": [{"name": f"m{i}", "ctx": 4096, "quant": "q4"} for i in range(50)]}
    m = _node_manifest(kp, endpoints=[], capabilities=[_cap(params=catalogue), _cap(name="embed.text")],
                       extra_fields={"tls_fingerprint": "sha256:" + "a" * 64})
    assert verify_node_manifest(m, now=NOW) is m


def test_community_manifest_deep_or_mistyped_is_bad_manifest() -> None:
    kp = keys.generate()
    m = build_genesis_community_manifest(kp, "Elm Street")
    for over in ({"policy": _DEEP}, {"members": "everyone"}, {"created_at": "0001-01-01T00:00:00+01:00"},
                 {"version": [1]}):
        with pytest.raises(IdentityError) as err:
            verify_community_manifest(kp.sign({**m, **over}))
        assert err.value.code == "bad_manifest", over
    odd = kp.sign({**m, "head_lamport": 3, "members": m["members"] + [{"node_id": ["x"], "level": "anchor"}, 7]})
    assert verify_community_manifest(odd) is odd  # odd entries are not signers, nothing crashes


# --------------------------------------------------------------------------- community


def test_genesis_community_manifest() -> None:
    kp = keys.generate()
    m = build_genesis_community_manifest(kp, "Elm Street", now=NOW)
    assert m["community_id"] == m["root_key"] == kp.node_id_full
    assert m["version"] == 1 and m["lamport_at_creation"] == 0 and m["head_lamport"] == 0
    assert m["created_at"] == "2026-05-26T08:14:22Z"
    assert m["members"] == [
        {"node_id": kp.node_id_full, "level": "anchor", "added_at": m["created_at"], "added_by": kp.node_id_full}
    ]
    assert m["revoked"] == []
    assert m["policy"] == DEFAULT_POLICY
    assert m["policy"]["min_signatures_to_revoke"] == 3
    assert verify_community_manifest(m) is m
    assert is_member(m, kp.node_id_full) and level_of(m, kp.node_id_full) == "anchor"


def test_genesis_policy_overrides_and_checks() -> None:
    kp = keys.generate()
    m = build_genesis_community_manifest(kp, "X", policy={"default_member_can_invite": False})
    assert m["policy"]["default_member_can_invite"] is False
    with pytest.raises(HearthNetError):
        build_genesis_community_manifest(kp, "X", policy={"min_signatures_to_fly": 1})
    with pytest.raises(HearthNetError):
        build_genesis_community_manifest(kp, "X", policy={"min_signatures_to_revoke": "3"})
    for bad in ("", "   ", "x" * 65):
        with pytest.raises(HearthNetError):
            build_genesis_community_manifest(kp, bad)


def test_community_manifest_tamper_and_wrong_signer() -> None:
    kp = keys.generate()
    m = build_genesis_community_manifest(kp, "Elm Street")
    with pytest.raises(IdentityError) as err:
        verify_community_manifest({**m, "name": "Evil Street"})
    assert err.value.code == "invalid_signature"
    intruder = keys.generate()
    forged = intruder.sign({**m, "members": m["members"] + [
        {"node_id": intruder.node_id_full, "level": "anchor", "added_at": m["created_at"], "added_by": kp.node_id_full}
    ]})
    with pytest.raises(IdentityError) as err:
        verify_community_manifest(forged)
    assert err.value.code == "invalid_signature"
    with pytest.raises(IdentityError) as err:
        verify_community_manifest(kp.sign({**m, "community_id": intruder.node_id_full}))
    assert err.value.code == "bad_manifest"


def test_later_version_signed_by_anchor() -> None:
    root, anchor = keys.generate(), keys.generate()
    m = build_genesis_community_manifest(root, "Elm Street")
    later = {**m, "head_lamport": 7, "members": m["members"] + [
        {"node_id": anchor.node_id_full, "level": "anchor", "added_at": m["created_at"], "added_by": root.node_id_full}
    ]}
    verify_community_manifest(anchor.sign(later))
    revoked = {**later, "revoked": [{"node_id": anchor.node_id_full, "revoked_at": m["created_at"]}]}
    with pytest.raises(IdentityError):
        verify_community_manifest(anchor.sign(revoked))


def test_membership_helpers() -> None:
    root, member, stranger = keys.generate(), keys.generate(), keys.generate()
    m = build_genesis_community_manifest(root, "Elm Street")
    m = {**m, "members": m["members"] + [{"node_id": member.node_id_full, "level": "member",
                                          "added_at": m["created_at"], "added_by": root.node_id_full}]}
    assert level_of(m, member.node_id_full) == "member" and is_member(m, member.node_id_full)
    assert level_of(m, stranger.node_id_full) == "unknown" and not is_member(m, stranger.node_id_full)
    m["revoked"] = [{"node_id": member.node_id_full, "revoked_at": m["created_at"]}]
    assert is_revoked(m, member.node_id_full) and not is_member(m, member.node_id_full)
    assert level_of(m, member.node_id_full) == "unknown"


def test_write_and_read_community_manifest(tmp_path: Path) -> None:
    kp = keys.generate()
    m = build_genesis_community_manifest(kp, "Grüße Straße")
    path = tmp_path / "communities" / "c" / "manifest.json"
    write_community_manifest(m, path)
    assert read_community_manifest(path) == m
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]
    assert "Grüße" in path.read_text(encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8").replace("Grüße", "Evil"), encoding="utf-8")
    with pytest.raises(IdentityError):
        read_community_manifest(path)
    with pytest.raises(HearthNetError) as err:
        read_community_manifest(tmp_path / "missing.json")
    assert err.value.code == "not_found"
