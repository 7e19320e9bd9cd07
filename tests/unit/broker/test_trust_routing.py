"""The trust boundary in the broker (issue 6): node-internal capabilities are never served
by a peer, whatever the state of the local workers; governance capabilities reach a peer
only when the call names that node."""
from __future__ import annotations



from hearthnet.errors import HearthNetError
from tests.unit.broker.fake_worker import FakeWorker
from tests.unit.broker.test_broker import _client, bench, run  # noqa: F401  (fixture)

PEER = "ed25519:" + "P" * 43


def Remote(endpoint: str, name: str, node_id: str, caps: list[dict]) -> FakeWorker:
    """A peer proxy announcing `caps`; answers every request it gets and counts them."""
    return FakeWorker(endpoint, name, caps, node_id=node_id, reply=lambda _m: (
        "result", {"output": {"members": [{"node_id": PEER, "level": "anchor"}]}, "meta": {}}))


def cap(name: str, trust: str = "member") -> dict:
    return {"name": name, "version": "1.0", "max_concurrent": 8, "idempotent": True, "trust_required": trust}


def test_a_peer_never_answers_node_internal_capabilities(bench):
    """With no local ledger at all (dead, stopped, never started), community.members.get and
    the log capabilities a peer claims to offer are not routes: the call fails, no peer
    decides who is a member."""
    remote = Remote(bench.w, "peer:evil", PEER, [
        cap("community.members.get"), cap("community.log.heads"), cap("experimental.secret", "self"),
        cap("experimental.slow")])
    try:
        bench.wait_ready("peer:evil")
        w = bench.broker.workers["peer:evil"]
        assert sorted(w.caps) == ["experimental.slow"]  # the rest was never registered

        async def go():
            bc = await _client(bench)
            try:
                outcomes = []
                for name in ("community.members.get", "community.log.heads", "experimental.secret"):
                    try:
                        await bc.call(name, "1.0", {"params": {}, "input": {}}, timeout=0.5)
                        outcomes.append("answered")
                    except HearthNetError as exc:
                        outcomes.append(exc.code)
                ok = await bc.call("experimental.slow", "1.0", {"params": {}, "input": {}}, timeout=2)
                return outcomes, ok
            finally:
                await bc.close()

        outcomes, ok = run(go())
        assert outcomes == ["not_found"] * 3
        assert ok["output"]["members"]  # an ordinary capability still goes to the peer
        assert remote.requests == ["experimental.slow"]
    finally:
        remote.close()


def test_governance_capabilities_reach_a_peer_only_when_targeted(bench):
    remote = Remote(bench.w, "peer:gov", PEER, [cap("community.revoke", "trusted")])
    try:
        bench.wait_ready("peer:gov")

        async def go():
            bc = await _client(bench)
            try:
                try:
                    await bc.call("community.revoke", "1.0", {"params": {}, "input": {}}, timeout=0.5)
                    untargeted = "answered"
                except HearthNetError as exc:
                    untargeted = exc.code
                out = await bc.call("community.revoke", "1.0", {"params": {}, "input": {}}, timeout=2,
                                    node=PEER)
                try:
                    await bc.call("community.revoke", "1.0", {"params": {}, "input": {}}, timeout=0.5,
                                  node="ed25519:" + "Q" * 43)
                    elsewhere = "answered"
                except HearthNetError as exc:
                    elsewhere = exc.code
                return untargeted, out, elsewhere
            finally:
                await bc.close()

        untargeted, out, elsewhere = run(go())
        assert untargeted == "timeout"  # waits for a local provider; the peer is not one
        assert out["output"]
        assert elsewhere == "not_found"  # that node offers nothing here: said at once
        assert remote.requests == ["community.revoke"]
    finally:
        remote.close()


def test_a_call_targeted_at_another_node_is_not_served_locally(bench):
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        try:
            try:
                await bc.call("experimental.slow", "1.0", {"params": {}, "input": {}}, timeout=0.5, node=PEER)
                targeted = "answered"
            except HearthNetError as exc:
                targeted = exc.code
            plain = await bc.call("experimental.slow", "1.0", {"params": {}, "input": {}}, timeout=5)
            return targeted, plain
        finally:
            await bc.close()

    targeted, plain = run(go())
    assert targeted == "not_found"
    assert plain["output"]["echo"] == {}
