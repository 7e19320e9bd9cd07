"""The https probe does a real TLS handshake with chain and hostname verification: aiohttp
HTTPS servers on 127.0.0.1 with certificates from a test CA (tests/unit/emergency/tlscerts.py).
Trusted via `emergency.https_ca_file` → ok; the system store (our CA is not in it), a
self-signed certificate, a certificate for another name, an expired one, a plain-HTTP
"portal" on the TLS port → failed; a server that never finishes the handshake is cut at the
probe's timeout."""
from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hearthnet.config import load_config
from hearthnet.emergency.probes import parse_target, run_round, tls_context
from hearthnet.errors import ConfigError
from hearthnet.services.emergency import EmergencyService
from hearthnet.testing.tlscerts import Pki, make_pki, server_context

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def _https(ctx: ssl.SSLContext | None) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=204 if request.path == "/generate_204" else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def test_tls_context_verifies_chain_and_hostname(pki: Pki, tmp_path: Path) -> None:
    for ctx in (tls_context(), tls_context(pki.ca_file), tls_context(str(pki.ca_file))):
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is True
    assert tls_context(pki.ca_file).get_ca_certs()[0]["subject"] == ((("commonName", "HearthNet test CA"),),)
    with pytest.raises(OSError):
        tls_context(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        tls_context(junk)


def test_https_probe_trusts_only_verified_servers(pki: Pki) -> None:
    good = pki.server("good")
    others = {"selfsigned": pki.server("selfsigned", self_signed=True),
              "othername": pki.server("othername", ("portal.example", "10.9.9.9")),
              "expired": pki.server("expired", expired=True)}

    async def main() -> dict[str, Any]:
        runners: list[web.AppRunner] = []
        ports: dict[str, int] = {}
        try:
            for label, (cert, key) in {"good": good, **others}.items():
                runner, ports[label] = await _https(server_context(cert, key))
                runners.append(runner)
            runner, ports["plain"] = await _https(None)  # an HTTP answer where TLS is expected
            runners.append(runner)
            ours, system = tls_context(pki.ca_file), tls_context()
            g = ports["good"]
            trusted = [parse_target(t) for t in (
                f"https:https://localhost:{g}/", f"https:https://127.0.0.1:{g}/",
                f"http204:https://localhost:{g}/generate_204",
                *(f"https:https://localhost:{ports[k]}/" for k in (*others, "plain")))]
            return {"ours": await run_round(trusted, TIMEOUT, tls=ours),
                    "system": await run_round(trusted[:1], TIMEOUT, tls=system),
                    "default": await run_round(trusted[:1], TIMEOUT)}
        finally:
            for runner in runners:
                await runner.cleanup()

    r = asyncio.run(main())
    ours = r["ours"]
    assert [x.ok for x in ours] == [True, True, True, False, False, False, False], ours
    selfsigned, othername, expired, plain = ours[3:]
    assert "untrusted certificate" in selfsigned.error and "self-signed" in selfsigned.error
    assert "untrusted certificate" in othername.error and "Hostname mismatch" in othername.error
    assert "untrusted certificate" in expired.error and "expired" in expired.error
    assert plain.error.startswith("TLS handshake failed")
    # Our CA is not in the system store: without https_ca_file the same good server fails.
    for x in r["system"] + r["default"]:
        assert not x.ok and "untrusted certificate" in x.error, x


def test_a_stalled_handshake_is_cut_at_the_timeout(pki: Pki) -> None:
    async def main() -> list[Any]:
        # Accepts the TCP connection, reads the ClientHello, never answers it.
        async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            await asyncio.sleep(30)

        server = await asyncio.start_server(stall, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            probes = [parse_target(f"https:https://localhost:{port}/"),
                      parse_target(f"http204:https://localhost:{port}/generate_204")]
            return await run_round(probes, TIMEOUT, tls=tls_context(pki.ca_file))
        finally:
            server.close()

    r = asyncio.run(main())
    assert [x.error for x in r] == ["timeout", "timeout"]
    assert all(x.ms < 30_000 for x in r)  # cut, not waited for (the server stalls 30 s)


def test_ca_file_from_config_and_env(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_config(path, env={}).emergency.https_ca_file is None
    cfg = load_config(path, env={"HEARTHNET_EMERGENCY_HTTPS_CA_FILE": str(pki.ca_file)})
    assert cfg.emergency.https_ca_file == pki.ca_file
    assert load_config(path, env={"HEARTHNET_EMERGENCY_HTTPS_CA_FILE": ""}).emergency.https_ca_file is None
    path.write_text(f'[emergency]\nhttps_ca_file = "{pki.ca_file}"\n')
    assert load_config(path, env={}).emergency.https_ca_file == pki.ca_file
    path.write_text(f'[emergency]\nhttps_ca_file = "{tmp_path / "nope.pem"}"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert "emergency.https_ca_file" in exc.value.message


def test_the_service_probes_with_its_ca(pki: Pki) -> None:
    cert, key = pki.server("svc")

    async def main() -> tuple[list[Any], list[Any]]:
        runner, port = await _https(server_context(cert, key))
        try:
            probe = parse_target(f"https:https://localhost:{port}/")
            ours = EmergencyService([probe], tls=tls_context(pki.ca_file), timeout=TIMEOUT)
            system = EmergencyService([probe], timeout=TIMEOUT)
            await ours.tick()
            await system.tick()
            return ours.results, system.results
        finally:
            await runner.cleanup()

    ours, system = asyncio.run(main())
    assert ours[0].ok and not system[0].ok
