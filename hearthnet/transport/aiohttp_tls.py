"""aiohttp's import-time client TLS contexts, without the CA bundles they load.

Importing aiohttp builds two client contexts (aiohttp/connector.py `_make_ssl_context`):
a verified one and an unverified one, and both load the system CA bundle, about 1.4 MiB
of the gateway's private memory together (bench/memory.py; README "Lean processes"). The
gateway never checks a certificate against public CAs: peers are pinned by fingerprint
(transport/client.py), and a pinned request is exactly what aiohttp serves from the
*unverified* context, whose CA store is never consulted (CERT_NONE). So:

- the unverified context is rebuilt with the same settings and no CA store;
- the verified one is rebuilt to load the system CAs on its first handshake, so a
  verified request, should one ever be made from this process, checks exactly as before.

If aiohttp stops having these module attributes, nothing is replaced (the memory is
simply not saved); tests/unit/transport/test_aiohttp_tls.py pins the behaviour.
"""
from __future__ import annotations

import gc
import ssl
import threading
from typing import Any

from hearthnet.process import trim_heap

_ATTRS = ("_SSL_CONTEXT_VERIFIED", "_SSL_CONTEXT_UNVERIFIED")


class LazyCaContext(ssl.SSLContext):
    """A verifying client context that loads the system CAs on its first handshake."""

    _hn_lock = threading.Lock()  # two event loops (main, local API thread) may race
    _hn_loaded = False

    def _hn_load(self) -> None:
        with self._hn_lock:
            if not self._hn_loaded:
                self.load_default_certs()
                self._hn_loaded = True

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._hn_load()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        self._hn_load()
        return super().wrap_socket(*args, **kwargs)


def _like(old: ssl.SSLContext, cls: type[ssl.SSLContext]) -> ssl.SSLContext:
    """A client context of class `cls` with `old`'s settings and an empty CA store."""
    new = cls(ssl.PROTOCOL_TLS_CLIENT)
    new.options = old.options
    new.minimum_version, new.maximum_version = old.minimum_version, old.maximum_version
    new.check_hostname = old.check_hostname  # before verify_mode: CERT_NONE needs it off
    new.verify_mode = old.verify_mode
    new.verify_flags = old.verify_flags
    if getattr(old, "keylog_filename", None):
        new.keylog_filename = old.keylog_filename
    new.set_alpn_protocols(["http/1.1"])  # what aiohttp sets on both
    return new


def release_ca_stores() -> bool:
    """Replace aiohttp's two import-time client contexts (see the module docstring) and
    hand the freed memory back to the system. False if aiohttp has no such contexts."""
    from aiohttp import connector

    if not all(isinstance(getattr(connector, a, None), ssl.SSLContext) for a in _ATTRS):
        return False
    verified, unverified = (getattr(connector, a) for a in _ATTRS)
    connector._SSL_CONTEXT_VERIFIED = _like(verified, LazyCaContext)
    connector._SSL_CONTEXT_UNVERIFIED = _like(unverified, ssl.SSLContext)
    del verified, unverified
    gc.collect()
    trim_heap()
    return True
