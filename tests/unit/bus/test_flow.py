"""The credit logic of stream flow control (hearthnet/bus/flow.py), without sockets."""
from __future__ import annotations

import asyncio

import pytest

from hearthnet.bus import protocol as P
from hearthnet.bus.flow import Acker, BrokerWindow, Credit
from hearthnet.constants import STREAM_ACK_EVERY_FRAMES, STREAM_WINDOW_FRAMES
from hearthnet.errors import HearthNetError


def run(coro):
    return asyncio.run(coro)


def test_the_contract_window_and_ack_interval():
    assert (STREAM_WINDOW_FRAMES, STREAM_ACK_EVERY_FRAMES) == (16, 8)


def test_a_producer_waits_when_the_window_is_full_and_an_ack_reopens_it():
    async def go():
        credit = Credit(window=4)
        for _ in range(4):
            await credit.wait(stall=5)
            credit.sent_one()
        blocked = asyncio.ensure_future(credit.wait(stall=5))
        await asyncio.sleep(0)
        was_blocked = not blocked.done()
        credit.ack(2)
        await blocked
        return was_blocked, credit.open(), credit.sent - credit.acked

    was_blocked, is_open, in_flight = run(go())
    assert was_blocked and is_open and in_flight == 2


@pytest.mark.parametrize("upto", [0, -1, 5, True, "3", None, 2.0])
def test_stale_impossible_or_malformed_acks_are_ignored(upto):
    credit = Credit(window=4)
    for _ in range(4):
        credit.sent_one()
    credit.ack(3)
    credit.ack(upto)  # 0/-1/2.0 stale or not ints, 5 more than was sent
    assert credit.acked == 3


def test_a_reader_that_consumes_nothing_for_the_stall_timeout_ends_the_stream():
    async def go():
        credit = Credit(window=1)
        credit.sent_one()
        with pytest.raises(HearthNetError) as err:
            await credit.wait(stall=0.05)
        return err.value

    err = run(go())
    assert err.code == "timeout" and "took no frame" in err.message


def test_a_slow_reader_is_never_cut_each_ack_restarts_the_stall_clock():
    """Acks arrive every 0.03 s, the stall timeout is 0.05 s: 20 rounds through a full
    window (0.6 s in all, far over the stall timeout) and never a timeout."""
    async def go():
        credit = Credit(window=2)

        async def reader():
            for upto in range(1, 41):
                await asyncio.sleep(0.03)
                credit.ack(upto)

        task = asyncio.ensure_future(reader())
        for _ in range(40):
            await credit.wait(stall=0.05)
            credit.sent_one()
        await task
        return credit.sent

    assert run(go()) == 40


def test_the_consumer_acks_every_eight_frames_it_has_consumed():
    acker = Acker(clock=lambda: 0.0)
    acks = [acker.consumed() for _ in range(20)]
    assert [a for a in acks if a is not None] == [8, 16]
    assert acks[7] == 8 and acks[15] == 16


def test_a_consumer_that_spends_long_over_each_frame_acks_each_one():
    """Fast frames are acked by eights; once a frame took longer than the ack delay, the
    frames taken after it are acked at once, so the producer's stall clock restarts."""
    now = [0.0]
    acker = Acker(max_delay=5.0, clock=lambda: now[0])
    acks = []
    for step in [0.1] * 3 + [6.0, 6.0, 0.1, 0.1]:
        now[0] += step
        acks.append(acker.consumed())
    assert acks == [None, None, None, 4, 5, None, None]


def test_the_ack_delay_stays_well_inside_the_stall_timeout(monkeypatch):
    from hearthnet.bus import flow

    assert Acker().max_delay == 5.0  # the spec's ack timeout, with the default 60 s stall
    monkeypatch.setattr(flow, "_stall_seconds", 2.0)
    assert Acker().max_delay == 0.5


def test_the_broker_window_counts_the_current_worker_and_relays_its_own_count():
    w = BrokerWindow()
    w.dispatched()
    w.forwarded = STREAM_WINDOW_FRAMES
    assert w.full()
    assert w.ack(8) == 8 and not w.full()
    assert w.ack(8) is None and w.ack(99) is None and w.ack("8") is None  # nothing new / impossible
    # The worker dies after 16 frames; the call goes to another worker, which counts from 0.
    w.dispatched()
    assert w.in_flight() == 0
    assert w.ack(12) is None  # consumed frames of the first worker: nothing for the second
    w.forwarded += STREAM_WINDOW_FRAMES
    assert w.full()
    assert w.ack(24) == 8 and w.in_flight() == STREAM_WINDOW_FRAMES - 8


@pytest.mark.parametrize("msg,problem", [
    ({"t": "ack", "id": 1, "upto": 8}, None),
    ({"t": "ack", "id": "c-1", "upto": 16}, None),
    ({"t": "ack", "id": [1], "upto": 8}, "id is not a call id"),
    ({"t": "ack", "id": 1}, "upto is not a frame count"),
    ({"t": "ack", "id": 1, "upto": 0}, "upto is not a frame count"),
    ({"t": "ack", "id": 1, "upto": True}, "upto is not a frame count"),
    ({"t": "ack", "id": 1, "upto": 2**64}, "upto is not a frame count"),
    ({"t": "ack", "id": 1, "upto": "8"}, "upto is not a frame count"),
])
def test_acks_on_the_clients_socket_are_checked(msg, problem):
    assert P.client_problem(msg) == problem


def test_a_worker_may_not_send_acks():
    assert P.worker_problem({"t": "ack", "id": 1, "upto": 8}) is not None
