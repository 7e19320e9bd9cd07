"""Routing by corpus (issue 8): one `rag.query` descriptor per node lists its corpora in
`params.corpora`; a call's `params.corpus` goes to a provider that lists it, else only to
this node's own provider (which answers `not_found` or serves `personal`), and with no
holder and no local provider the broker answers `not_found` at once."""
from __future__ import annotations


import pytest

from hearthnet.errors import HearthNetError
from tests.unit.broker.fake_worker import FakeWorker
from tests.unit.broker.test_broker import _client, bench, run  # noqa: F401  (fixture)


def Provider(endpoint: str, name: str, corpora: list[str], node_id: str | None = None) -> FakeWorker:
    """A worker (local, or a peer's proxy when `node_id` is given) offering rag.query over
    `corpora`; answers with its own name."""
    return FakeWorker(endpoint, name, [{"name": "rag.query", "version": "1.0", "max_concurrent": 4,
                                        "idempotent": True, "trust_required": "member",
                                        "params": {"corpora": corpora, "k_max": 20}}],
                      node_id=node_id, service="rag",
                      reply=lambda _m: ("result", {"output": {"served_by": name}, "meta": {}}))


def _query(bench, corpus: str) -> str:  # noqa: F811
    async def go():
        bc = await _client(bench)
        try:
            out = await bench_call(bc, corpus)
        finally:
            await bc.close()
        return out

    return run(go())


async def bench_call(bc, corpus: str) -> str:
    out = await bc.call("rag.query", "1.0", {"params": {"corpus": corpus}, "input": {"query": "q"}}, timeout=5)
    return out["output"]["served_by"]


@pytest.fixture
def providers(bench):  # noqa: F811
    made: list[Provider] = []

    def make(name: str, corpora: list[str], node_id: str | None = None) -> Provider:
        p = Provider(bench.w, name, corpora, node_id)
        made.append(p)
        bench.wait_ready(name)
        return p

    yield make
    for p in made:
        p.close()


def test_a_call_goes_to_the_node_holding_its_corpus(bench, providers):  # noqa: F811
    providers("local", ["water"])
    providers("peer:aaaa", ["flood-plan"], node_id="ed25519:" + "A" * 43)
    providers("peer:bbbb", ["shelters", "first-aid"], node_id="ed25519:" + "B" * 43)
    for _ in range(3):  # not by load or luck
        assert _query(bench, "flood-plan") == "peer:aaaa"
        assert _query(bench, "first-aid") == "peer:bbbb"
        assert _query(bench, "water") == "local"


def test_an_unlisted_corpus_stays_on_this_node(bench, providers):  # noqa: F811
    """`personal` (never listed) and unknown names go to the local worker, never to a peer."""
    providers("local", ["water"])
    providers("peer:aaaa", ["flood-plan"], node_id="ed25519:" + "A" * 43)
    assert _query(bench, "personal") == "local"
    assert _query(bench, "nobody-has-this") == "local"


def test_no_holder_and_no_local_provider_is_not_found(bench, providers):  # noqa: F811
    providers("peer:aaaa", ["flood-plan"], node_id="ed25519:" + "A" * 43)
    with pytest.raises(HearthNetError) as exc:
        _query(bench, "shelters")
    assert exc.value.code == "not_found" and "shelters" in exc.value.message
    assert _query(bench, "flood-plan") == "peer:aaaa"


def test_calls_without_a_corpus_route_as_before(bench, providers):  # noqa: F811
    providers("peer:aaaa", ["flood-plan"], node_id="ed25519:" + "A" * 43)

    async def go():
        bc = await _client(bench)
        try:
            return (await bc.call("rag.query", "1.0", {"params": {}, "input": {}}, timeout=5))["output"]
        finally:
            await bc.close()

    assert run(go())["served_by"] == "peer:aaaa"
