"""The Settings routes' logic (hearthnet/gateway/node_settings.py) without a node: the
display-name rule, the config.toml write (atomic, other keys and hearthnet's comments
kept, the file's mode kept), both gateways taking a new name, discovery's restart, the
join body, and the solo check read from the ledger page by page."""
from __future__ import annotations

import asyncio
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hearthnet.config import load_config, update_config_file
from hearthnet.errors import HearthNetError
from hearthnet.gateway import node_settings
from hearthnet.onboarding.errors import OnboardingError
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401

ME = "ed25519:" + "a" * 52
OTHER = "ed25519:" + "b" * 52


@pytest.mark.parametrize("bad", [None, 5, "", "   ", "x" * 65, "two\nlines", "tab\there", "bell\x07"])
def test_a_bad_display_name_is_bad_request(bad: Any) -> None:
    with pytest.raises(HearthNetError) as err:
        node_settings.check_display_name(bad)
    assert err.value.code == "bad_request" and err.value.message


def test_a_good_display_name_is_stripped() -> None:
    assert node_settings.check_display_name("  Mill Street 12 ") == "Mill Street 12"
    assert node_settings.check_display_name("ü" * 64) == "ü" * 64  # init's rule: 1-64 characters


def test_an_environment_override_would_hide_the_rename(monkeypatch) -> None:
    monkeypatch.setenv("HEARTHNET_NODE_DISPLAY_NAME", "fixed")
    with pytest.raises(HearthNetError) as err:
        node_settings.check_display_name("new")
    assert "HEARTHNET_NODE_DISPLAY_NAME" in err.value.message


def test_the_rename_is_written_atomically_and_keeps_the_rest(tmp_path: Path, monkeypatch) -> None:
    path = load_config().paths.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    update_config_file(path, {"node": {"display_name": "old", "profile": "hearth"},
                              "community": {"community_id": ME, "name": "Maple Street"}})
    update_config_file(path, {"market": {"default_ttl_seconds": 3600}, "transport": {"host": "${HN_HOST}"}},
                       env={"HN_HOST": "127.0.0.1"})  # set by hand, with an env reference
    os.chmod(path, 0o640)
    before = tomllib.loads(path.read_text())
    monkeypatch.setenv("HN_HOST", "127.0.0.1")
    written = node_settings.write_display_name(load_config(), "new name")
    assert written == path
    text = path.read_text()
    after = tomllib.loads(text)
    assert after["node"] == {**before["node"], "display_name": "new name"}
    for section in ("community", "market", "transport"):
        assert after[section] == before[section], section
    assert after["transport"]["host"] == "${HN_HOST}"  # not expanded into the file
    assert text.startswith("# HearthNet node configuration.")  # hearthnet's comments are kept
    assert "# No LLM backend yet" in text
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


@dataclass
class FakeGateway:
    cfg: Any
    origin: Any = None
    _manifest: Any = "cached"


def test_both_gateways_take_the_new_name_and_drop_their_signed_manifest() -> None:
    cfg = load_config()
    main = FakeGateway(cfg)
    local = FakeGateway(cfg, origin=main)
    node_settings.use_display_name(local, "renamed")  # type: ignore[arg-type]
    for g in (local, main):
        assert g.cfg.node.display_name == "renamed" and g._manifest is None
    assert cfg.node.display_name != "renamed"  # a new Config, the old one is frozen


@dataclass
class FakeSupervisor:
    names: list[str]
    ok: bool = True
    restarted: list[str] = field(default_factory=list)

    def processes(self) -> list[dict[str, Any]]:
        return [{"name": n} for n in self.names]

    def restart_program(self, name: str) -> bool:
        self.restarted.append(name)
        return self.ok


def test_discovery_is_restarted_when_it_runs() -> None:
    sup = FakeSupervisor(["gateway", "discovery"])
    assert node_settings.restart_discovery(_gw(sup)) == ["discovery"]
    assert sup.restarted == ["discovery"]
    assert node_settings.restart_discovery(_gw(FakeSupervisor(["gateway"]))) == []
    assert node_settings.restart_discovery(_gw(FakeSupervisor(["discovery"], ok=False))) == []


def _gw(sup: FakeSupervisor) -> Any:
    class G:
        supervisor = sup
    return G()


@pytest.mark.parametrize("body", [[], "text", {"invite": "x", "confirm": "yes"}, {"confirm": True},
                                  {"invite": ""}, {"invite": "hearthnet://v1/AAAA"}])
def test_a_bad_join_body_is_refused(body: Any) -> None:
    with pytest.raises(HearthNetError) as err:
        node_settings.join_input(body)
    assert err.value.code in ("bad_request", "invite_invalid")


class FakeBus:
    """community.members.get and community.log.events (after_seq pages) of a ledger."""

    def __init__(self, members: list[str], authors: list[str]) -> None:
        self.members, self.authors, self.pages = members, authors, 0

    async def call(self, cap: str, version: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        inp = body["input"]
        if cap == "community.members.get":
            return {"output": {"members": [{"node_id": m} for m in self.members], "revoked": []}}
        self.pages += 1
        start = inp["after_seq"]
        rows = list(enumerate(self.authors, 1))[start:start + inp["limit"]]
        return {"output": {"events": [{"author": a} for _, a in rows], "seqs": [s for s, _ in rows]}}


def _solo(bus: FakeBus) -> str | None:
    class Kp:
        node_id_full = ME

    class G:
        pass

    g = G()
    g.bus, g.kp = bus, Kp()  # type: ignore[attr-defined]
    return asyncio.run(node_settings.solo_problem(g))  # type: ignore[arg-type]


def test_the_solo_check_reads_every_page_of_the_log(monkeypatch) -> None:
    monkeypatch.setattr(node_settings, "EVENTS_PAGE", 3)
    bus = FakeBus([ME], [ME] * 7)
    assert _solo(bus) is None and bus.pages == 3
    assert "1 other node" in _solo(FakeBus([ME], [ME] * 5 + [OTHER] + [ME]))
    bus = FakeBus([ME, OTHER], [ME])
    assert "1 other member" in _solo(bus) and bus.pages == 0  # the log is not read then


def test_other_community_carries_the_erase_hint() -> None:
    exc = OnboardingError("other_community", "x", hint=node_settings.switch.ERASE_HINT)
    assert "hearthnet erase" in exc.details["hint"]
    from hearthnet.errors import http_status_for

    assert http_status_for("other_community") == 409 and http_status_for("invite_invalid") == 400
