"""The clocks: ManualClock moves only when told and wakes sleepers in deadline order; sleep_or_stop ends on stop."""

from __future__ import annotations

import asyncio

import pytest

from core.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock, sleep_or_stop

pytestmark = pytest.mark.unit


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock) and isinstance(ManualClock(), Clock)
    assert isinstance(SYSTEM_CLOCK, SystemClock)


def test_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock(start_ms=1_000)
    assert (clock.now_ms(), clock.now_s(), clock.monotonic()) == (1_000, 1.0, 0.0)
    clock.advance(2.5)
    assert (clock.now_ms(), clock.now_s(), clock.monotonic()) == (3_500, 3.5, 2.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_many_small_advances_add_up_exactly() -> None:
    clock = ManualClock(start_ms=0)
    for _ in range(1000):
        clock.advance(0.001)
    assert clock.now_ms() == 1000 and clock.monotonic() == 1.0


async def test_sleep_returns_only_once_advanced_past_its_deadline() -> None:
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(10))
    await clock.sleeping()
    assert clock.sleepers == [10.0]
    clock.advance(9.999)
    await asyncio.sleep(0)
    assert not sleeper.done() and clock.sleepers == pytest.approx([0.001])
    clock.advance(0.001)  # exactly at the deadline
    await asyncio.wait_for(sleeper, 5)
    assert clock.sleepers == []


async def test_advance_wakes_every_passed_deadline_in_order() -> None:
    clock = ManualClock()
    woke: list[float] = []

    async def nap(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(seconds)

    naps = [asyncio.create_task(nap(s)) for s in (3.0, 1.0, 2.0, 60.0)]
    await clock.sleeping(4)
    assert clock.sleepers == [1.0, 2.0, 3.0, 60.0]
    clock.advance(5)
    await asyncio.gather(*naps[:3])
    assert woke == [1.0, 2.0, 3.0] and clock.sleepers == [55.0]
    naps[3].cancel()
    with pytest.raises(asyncio.CancelledError):
        await naps[3]
    assert clock.sleepers == []  # a cancelled sleep leaves no pending deadline behind


async def test_non_positive_sleep_returns_without_advancing() -> None:
    clock = ManualClock()
    await asyncio.wait_for(clock.sleep(0), 5)
    await asyncio.wait_for(clock.sleep(-1), 5)
    assert clock.monotonic() == 0.0 and clock.sleepers == []


async def test_drive_jumps_through_pauses() -> None:
    clock = ManualClock(start_ms=0)

    async def retrying() -> int:
        for pause in (0.5, 2.0, 7.5):
            await clock.sleep(pause)
        return clock.now_ms()

    assert await asyncio.wait_for(clock.drive(retrying()), 5) == 10_000


async def test_sleep_or_stop_on_a_manual_clock() -> None:
    clock = ManualClock()
    stop = asyncio.Event()
    timed_out = asyncio.create_task(sleep_or_stop(clock, 5, stop))
    await clock.sleeping()
    clock.advance(5)
    assert await asyncio.wait_for(timed_out, 5) is False

    stopped = asyncio.create_task(sleep_or_stop(clock, 3600, stop))
    await clock.sleeping()
    stop.set()
    assert await asyncio.wait_for(stopped, 5) is True
    assert clock.sleepers == []  # the abandoned sleep is gone
    assert await sleep_or_stop(clock, 3600, stop) is True  # already stopped: no wait at all
    await asyncio.wait_for(sleep_or_stop(clock, 0, None), 5)


async def test_system_clock_reads_real_time() -> None:
    before = SYSTEM_CLOCK.now_s()
    await SYSTEM_CLOCK.sleep(0)
    assert SYSTEM_CLOCK.now_ms() >= int(before * 1000) and SYSTEM_CLOCK.monotonic() > 0
