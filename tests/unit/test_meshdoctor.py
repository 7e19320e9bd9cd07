"""hearthnet.meshdoctor: asking members (a stand-in local API), judging their summaries,
and the table / JSON of `doctor --mesh`."""
from __future__ import annotations

import io
import json
from typing import Any, Callable

from hearthnet import health, meshdoctor
from hearthnet.cli.render import Output
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys

COMMUNITY = "ed25519:" + "C" * 43


def facts(**over: Any) -> dict[str, Any]:
    f = {"display_name": "x", "community_id": COMMUNITY, "version": "0.11.0", "profile": "hearth",
         "uptime_seconds": 5, "online_state": "online",
         "sync": {"peers": 2, "lag_seconds": 4.0, "last_round_seconds_ago": 1.0, "never_synced": 0, "failing": []},
         "event_log": {"head": 7, "count": 12}, "checks_run": 10, "failing_checks": []}
    f.update(over)
    return f


class FakeApi:
    """Answers node.health per target node with what `answers[node]` makes of the nonce."""

    def __init__(self, own: keys.KeyPair, members: list[tuple[keys.KeyPair | str, str]],
                 answers: dict[str, Callable[[str], Any]]) -> None:
        self.own, self.members, self.answers = own, members, answers
        self.asked: list[tuple[str | None, float | None]] = []

    def output(self, name: str, inp: dict[str, Any]) -> dict[str, Any]:
        assert name == "community.members.list"
        recs = [{"node_id": k if isinstance(k, str) else k.node_id_full, "display_name": n, "level": "member"}
                for k, n in self.members]
        return {"node_id": self.own.node_id_full, "community_id": COMMUNITY, "community_name": "Elm St",
                "members": recs + [{"no": "id"}]}

    def call(self, name: str, version: str, body: Any, *, node: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        assert name == "node.health"
        self.asked.append((node, timeout))
        answer = self.answers[node](body["input"]["nonce"])
        if isinstance(answer, HearthNetError):
            raise answer
        return {"output": answer, "meta": {}}


def scenario() -> tuple[FakeApi, dict[str, keys.KeyPair]]:
    k = {n: keys.generate() for n in ("alice", "bob", "carol", "dave", "erin")}
    failing = [{"name": "disk_space", "status": "fail", "message": "0.2 GB free", "fix": "free some disk space"}]
    answers = {
        k["alice"].node_id_full: lambda n: health.build_summary(k["alice"], facts(), nonce=n),
        k["bob"].node_id_full: lambda n: health.build_summary(k["bob"], facts(failing_checks=failing,
                                                                              event_log={"head": 6, "count": 10}),
                                                              nonce=n),
        k["carol"].node_id_full: lambda n: HearthNetError("not_found", "node does not offer node.health here"),
        # dave's answer was tampered with on the way: claims a healthy node
        k["dave"].node_id_full: lambda n: {**health.build_summary(k["dave"], facts(failing_checks=failing), nonce=n),
                                           "failing_checks": [], "healthy": True},
        k["erin"].node_id_full: lambda n: HearthNetError("timeout", "no answer"),
    }
    api = FakeApi(k["alice"], [(k[n], n) for n in ("bob", "alice", "carol", "dave", "erin")], answers)
    return api, k


def test_each_member_is_judged_and_nothing_unverified_is_kept() -> None:
    api, k = scenario()
    heard: list[str] = []
    res = meshdoctor.mesh_doctor(api, timeout=3.0, progress_factory=lambda n: (lambda r: heard.append(r.state)))
    assert sorted(heard) == sorted(["verified", "verified", "not_heard_from", "unverified", "not_heard_from"])
    assert {node for node, _ in api.asked} == {kp.node_id_full for kp in k.values()}
    assert all(t == 3.0 for _, t in api.asked)
    by = {m.member.display_name: m for m in res.members}
    assert res.members[0].is_self and res.members[0].member.display_name == "alice"
    assert by["alice"].state == "verified" and by["alice"].healthy
    assert by["bob"].state == "verified" and by["bob"].healthy is False
    assert by["carol"].state == "not_heard_from" and "not reachable" in by["carol"].reason
    assert by["erin"].state == "not_heard_from" and "in time" in by["erin"].reason
    assert by["dave"].state == "unverified" and "signature" in by["dave"].reason
    assert by["dave"].summary is None  # its claims are not kept
    assert res.exit_code == 1


def test_json_has_stable_keys_and_shows_no_fact_of_an_unverified_summary() -> None:
    api, k = scenario()
    doc = meshdoctor.mesh_doctor(api).to_dict()
    assert doc["ok"] is False and doc["community_id"] == COMMUNITY
    assert doc["counts"] == {"members": 5, "verified": 2, "unverified": 1, "not_heard_from": 2, "unhealthy": 1}
    assert set(doc["not_heard_from"]) == {k["carol"].node_id_full, k["erin"].node_id_full}
    keys_ = {"node_id", "node_id_short", "display_name", "level", "self", "state", "up", "reason", "healthy",
             "version", "profile", "online_state", "uptime_seconds", "sync", "event_log", "failing_checks",
             "issued_at", "ms"}
    assert all(set(m) == keys_ for m in doc["members"])
    dave = next(m for m in doc["members"] if m["display_name"] == "dave")
    assert dave["up"] is None and dave["healthy"] is None and dave["failing_checks"] is None
    assert dave["version"] is None and dave["online_state"] is None
    bob = next(m for m in doc["members"] if m["display_name"] == "bob")
    assert bob["up"] is True and bob["failing_checks"][0]["fix"] == "free some disk space"
    json.dumps(doc)


def test_the_table_marks_unverified_and_not_heard_from_and_shows_fixes() -> None:
    api, _ = scenario()
    buf = io.StringIO()
    meshdoctor.mesh_doctor(api).human(Output(out=buf, err=io.StringIO()))
    text = buf.getvalue()
    assert "Mesh health of Elm St: 5 member(s), 2 verified, 1 unverified, 2 not heard from" in text
    assert "alice" in text and "(this node)" in text
    dave = next(line for line in text.splitlines() if line.startswith("dave"))
    assert "unverified" in dave and "summary not trusted" in dave and "0.11.0" not in dave
    assert "✘ disk_space: 0.2 GB free" in text and "→ fix: free some disk space" in text
    assert "not heard from: not reachable" in text
    assert "10 (-2)" in text and "12 (same)" in text  # bob's log against ours
    assert "4s" in text


def test_all_verified_and_healthy_exits_0() -> None:
    own = keys.generate()
    api = FakeApi(own, [(own, "alice")], {own.node_id_full: lambda n: health.build_summary(own, facts(), nonce=n)})
    res = meshdoctor.mesh_doctor(api)
    assert res.exit_code == 0 and res.to_dict()["ok"] is True
    buf = io.StringIO()
    res.human(Output(out=buf))
    assert "every member answered with a verified summary" in buf.getvalue()


def test_a_summary_with_only_warnings_is_healthy() -> None:
    own = keys.generate()
    warn = [{"name": "llm_backend_configured", "status": "warn", "message": "no LLM backend", "fix": "add one"}]
    api = FakeApi(own, [(own, "alice")],
                  {own.node_id_full: lambda n: health.build_summary(own, facts(failing_checks=warn), nonce=n)})
    res = meshdoctor.mesh_doctor(api)
    assert res.exit_code == 0
    buf = io.StringIO()
    res.human(Output(out=buf))
    assert "⚠ llm_backend_configured" in buf.getvalue()
