"""The peer port's body budget: how many bytes of request bodies all peer requests may
hold at once, in total and per sender.

The connection guard (guard.py) caps connections, and `peer_api.read_body` caps one body
at MAX_REQUEST_BYTES, but each admitted request used to buffer its whole body, so 512
connections × 16 MiB was the only bound on what the gateway held. Files move as series of
unary chunk-batch calls (issue 7), never as request bodies streamed into workers, so the
answer is to bound what the port buffers rather than to stream bodies through.

A request's `Hold` claims bytes as its body arrives (all of Content-Length at once when
the header is there, so a request that cannot fit is refused before a byte is read) and
keeps them until the request ends — its parsed body, the bus message and the reply are
made from those bytes, so they are bounded by a multiple of the same number (~6-8× in
the gateway, measured). A claim that does not fit
waits up to `wait_seconds` for others to finish, then fails with `capacity_exceeded`
(retry_after_ms). One sender may hold at most `per_sender` bytes, so one member cannot
starve the others.

Small bodies (≤ SMALL_BODY_BYTES) are always admitted and not counted against the budget:
they are bounded by the connection cap (512 × 64 KiB = 32 MiB at most), and a member's
ordinary call must never queue behind someone else's large upload.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from hearthnet.errors import HearthNetError

MiB = 1024 * 1024
DEFAULT_TOTAL_BYTES = 64 * MiB
SMALL_BODY_BYTES = 64 * 1024
WAIT_SECONDS = 5.0  # as long as a body may stall (peer_api.BODY_CHUNK_SECONDS)
RETRY_AFTER_MS = 1000
BODY_BUDGET = web.RequestKey("hearthnet.body_budget", "BodyBudget")  # the port's budget (peer middleware)
BODY_HOLD = web.RequestKey("hearthnet.body_hold", "Hold")  # this request's Hold, once it claimed bytes


@dataclass
class BudgetStats:
    held: int  # bytes counted against the budget now
    senders: int  # senders holding counted bytes now
    waiting: int  # claims waiting for room
    refused: int  # claims that got capacity_exceeded (or could never fit)
    peak: int  # the most bytes ever held at once
    total: int
    per_sender: int


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
LARGE_BUFFER_BYTES = 1024 * 1024


def return_large_buffers_to_os(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Have glibc map every allocation of `threshold` bytes or more on its own, so that a
    large body's buffers go back to the system when freed. By default glibc raises this
    threshold to the largest block freed (up to 32 MiB), after which 8 MiB bodies and
    their copies come from the heap, whose free holes it keeps: the gateway's memory then
    grew to about twice what the budget admits. False where this is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


class BodyBudget:
    def __init__(self, total: int = DEFAULT_TOTAL_BYTES, per_sender: int | None = None, *,
                 wait_seconds: float = WAIT_SECONDS, small: int = SMALL_BODY_BYTES) -> None:
        if total <= 0:
            raise ValueError("the body budget must be positive")
        self.total = total
        self.per_sender = min(total, per_sender if per_sender is not None else max(1, total // 4))
        self.wait_seconds, self.small = wait_seconds, small
        self.held = 0
        self._by_sender: Counter[str] = Counter()
        self._waiters: list[asyncio.Future[None]] = []
        self.refused = self.peak = 0

    @classmethod
    def from_mib(cls, total_mib: int, per_sender_mib: int) -> "BodyBudget":
        return cls(total_mib * MiB, per_sender_mib * MiB)

    def stats(self) -> BudgetStats:
        return BudgetStats(self.held, len(self._by_sender), len(self._waiters), self.refused,
                           self.peak, self.total, self.per_sender)

    def hold(self, sender: str) -> "Hold":
        """A new request's claim; call `release()` when the request ends (every path)."""
        return Hold(self, sender)

    # ---- accounting (Hold calls these) ---------------------------------------------------

    def _fits(self, sender: str, n: int) -> bool:
        return self.held + n <= self.total and self._by_sender[sender] + n <= self.per_sender

    async def _acquire(self, sender: str, n: int, deadline: float) -> None:
        # Over the sender's share waits like over the total: the sender's own requests
        # ending make room.
        while not self._fits(sender, n):
            left = deadline - time.monotonic()
            if left <= 0:
                self.refused += 1
                raise HearthNetError("capacity_exceeded",
                                     "the node is holding as many request bodies as it can; retry",
                                     retry_after_ms=RETRY_AFTER_MS)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout=left)
            except asyncio.TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.held += n
        self._by_sender[sender] += n
        self.peak = max(self.peak, self.held)

    def _release(self, sender: str, n: int) -> None:
        if n <= 0:
            return
        self.held -= n
        left = self._by_sender[sender] - n
        if left > 0:
            self._by_sender[sender] = left
        else:
            del self._by_sender[sender]
        # Wake every waiter; each checks again whether it fits now (no queue order: a
        # large claim waiting must not hold up smaller ones that fit).
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()


class Hold:
    """The bytes one request's body holds in a BodyBudget."""

    def __init__(self, budget: BodyBudget, sender: str) -> None:
        self.budget, self.sender = budget, sender
        self.size = 0  # bytes claimed, small or not
        self.counted = 0  # of those, counted against the budget
        self.released = False

    def can_ever_fit(self, n: int) -> bool:
        return self.size + n <= self.budget.small or \
            self.size + n <= min(self.budget.per_sender, self.budget.total)

    async def claim(self, n: int, wait: float | None = None) -> None:
        """Claim `n` more bytes. A body that stays small is never counted; once it grows
        beyond SMALL_BODY_BYTES all of it is. Waits up to `wait` (the budget's
        wait_seconds by default), then capacity_exceeded; bad_request (413) if this body
        could never fit (over the sender's share)."""
        if self.released:
            raise RuntimeError("claim on a released hold")
        target = self.size + n
        if target <= self.budget.small:
            self.size = target
            return
        if not self.can_ever_fit(n):
            self.budget.refused += 1
            raise HearthNetError("bad_request", f"request body of {target} bytes is over this node's "
                                 f"per-sender body budget ({self.budget.per_sender} bytes)")
        wait = self.budget.wait_seconds if wait is None else wait
        await self.budget._acquire(self.sender, target - self.counted, time.monotonic() + wait)
        self.size = self.counted = target

    def release(self) -> None:
        """Give back everything; idempotent."""
        if self.released:
            return
        self.released = True
        counted, self.counted = self.counted, 0
        self.budget._release(self.sender, counted)


async def serve_within(budget: BodyBudget, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Run one peer request with `budget` on it (`read_body` claims from it). A large
    reply, or one made from a counted body, is sent here, before the body's bytes are
    given back, and then dropped: aiohttp keeps a connection's last response until its
    next request, so on idle keep-alive connections every large reply stayed in memory
    (80 connections × 7 MiB). The bytes are given back on every path — an error,
    cancellation, the client gone."""
    request[BODY_BUDGET] = budget
    try:
        resp = await handler(request)
        hold = request.get(BODY_HOLD)
        body = resp.body if isinstance(resp, web.Response) else None
        large = isinstance(body, (bytes, bytearray)) and len(body) > budget.small
        del body
        if large or (hold is not None and hold.counted):
            await resp.prepare(request)
            await resp.write_eof()
            if isinstance(resp, web.Response):
                resp.body = None  # sent: nothing needs it any more
        return resp
    finally:
        hold = request.get(BODY_HOLD)
        if hold is not None:
            hold.release()
