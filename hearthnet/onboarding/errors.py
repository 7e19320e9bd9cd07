"""OnboardingError: why an invite could not be issued or redeemed (spec §6.4)."""
from __future__ import annotations

from hearthnet.errors import HearthNetError

# code -> what it means (also the default message)
CODES: dict[str, str] = {
    "invite_invalid": "the invite is malformed or its signature does not verify",
    "invite_expired": "the invite has expired",
    "invitee_mismatch": "the invite is addressed to another node",
    "bootstrap_unreachable": "no bootstrap endpoint of the invite answered",
    "community_manifest_invalid": "the community manifest served by the bootstrap node does not verify",
    "sync_failed": "the community's event log could not be fetched or our join could not be delivered",
    "already_member": "this node is already a member of that community",
    "other_community": "this node already belongs to another community",
}


class OnboardingError(HearthNetError):
    """An invite could not be issued or redeemed; `code` says why (see CODES)."""

    code = "invite_invalid"

    def __init__(self, code: str | None = None, message: str = "", **details: object) -> None:
        if code is not None and code not in CODES:
            raise ValueError(f"unknown onboarding error code {code!r}")
        super().__init__(code, message or CODES[code or self.code], **details)
