"""hearthnet/transport/aiohttp_tls.py: aiohttp's import-time client contexts without their
CA bundles, and nothing about verification or pinning changes."""
from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import pytest
from aiohttp import connector, web

from hearthnet.identity.keys import generate
from hearthnet.transport import aiohttp_tls
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.tls import ensure_tls_identity, server_ssl_context
from tests.unit.transport.peer_server import running_peer


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """aiohttp's contexts replaced for this test only (monkeypatch puts the originals back)."""
    for name in aiohttp_tls._ATTRS:
        monkeypatch.setattr(connector, name, getattr(connector, name))
    assert aiohttp_tls.release_ca_stores() is True
    return connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED


def test_the_replacements_hold_no_ca_and_keep_their_modes(released: Any) -> None:
    verified, unverified = released
    assert isinstance(verified, aiohttp_tls.LazyCaContext)
    assert (verified.verify_mode, verified.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert (unverified.verify_mode, unverified.check_hostname) == (ssl.CERT_NONE, False)
    assert verified.cert_store_stats()["x509_ca"] == unverified.cert_store_stats()["x509_ca"] == 0


def test_a_verified_request_still_verifies_and_a_pinned_call_still_works(released: Any, tmp_path: Any) -> None:
    verified, _ = released
    ident = ensure_tls_identity(generate(), tmp_path / "self-signed", "127.0.0.1")
    system_cas = ssl.create_default_context().cert_store_stats()["x509_ca"]

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(ident)).start()
        try:
            async with aiohttp.ClientSession() as s:  # ssl=True: aiohttp's verified context
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await s.get(f"https://127.0.0.1:{runner.addresses[0][1]}/")
        finally:
            await runner.cleanup()
        kp = generate()
        async with running_peer(tmp_path / "peer", kp, kp.node_id_full) as peer:
            async with PeerClient(generate(), kp.node_id_full, PinStore(tmp_path / "pins.json"), timeout=5) as c:
                reply = await c.call(kp.node_id_full, ("127.0.0.1", peer.port), "llm.chat", "1.0", {})
                assert "output" in reply  # pinned (aiohttp.Fingerprint): the unverified context

    asyncio.run(asyncio.wait_for(main(), 30))
    assert verified.cert_store_stats()["x509_ca"] == system_cas  # loaded on the first handshake


def test_nothing_is_replaced_when_aiohttp_has_no_such_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(connector, "_SSL_CONTEXT_VERIFIED")
    assert aiohttp_tls.release_ca_stores() is False
