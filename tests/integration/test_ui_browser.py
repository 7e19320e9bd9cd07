"""The Gradio UI in a real browser (issue 10, point 4): Playwright drives Debian's
chromium (Playwright's own browser download is not available) against real nodes started
WITH their UI worker. Every request the page makes is recorded; anything that would
leave 127.0.0.1 is blocked and recorded, and the tests assert there was none and that no
request failed: the UI must work with the internet gone. Each test leaves a screenshot
in tests/artifacts/ (not committed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearthnet.testing.browser import TABS, RequestLog, UiNode, browser_missing, launch_chromium
from hearthnet.testing.browser import UI_WORKERS as WORKERS
from hearthnet.testing.nodes import join_by_invite
from hearthnet.testing.waiting import wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 30_000


@pytest.fixture
def make_ui_node(tmp_path):
    nodes: list[UiNode] = []

    def make(name: str) -> UiNode:
        node = UiNode(tmp_path / f"{name}{len(nodes)}", name)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.cleanup()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


def open_page(browser: Any, node: UiNode, width: int = 1280) -> tuple[Any, RequestLog]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    reqs = RequestLog()
    reqs.watch(page)
    # not "networkidle": the live-refresh timer ticks every second for as long as the page is open
    page.goto(node.ui_url, wait_until="load")
    page.get_by_text("HearthNet ·").first.wait_for()
    return page, reqs


def tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def fill(page: Any, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def assert_offline_clean(reqs: RequestLog) -> None:
    assert reqs.outside == [], f"requests that tried to leave 127.0.0.1: {reqs.outside}"
    assert reqs.failed == [], f"failed requests: {reqs.failed}"


def test_every_tab_loads_with_no_request_leaving_the_machine(make_ui_node, browser) -> None:
    node = make_ui_node("solo")
    node.init()
    node.start(wait_workers=WORKERS)
    page, reqs = open_page(browser, node)
    for name, element in TABS.items():
        tab(page, name)
        page.locator(f"#{element}").wait_for()
        page.wait_for_timeout(1500)  # the tab's own load event has run
        shot(page, f"tab-{name.lower()}")
    # the detector (test nodes probe nothing outside, so: online) and no alerts yet; a node
    # without those workers says how to enable them (tests/unit/ui)
    tab(page, "Emergency")
    page.locator("#emergency-refresh").click()
    page.get_by_text("Internet online").first.wait_for()
    page.get_by_text("No alerts.").first.wait_for()
    # phone width: the tabs are still reachable
    phone, phone_reqs = open_page(browser, node, width=390)
    tab(phone, "Market")
    shot(phone, "phone-market")
    assert len(reqs.requests) > 5, reqs.requests
    assert_offline_clean(reqs)
    assert_offline_clean(phone_reqs)
    assert "Traceback" not in page.content()


@pytest.fixture
def pair(make_ui_node):
    """alice (founder) and bob (joined by invite), each with its UI, peered both ways."""
    a, b = make_ui_node("alice"), make_ui_node("bob")
    a.init()
    a.start(wait_workers=WORKERS)
    join_by_invite(a, b)
    b.start(wait_workers=WORKERS)
    a.peer_add(b)
    b.peer_add(a)
    ids = {n.name: n.api("/api/v1/status")["node"]["node_id"] for n in (a, b)}
    wait_for(lambda: any(c["name"] == "chat.deliver" and not c["local"]
                         for c in a.api("/api/v1/capabilities")["capabilities"]), 60,
             message="alice sees bob's chat.deliver")
    return a, b, ids


def choose_peer(page: Any) -> None:
    """The first (here: the only) other member in the peer list."""
    page.locator("#chat-refresh").click()
    page.locator("#chat-peer label").first.click()


def test_chat_between_two_nodes_market_post_and_file_round_trip(pair, browser, tmp_path) -> None:
    a, b, ids = pair
    pa, reqs_a = open_page(browser, a)
    pb, reqs_b = open_page(browser, b)

    # --- chat: an empty message is refused on the page, nothing sent
    tab(pa, "Chat")
    choose_peer(pa)
    pa.locator("#chat-send").click()
    pa.get_by_text("The message is empty").first.wait_for()
    assert a.call("chat.history", {"params": {}, "input": {}})[1]["output"]["messages"] == []
    fill(pa, "chat-text", "hello bob, from alice's browser")
    pa.locator("#chat-send").click()
    pa.get_by_text("Sent (").first.wait_for()
    tab(pb, "Chat")
    choose_peer(pb)
    pb.locator("#chat-thread").get_by_text("hello bob, from alice's browser").wait_for()
    shot(pb, "chat-bob")

    # --- market: a post on alice's page shows on bob's board
    tab(pa, "Market")
    pa.get_by_text("New post").click()
    fill(pa, "market-title", "Generator to lend")
    fill(pa, "market-body", "petrol, 2 kW, ask at number 12")
    pa.locator("#market-post").click()
    pa.get_by_text("Posted (").first.wait_for()
    tab(pb, "Market")
    wait_for(lambda: (pb.locator("#market-refresh").click(), "Generator to lend" in pb.locator("#market-board").inner_text())[1],
             30, 1, message="bob's board shows alice's post")
    shot(pb, "market-bob")

    # --- files: upload on alice's page, download it on bob's page by CID
    upload = tmp_path / "water-plan.txt"
    upload.write_text("boil water for one minute\n" * 100)
    tab(pa, "Files")
    pa.locator("#files-upload input[type=file]").set_input_files(str(upload))
    pa.locator("#files-add").click()
    pa.get_by_text("Added water-plan.txt").first.wait_for()
    notice = pa.locator("#files-notice").inner_text()
    cid = notice.split("`")[1] if "`" in notice else notice.rsplit(" ", 1)[-1]
    assert cid.startswith("blake3:"), notice
    shot(pa, "files-alice")
    tab(pb, "Files")
    fill(pb, "files-cid", cid)
    with pb.expect_download() as dl:
        pb.locator("#files-get").click()
        pb.get_by_text("Fetched water-plan.txt").first.wait_for()
        pb.locator("#files-out a").first.click()
    saved = tmp_path / "downloaded.txt"
    dl.value.save_as(saved)
    assert saved.read_bytes() == upload.read_bytes()
    shot(pb, "files-bob")

    # --- mesh: bob is a peer on alice's page, found by a manual `peer add`
    tab(pa, "Mesh")
    pa.locator("#mesh-refresh").click()
    pa.locator("#mesh-peers").get_by_text(ids["bob"].removeprefix("ed25519:")[:10]).first.wait_for()
    shot(pa, "mesh-alice")
    for reqs in (reqs_a, reqs_b):
        assert_offline_clean(reqs)


def test_an_alert_and_its_acknowledgement_appear_on_the_other_node(pair, browser) -> None:
    a, b, ids = pair
    sent = a.cli_json("alert", "send", "--headline", "River above 7 m at the bridge", "--exercise",
                      "--instruction", "Leave the lower town by the dyke road")
    pa, reqs_a = open_page(browser, a)
    pb, reqs_b = open_page(browser, b)
    tab(pb, "Emergency")
    wait_for(lambda: (pb.locator("#emergency-refresh").click(),
                      "River above 7 m" in pb.locator("#emergency-alerts").inner_text())[1],
             60, 1, message="bob's page shows alice's alert")
    assert "EXERCISE" in pb.locator("#emergency-alerts").inner_text()
    # bob answers from his browser: need help, with a note
    pb.locator("#emergency-ack").click()
    pb.get_by_text("Give the alert's id first").first.wait_for()  # nothing sent without an id
    fill(pb, "emergency-alert-id", sent["event_id"])
    pb.locator("#emergency-ack-status label", has_text="need_help").click()
    fill(pb, "emergency-note", "grandmother needs a lift")
    pb.locator("#emergency-ack").click()
    pb.get_by_text("Acknowledged.").first.wait_for()
    shot(pb, "emergency-bob")
    # alice's page: the roll-up names bob under need help, nobody left to knock on
    tab(pa, "Emergency")

    def rolled_up() -> bool:
        pa.locator("#emergency-refresh").click()
        text = pa.locator("#emergency-alerts").inner_text()
        return "need help 1" in text and "need help:" in text and "not heard from 0" in text

    wait_for(rolled_up, 60, 1, message="alice's page shows bob's acknowledgement")
    shot(pa, "emergency-alice")
    (alert,) = a.cli_json("alert", "ls")["alerts"]
    assert [p["node_id"] for p in alert["rollup"]["need_help"]] == [ids["bob"]]
    for reqs in (reqs_a, reqs_b):
        assert_offline_clean(reqs)


def test_a_running_node_joins_from_its_settings_tab_by_an_invite_made_on_another(make_ui_node, browser) -> None:
    """The second node runs as `scripts/node` leaves it (its own one-member community);
    its owner renames it, then joins the founder's community from its own Settings tab."""
    a, b = make_ui_node("founder"), make_ui_node("joiner")
    for n in (a, b):
        n.init()
        n.start(wait_workers=WORKERS)
    a_status = a.api("/api/v1/status")
    b_id, b_old = b.api("/api/v1/status")["node"]["node_id"], b.api("/api/v1/status")["community"]["community_id"]
    device_text = b.cli_json("id")["id_text"]  # what the new device shows its inviter
    pa, reqs_a = open_page(browser, a)
    pb, reqs_b = open_page(browser, b)

    # the joiner's owner renames it from the page: the node's signed manifest carries it
    tab(pb, "Settings")
    fill(pb, "settings-name", "   ")
    pb.locator("#settings-rename").click()
    pb.get_by_text("Type the new name first").first.wait_for()
    fill(pb, "settings-name", "Joiner's porch")
    pb.locator("#settings-rename").click()
    pb.get_by_text("Renamed to").first.wait_for()
    pb.locator("#settings-identity").get_by_text("Joiner's porch").wait_for()
    assert b.api("/manifest")["display_name"] == "Joiner's porch"
    # bad pastes: a clear message, nothing sent, no Join offered
    pb.locator("#settings-join").click()
    pb.get_by_text("Paste an invite first").first.wait_for()
    fill(pb, "settings-join-text", "hearthnet-invite://not-an-invite")
    pb.locator("#settings-join").click()
    pb.get_by_text("This invite cannot be used").first.wait_for()
    assert not pb.locator("#settings-join-confirm").is_visible()

    # the founder invites the joiner's device from its Settings tab: invite text + QR code
    tab(pa, "Settings")
    fill(pa, "settings-invitee", device_text)
    pa.locator("#settings-invite").click()
    pa.get_by_text("Invite created").first.wait_for()
    pa.locator("#settings-qr img").first.wait_for()
    invite = pa.locator("#settings-invite-text textarea, #settings-invite-text input").first.input_value()
    shot(pa, "settings-invite")
    assert invite.startswith("hearthnet"), invite

    # the joiner pastes it, checks it (the preview names the community), joins
    fill(pb, "settings-join-text", invite)
    pb.locator("#settings-join").click()
    pb.get_by_text("A valid invite to").first.wait_for()
    assert a_status["community"]["name"] in pb.locator("#settings-join-notice").inner_text()
    shot(pb, "settings-join-preview")
    pb.locator("#settings-join-confirm").click()
    pb.get_by_text("the node is restarting").first.wait_for()
    shot(pb, "settings-joined")

    # the joiner restarts into the founder's community and is a member there
    def joined() -> bool:
        try:
            return b.api("/api/v1/status", timeout=5)["community"]["community_id"] == a_status["community"]["community_id"]
        except (OSError, ValueError, KeyError):
            return False

    wait_for(joined, 90, 0.5, message="the joiner's status shows the founder's community")
    b.wait_healthy(WORKERS)
    assert (b.root / "data" / "hearthnet" / "communities" / b_old).is_dir()  # its old community is kept
    tab(pa, "Mesh")
    pa.locator("#mesh-refresh").click()
    pa.locator("#mesh-members").get_by_text(b_id.removeprefix("ed25519:")[:10]).first.wait_for()
    shot(pa, "mesh-joined")
    wait_for(b.ui_answers, 90, 0.5, message="the joiner's UI answers again")
    pb.reload(wait_until="load")
    pb.get_by_text(f"HearthNet · {a_status['community']['name']}").first.wait_for()
    assert "Traceback" not in pa.content() + pb.content()
    assert_offline_clean(reqs_a)
    assert reqs_b.outside == []  # (its page lost the node while it restarted: failed requests are expected)


ASK_WORKERS = WORKERS + ("llm", "embedding", "rag")
DOC = """# Flood plan for Mill Street

## Drinking water

When the tap water is contaminated after a flood, boil drinking water at a rolling boil for
at least one minute before you drink it or cook with it.

## Shelter

The emergency shelter is the gym of the primary school on Mill Road.
"""


def test_ask_streams_an_answer_with_sources_from_the_tiny_model(make_ui_node, browser, tiny_gguf,
                                                                tmp_path) -> None:
    n = make_ui_node("asker")
    n.init()
    n.add_config(f'[[llm.backends]]\nname = "llama_cpp"\nmodel = "tiny"\nmodel_path = "{tiny_gguf}"\n'
                 'ctx = 16384\n')
    n.env.update({"HEARTHNET_RAG_RELEVANCE_THRESHOLD": "0.3", "HEARTHNET_EMBEDDING_MODEL": "all-MiniLM-L6-v2"})
    n.start(wait_workers=ASK_WORKERS)
    wait_for(lambda: {"rag.ask", "rag.ingest", "llm.chat", "embed.text"}
             <= {c["name"] for c in n.api("/api/v1/capabilities")["capabilities"]}, 60,
             message="rag.ask, rag.ingest, llm.chat and embed.text offered")
    doc = tmp_path / "flood-plan.md"
    doc.write_text(DOC)
    n.cli_json("rag", "ingest", str(doc), "--corpus", "mill-street", timeout=300)
    page, reqs = open_page(browser, n)
    tab(page, "Ask")
    fill(page, "ask-question", "How long should I boil drinking water after a flood?")
    fill(page, "ask-corpus", "mill-street")
    page.locator("#ask-send").click()
    page.locator("#ask-notice").get_by_text("Answered by this node").wait_for(timeout=120_000)
    page.locator("#ask-sources").get_by_text("Flood plan").first.wait_for()
    assert page.locator("#ask-answer").inner_text().strip()  # the tiny model's words mean nothing
    shot(page, "ask")
    assert_offline_clean(reqs)
