"""One error vocabulary for every process: the contract's wire codes (CONTRACT §9),
their HTTP statuses, and the CLI exit codes (seed §6).

Anything that crosses a process boundary is a HearthNetError carrying a wire code.
The CLI's error boundary turns any HearthNetError into a plain message + exit code.
"""
from __future__ import annotations

from typing import Any

# Wire error code -> HTTP status (CONTRACT §9).
HTTP_STATUS: dict[str, int] = {
    "bad_request": 400,
    "schema_mismatch": 400,
    "invalid_signature": 401,
    "unauthorized": 401,
    "revoked": 403,
    "not_found": 404,
    "timeout": 408,
    "expired": 410,
    "invite_expired": 410,  # POST /sync/v1/admit (gateway/admit.py)
    # Joining by invite through the local API (gateway/node_settings.py): never a 500.
    "invite_invalid": 400,
    "invitee_mismatch": 403,
    "already_member": 409,
    "other_community": 409,
    "community_manifest_invalid": 502,
    "sync_failed": 502,
    "bootstrap_unreachable": 503,
    "rate_limited": 429,
    "capacity_exceeded": 429,
    "internal_error": 500,
    "not_implemented": 501,
    "partition": 503,
}

# CLI exit codes (seed §6).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_NODE = 3
EXIT_AUTH = 4
EXIT_CAPACITY = 5

# Wire error code -> CLI exit code. Documented in the README ("Exit codes").
EXIT_FOR_CODE: dict[str, int] = {
    "bad_request": EXIT_USAGE,
    "schema_mismatch": EXIT_USAGE,
    "invalid_signature": EXIT_AUTH,
    "unauthorized": EXIT_AUTH,
    "revoked": EXIT_AUTH,
    "expired": EXIT_AUTH,
    "capacity_exceeded": EXIT_CAPACITY,
    "rate_limited": EXIT_CAPACITY,
    "disk_full": EXIT_CAPACITY,
    "node_not_running": EXIT_NO_NODE,
    "user_abort": EXIT_USAGE,
    "usage": EXIT_USAGE,
    # Onboarding (hearthnet.onboarding.errors). A redeem that finds this node already in
    # the invite's community is a no-op and exits 0 without raising; `already_member` is
    # raised only when nothing could be done (e.g. an invite for an existing member).
    "invite_invalid": EXIT_AUTH,
    "invite_expired": EXIT_AUTH,
    "invitee_mismatch": EXIT_AUTH,
    "community_manifest_invalid": EXIT_AUTH,
    "bootstrap_unreachable": EXIT_ERROR,
    "sync_failed": EXIT_ERROR,
    "already_member": EXIT_ERROR,
    "other_community": EXIT_ERROR,
}


def exit_code_for(code: str) -> int:
    return EXIT_FOR_CODE.get(code, EXIT_ERROR)


def http_status_for(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


class HearthNetError(Exception):
    """Something went wrong; `code` is a wire error code or a local code."""

    code = "internal_error"

    def __init__(self, code: str | None = None, message: str = "", **details: Any) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.replace("_", " ")
        self.details = details
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.code)

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        body.update({k: v for k, v in self.details.items() if v is not None})
        return body

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> "HearthNetError":
        body = dict(body)
        code = str(body.pop("error", "internal_error"))
        message = str(body.pop("message", "") or "")
        return cls(code, message, **body)


class ConfigError(HearthNetError):
    """config.toml could not be read or has an invalid value."""

    code = "invalid_field"


class IdentityError(HearthNetError):
    """The device key is missing, unreadable or has unsafe permissions."""

    code = "keys_missing"


class NodeNotRunning(HearthNetError):
    """No node answers on this machine: start one with `hearthnet run`."""

    code = "node_not_running"


class UserAbort(HearthNetError):
    """Stopped at the user's request; nothing was changed."""

    code = "user_abort"
