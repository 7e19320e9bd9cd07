"""doctor's clock_sanity, mdns_socket and udp_multicast: bind/join on loopback only, and a
Date header from a local server (nothing leaves the machine)."""
from __future__ import annotations

import email.utils
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Iterator

import pytest

from hearthnet import doctor


def cfg(**discovery: object) -> SimpleNamespace:
    d = dict(mdns_enabled=True, udp_enabled=True, udp_multicast_group="239.255.42.42", udp_port=42431,
             interfaces=("lo",))
    d.update(discovery)
    return SimpleNamespace(discovery=SimpleNamespace(**d))


def ctx(**discovery: object) -> SimpleNamespace:
    return SimpleNamespace(cfg=cfg(**discovery))


def test_multicast_sockets_join_on_loopback() -> None:
    r = doctor.check_udp_multicast(ctx())
    assert r.ok is True and "239.255.42.42:42431" in r.detail and "lo" in r.detail
    r = doctor.check_mdns_socket(ctx())
    assert r.ok is True and "224.0.0.251:5353" in r.detail


def test_multicast_checks_skip_when_disabled_and_warn_without_interface() -> None:
    assert doctor.check_mdns_socket(ctx(mdns_enabled=False)).ok is None
    assert doctor.check_udp_multicast(ctx(udp_enabled=False)).ok is None
    r = doctor.check_udp_multicast(ctx(interfaces=("no-such-if0",)))
    assert r.ok is False and r.warning and "no-such-if0" in r.detail


class Skewed(BaseHTTPRequestHandler):
    skew = 0.0

    def do_HEAD(self) -> None:
        self.send_response(404)  # an error answer still carries the Date
        self.send_header("Date", email.utils.formatdate(time.time() + self.skew, usegmt=True))
        self.end_headers()

    def date_time_string(self, timestamp: float | None = None) -> str:  # the default Date header
        return email.utils.formatdate(time.time() + self.skew, usegmt=True)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = HTTPServer(("127.0.0.1", 0), Skewed)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


def test_clock_sanity_warns_over_sixty_seconds(server: str) -> None:
    Skewed.skew = 0.0
    r = doctor.clock_result([server])
    assert r.ok is True and "off by" in r.detail
    Skewed.skew = -120.0  # the peer is two minutes behind: we are ahead
    r = doctor.clock_result([server])
    assert r.ok is False and r.warning and "+12" in r.detail and "never corrected" in r.detail
    Skewed.skew = 0.0


def test_clock_sanity_skips_when_no_peer_answers() -> None:
    r = doctor.clock_result(["http://127.0.0.1:1/"])
    assert r.ok is None and "no peer answered" in r.detail
    assert doctor._peer_url("10.0.0.2:7080") == "https://10.0.0.2:7080/"
    assert doctor._peer_url(None) is None
