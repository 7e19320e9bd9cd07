"""The ledger's error type. Codes: db_corrupt (integrity or schema check failed; the file
is left untouched), bad_request, unauthorized, disk_full, invalid_signature, bad_snapshot,
not_initialised, internal_error."""
from __future__ import annotations

from hearthnet.errors import HearthNetError


class LedgerError(HearthNetError):
    """The community event log refused an operation or cannot be used."""

    code = "internal_error"
