"""Fuzz (c): every local and peer route of a REAL running node (hearthnet.testing.nodes,
one node for the module) gets malformed, mistyped, deep and huge bodies and random
X-HearthNet-* headers — unsigned, signed by a stranger, and signed by the node's own key
(which reaches the sync handlers and the ledger behind them). Each answer must be a
contract error or a success, never 500; afterwards every worker is still healthy and
has not restarted, and the gateway log holds no traceback."""
from __future__ import annotations

import json
import ssl
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from hearthnet.errors import HTTP_STATUS
from hearthnet.identity import keys
from hearthnet.testing.nodes import Node
from hearthnet.testing.waiting import wait_for
from hearthnet.transport.signing import SYNC_DIGEST, SYNC_EVENTS, SYNC_HEADS, SYNC_IDS, SYNC_PULL, sign_request
from tests.fuzz.strategies import json_values, nest

pytestmark = pytest.mark.integration

CONTRACT_CODES = set(HTTP_STATUS)
RENAME, JOIN = "/api/v1/settings/name", "/api/v1/community/join"  # the UI's Settings tab
LOCAL_ROUTES = [("GET", "/health"), ("GET", "/manifest"), ("GET", "/community/manifest"),
                ("POST", "/bus/v1/call"), ("GET", "/api/v1/status"), ("GET", "/api/v1/workers"),
                ("GET", "/api/v1/capabilities"), ("GET", "/api/v1/traces"), ("GET", "/api/v1/logs"),
                ("GET", "/metrics"), ("POST", RENAME), ("POST", JOIN)]
PEER_ROUTES = [("GET", "/health"), ("GET", "/manifest"), ("GET", "/community/manifest"),
               ("POST", "/bus/v1/call"), ("GET", "/sync/v1/heads"), ("POST", "/sync/v1/ids"),
               ("POST", "/sync/v1/events"), ("POST", "/sync/v1/pull"), ("POST", "/sync/v1/digest")]
ROUTE_CAPS = {"/sync/v1/heads": SYNC_HEADS, "/sync/v1/ids": SYNC_IDS, "/sync/v1/events": SYNC_EVENTS,
              "/sync/v1/pull": SYNC_PULL, "/sync/v1/digest": SYNC_DIGEST}
# Never the endless streams (community.*.watch/subscribe) or peers.add (it dials addresses).
CAPS = ["experimental.echo", "llm.chat", "llm.complete", "community.log.heads", "community.log.events",
        "community.log.ingest", "community.log.ids", "community.log.digest", "community.manifest.get", "community.members.get",
        "community.log.append", "sync.ids", "no.such", ""]
HEADERS = ["X-HearthNet-Capability", "X-HearthNet-Capability-Version", "X-HearthNet-Request-Id",
           "X-HearthNet-From", "X-HearthNet-Community", "X-HearthNet-Timestamp", "X-HearthNet-Signature",
           "X-HearthNet-Timeout", "Accept", "Content-Type", "Authorization"]
header_text = st.text(alphabet=string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "")
                      .replace("\x0c", ""), max_size=60) | st.sampled_from([
                          "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "nan", "inf", "-1",
                          "1e308", "text/event-stream", "application/json, text/event-stream", "1.0", "99.99",
                          "ed25519:", "01J00000000000000000000000"])
STRANGER = keys.generate()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    n = Node(tmp_path_factory.mktemp("fuzz-node"), "fuzz")
    try:
        n.init()
        n.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
        n.cid = _community_id(n)
        n.kp = keys.load(n.root / "data" / "hearthnet" / "keys")
        n.before = _workers(n)
        n.renames = 0  # each rename the fuzz got through restarts the discovery worker
        yield n
    finally:
        n.cleanup()


def _community_id(n: Node) -> str:
    status = n.api("/api/v1/status")
    community = status.get("community") or {}
    return community.get("community_id") or community.get("id") or ""


def _workers(n: Node) -> dict[str, tuple[bool, int]]:
    return {w["name"]: (w["healthy"], w["restarts"]) for w in n.api("/api/v1/workers")["workers"]}


def _check(status: int, data: bytes, what: Any) -> None:
    assert status != 500 and status < 600, (status, data[:300], what)
    if status >= 400:
        body = json.loads(data)
        assert isinstance(body, dict) and body.get("error") in CONTRACT_CODES, (status, data[:300], what)
        assert isinstance(body.get("message"), str), (status, data[:300], what)


@st.composite
def bodies(draw: Any, cid: str, path: str) -> tuple[bytes | None, Any]:
    """(raw bytes, the JSON value they hold or None); mostly the shape the route expects,
    so the handlers behind the checks are reached."""
    likely = {"/sync/v1/events": 3, "/sync/v1/pull": 4, "/sync/v1/ids": 4, "/bus/v1/call": 5,
              RENAME: 7, JOIN: 8}.get(path)
    kind = draw(st.integers(0, 6)) if likely is None or draw(st.integers(0, 3)) == 0 else likely
    if kind == 0:
        return None, None
    if kind == 1:
        return draw(st.binary(max_size=200)), None
    if kind == 2:
        depth = draw(st.integers(1, 900))  # deeper bodies: test_deep_json_bodies
        value = nest(depth, draw(st.sampled_from(["list", "dict"])))
    elif kind == 3:
        value = {"community_id": draw(_mostly(st.just(cid), json_values)),
                 "events": draw(_mostly(st.lists(json_values | st.fixed_dictionaries(
                     {"event_id": st.text(max_size=30), "lamport": json_values, "data": json_values,
                      "event_type": st.sampled_from(["community.member.joined", "chat.message.sent", "x"]),
                      "community_id": st.just(cid), "author": json_values, "signature": json_values}),
                     max_size=5), json_values))}
    elif kind == 4:
        value = {"community_id": draw(_mostly(st.just(cid), json_values)),
                 "ids": draw(_mostly(st.lists(st.text(max_size=30) | json_values, max_size=10), json_values))}
    elif kind == 5:
        value = {"params": draw(json_values), "input": draw(json_values)}
    elif kind == 7:  # a rename: mostly text, sometimes a valid name (it restarts discovery)
        value = {"display_name": draw(_mostly(st.text(max_size=80), json_values))}
    elif kind == 8:  # a join: never a valid invite (no signed one is made here), so no dialling
        invite = draw(st.text(max_size=300) | st.sampled_from(["hearthnet://", "hearthnet://join/x", " "])
                      | st.builds(lambda t: "hearthnet://" + t, st.text(max_size=200)))
        value = {"invite": draw(_mostly(st.just(invite), json_values)),
                 "confirm": draw(_mostly(st.booleans(), json_values))}
    else:
        value = draw(json_values)
    raw = json.dumps(value).encode() if kind != 2 else _deep_text(value)
    return raw, value


@st.composite
def _mostly(draw: Any, usual: st.SearchStrategy, odd: st.SearchStrategy) -> Any:
    """`usual` four times in five."""
    return draw(usual) if draw(st.integers(0, 4)) else draw(odd)


def _deep_text(value: Any) -> bytes:
    text, closers = "", ""
    while isinstance(value, (list, dict)):
        if isinstance(value, list):
            text, closers, value = text + "[", "]" + closers, value[0]
        else:
            text, closers, value = text + '{"k":', "}" + closers, value["k"]
    return (text + json.dumps(value) + closers).encode()


@st.composite
def requests(draw: Any, node: Node, peer: bool) -> tuple[str, str, bytes | None, dict[str, str]]:
    routes = PEER_ROUTES if peer else LOCAL_ROUTES
    if draw(st.integers(0, 4)):
        method, path = draw(st.sampled_from(routes))
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
        path = draw(st.sampled_from([p for _, p in routes] + ["/x", "/"]))
    if path in ("/api/v1/traces", "/api/v1/logs"):
        query = draw(st.dictionaries(st.sampled_from(["n", "level", "component", "capability"]),
                                     st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=12)
                                     | st.sampled_from(["-1", "99999999999", "1e9", ""]), max_size=3))
        path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    raw, value = draw(bodies(node.cid, path))
    headers: dict[str, str] = {}
    signer = draw(st.sampled_from([None, STRANGER, node.kp, node.kp]))
    if signer is not None:
        cap = ROUTE_CAPS.get(path.split("?")[0]) or draw(st.sampled_from([c for c in CAPS if c]))
        try:
            headers = sign_request(signer, node.cid, cap, "1.0", raw or b"", to=node.kp.node_id_full)
        except Exception:  # noqa: BLE001  a name or version it refuses: sent unsigned
            headers = {}
        if path == "/bus/v1/call" or draw(st.booleans()):
            headers["X-HearthNet-Capability"] = headers.get("X-HearthNet-Capability") or cap
    elif path == "/bus/v1/call":
        headers["X-HearthNet-Capability"] = draw(st.sampled_from(CAPS))
    extra = draw(st.dictionaries(st.sampled_from(HEADERS), header_text, max_size=3)) if draw(st.booleans()) else {}
    for name, v in extra.items():
        if name == "Authorization" and not peer and draw(st.booleans()):
            continue  # mostly keep the owner's token, so the handlers behind it are reached
        headers[name] = v
    return method, path, raw, headers


def _send(node: Node, req: tuple[str, str, bytes | None, dict[str, str]], peer: bool) -> tuple[int, bytes]:
    method, path, raw, headers = req
    return node.request(path, method, raw if raw is not None else b"", headers, timeout=60, peer=peer)


@given(st.data())
def test_local_routes(node, data):
    req = data.draw(requests(node, peer=False))
    status, body = _send(node, req, peer=False)
    event(f"{req[1].split('?')[0]} {status}")  # --hypothesis-show-statistics: what was reached
    _check(status, body, req[:2])
    if req[1] == RENAME and req[0] == "POST" and status == 200:
        node.renames += json.loads(body)["restarted"] == ["discovery"]
    assert not (req[1] == JOIN and status == 200 and json.loads(body).get("restarting")), body


@given(st.data())
def test_peer_routes(node, data):
    req = data.draw(requests(node, peer=True))
    status, body = _send(node, req, peer=True)
    event(f"{req[1].split('?')[0]} {status}")
    _check(status, body, req[:2])


DEEP_JSON = [("list", 1000), ("dict", 1000), ("list", 100_000)]


@pytest.mark.parametrize("peer,path", [(False, "/bus/v1/call"), (True, "/bus/v1/call"), (True, "/sync/v1/ids"),
                                       (True, "/sync/v1/events"), (True, "/sync/v1/pull"),
                                       (True, "/sync/v1/digest")])
@pytest.mark.parametrize("kind,depth", DEEP_JSON)
def test_deep_json_bodies(node, peer, path, kind, depth):
    raw = _deep_text(nest(depth, kind))
    try:
        answer = node.request(path, "POST", raw, {"X-HearthNet-Capability": "community.log.heads"}, peer=peer,
                              timeout=60)
    except (ssl.SSLError, ConnectionError) as exc:
        # The peer port refuses an unsigned request from its headers and closes the
        # connection unread: a client still sending a large body may see that first.
        assert peer and len(raw) > 64 * 1024, exc
        return
    _check(*answer, (path, depth))


@pytest.mark.parametrize("peer,path", [(False, "/bus/v1/call"), (True, "/bus/v1/call"), (True, "/sync/v1/events")])
def test_bodies_just_over_16_mib(node, peer, path):
    """The local API reads and refuses it (413); the peer port refuses an unsigned request
    from its headers and closes the connection without reading the body at all."""
    raw = b'{"input":"' + b"x" * (16 * 1024 * 1024) + b'"}'
    try:
        status, data = node.request(path, "POST", raw, {"X-HearthNet-Capability": "community.log.heads"},
                                    peer=peer, timeout=120)
    except (ssl.SSLError, ConnectionError) as exc:
        assert peer, exc  # only the peer port may hang up mid-body
        return
    _check(status, data, path)
    assert status == (401 if peer else 413)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01T00:00:00Z",
                                   "", "now"])
@pytest.mark.parametrize("signer", ["stranger", "self"])
def test_bad_timestamps(node, stamp, signer):
    kp = STRANGER if signer == "stranger" else node.kp
    body = json.dumps({"community_id": node.cid}).encode()
    headers = sign_request(kp, node.cid, SYNC_IDS, "1.0", body, to=node.kp.node_id_full)
    headers["X-HearthNet-Timestamp"] = stamp
    status, data = node.request("/sync/v1/ids", "POST", body, headers, peer=True)
    _check(status, data, stamp)
    assert status == 400


def test_zz_workers_still_healthy(node):
    """Last in the module: the node survived everything above; the only restarts are the
    discovery worker's, one for each rename that was accepted."""
    healthy_before = {n for n, (healthy, _) in node.before.items() if healthy}

    def all_back() -> dict[str, tuple[bool, int]] | None:
        now = _workers(node)
        return now if healthy_before <= {n for n, (h, _) in now.items() if h} else None

    after = wait_for(all_back, 30, 0.5, message=lambda: f"every worker healthy again: {_workers(node)}")
    expected = {n: r + (node.renames if n == "discovery" else 0) for n, (_, r) in node.before.items()}
    assert {n: r for n, (_, r) in after.items() if n in node.before} == expected


def test_zz_gateway_log_has_no_traceback(node):
    log = Path(node.log_dir / "gateway.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, [line[:400] for line in log.splitlines() if "Traceback" in line][:3]
