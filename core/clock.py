"""Time as a dependency: components read the wall clock and sleep through a :class:`Clock`, so tests move time.

:class:`SystemClock` is the real one. :class:`ManualClock` stands still until a test calls
:meth:`ManualClock.advance`, which also wakes the sleepers whose deadline it passed; a test that waits for a
deadline (an ack deadline, a ticket's lifetime, a backoff pause) moves the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock", "sleep_or_stop"]

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """What a component may ask of time."""

    def now_s(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds of a clock that never goes back (for intervals, not for stamps)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic`` and ``asyncio.sleep``."""

    def now_s(self) -> float:
        """Wall-clock seconds since the epoch."""
        return time.time()

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch."""
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()  # stateless, so one instance serves as every component's default


class ManualClock:
    """A clock that moves only when told to; for tests.

    Time is kept in integer nanoseconds, so many small advances add up exactly (no float drift in ``now_ms``).
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._start_ms = start_ms
        self._elapsed_ns = 0
        self._seq = itertools.count()  # breaks deadline ties in first-come order
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    def now_s(self) -> float:
        """Wall-clock seconds: the start plus every advance."""
        return self._start_ms / 1000 + self._elapsed_ns / 1e9

    def now_ms(self) -> int:
        """Wall-clock milliseconds: the start plus every advance."""
        return self._start_ms + self._elapsed_ns // 1_000_000

    def monotonic(self) -> float:
        """Seconds advanced since this clock was made."""
        return self._elapsed_ns / 1e9

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced by ``seconds`` (at once, after one loop turn, if <= 0)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._elapsed_ns + _ns(seconds), next(self._seq), future)
        heapq.heappush(self._sleepers, entry)
        self._changed.set()
        try:
            await future
        finally:
            if not future.done():  # cancelled: a sleeper nobody waits for must not count as pending
                future.cancel()
            with contextlib.suppress(ValueError):
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline is now reached."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._elapsed_ns += _ns(seconds)
        while self._sleepers and self._sleepers[0][0] <= self._elapsed_ns:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> list[float]:
        """Seconds left of each pending sleep, soonest first."""
        return [(deadline - self._elapsed_ns) / 1e9 for deadline, _, _ in sorted(self._sleepers)]

    async def sleeping(self, count: int = 1) -> None:
        """Wait (on the event loop, not on this clock) until at least ``count`` sleeps are pending."""
        while len(self._sleepers) < count:
            self._changed.clear()
            await self._changed.wait()

    async def drive(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, jumping the clock to the soonest deadline whenever something sleeps on it.

        For code whose pauses are the only thing between it and its result (retries, backoff): it runs
        through them at once, however long they are, in the order their deadlines fall.
        """
        task = asyncio.ensure_future(awaitable)
        try:
            while not task.done():
                sleeping = asyncio.ensure_future(self.sleeping())
                await asyncio.wait((task, sleeping), return_when=asyncio.FIRST_COMPLETED)
                sleeping.cancel()
                if self._sleepers and not task.done():
                    self.advance(self.sleepers[0])
        finally:
            if not task.done():  # the caller gave up (a timeout): do not leave the work running
                task.cancel()
        return task.result()


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


async def sleep_or_stop(clock: Clock, seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep ``seconds`` on ``clock``, ending early when ``stop`` is set; True if it was (or already is) set."""
    if stop is None:
        await clock.sleep(seconds)
        return False
    if stop.is_set():
        return True
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (sleeper, stopper):
            pending.cancel()
        # Reap both, so a cancelled sleeper has left the clock's list before the caller goes on.
        await asyncio.gather(sleeper, stopper, return_exceptions=True)
    return stop.is_set()
