"""Request helpers shared by the local API (app.py) and the peer API (peer_api.py).

They live here, below both, so that peer_api never imports app (which builds the peer
app from peer_api's handlers): no import cycle between the two.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from hearthnet.errors import HearthNetError


def dumps(obj: Any) -> str:
    """Compact JSON with UTF-8 kept as is (what every gateway reply body is)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def signed_json_response(kp: Any, request_id: str, status: int, body: Any,
                         headers: dict[str, str] | None = None) -> web.Response:
    """A peer API reply signed by `kp`: serialised once (signing.signed_json_reply), the
    wire body in canonical form."""
    from hearthnet.transport.signing import signed_json_reply

    raw, signed = signed_json_reply(kp, request_id, status, body)
    return web.Response(body=raw, status=status, headers={**(headers or {}), **signed},
                        content_type="application/json", charset="utf-8")


def capability_headers(request: web.Request) -> tuple[str, str]:
    """(capability, version) of a `POST /bus/v1/call`; version defaults to 1.0."""
    cap = request.headers.get("X-HearthNet-Capability", "").strip()
    version = request.headers.get("X-HearthNet-Capability-Version", "1.0").strip() or "1.0"
    if not cap:
        raise HearthNetError("bad_request", "missing X-HearthNet-Capability header")
    return cap, version


async def read_json(request: web.Request) -> Any:
    """A local API request body: {} when empty, bad_request when not (bounded) JSON."""
    from hearthnet import jsonbound

    raw = await request.read()
    if not raw:
        return {}
    try:
        return jsonbound.loads(raw)
    except ValueError as exc:
        raise HearthNetError("bad_request", f"request body is not JSON: {exc}") from None
