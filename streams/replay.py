"""``replay``: produce a ``.jsonl`` file of events onto the input topics, as a live feed would.

Lines are sent as they are (bytes untouched), so malformed lines reach the worker and its dead-letter
path exactly as bad upstream data would. Valid events are sent in the order a live network reports
them (calls when they end), keyed by subscriber.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from core.decode import decode
from core.errors import InvalidEvent
from core.kinds import kind_of
from core.settings import Settings
from streams.topics import bootstrap

__all__ = ["ReplayStats", "Routed", "load_lines", "replay"]


@dataclass(frozen=True)
class ReplayStats:
    """What a replay sent."""

    sent: int
    calls: int
    transfers: int
    unroutable: int
    seconds: float
    call_starts: int = 0  # signalling (call_start.v1), counted apart from the calls' records
    reports: int = 0  # police reports (case.v1 with reported_ms)

    @property
    def rate(self) -> float:
        """Events per second achieved."""
        return self.sent / self.seconds if self.seconds else 0.0


def _route(line: bytes, settings: Settings) -> tuple[float | None, str, bytes | None]:
    """(arrival time, topic, key) of a raw line; a line the contract rejects has no arrival time and
    goes unkeyed to the calls topic, where the worker dead-letters it."""
    try:
        event = decode(line, max_bytes=1 << 30)
    except InvalidEvent:
        return None, settings.calls_topic, None
    # Each kind's own topic (the registry names it), keyed by the subscriber as the contract says, at the time
    # it becomes known (a call when it ends).
    topic = getattr(settings, kind_of(event).topic_setting)
    return float(event.available_ms), topic, event.subscriber.encode()


Routed = tuple[float, str, bytes | None, bytes]


def load_lines(path: Path, settings: Settings) -> list[Routed]:
    """The file's non-empty lines with their route, in arrival order; a bad line keeps its place in the file."""
    routed: list[Routed] = []
    previous = float("-inf")
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                arrival, topic, key = _route(line, settings)
                previous = arrival if arrival is not None else previous
                routed.append((previous, topic, key, line))
    routed.sort(key=lambda r: r[0])  # stable: bad lines stay right after the event they followed
    return routed


def _pace(lines: list[Routed], rate: float | None, speedup: float | None) -> list[float]:
    """Seconds after the start at which each line is due: by count (``rate``) or by event time (``speedup``)."""
    if speedup:
        finite = [arrival for arrival, *_ in lines if arrival != float("-inf")]
        first = finite[0] if finite else 0.0
        return [max(arrival - first, 0.0) / 1000 / speedup for arrival, *_ in lines]
    if rate:
        return [i / rate for i in range(len(lines))]
    return [0.0] * len(lines)


async def replay(
    path: Path, settings: Settings, rate: float | None = None, speedup: float | None = None
) -> ReplayStats:
    """Send every line of ``path``: ``rate`` events/s, or event time compressed ``speedup`` times, or flat out.

    A time-compressed replay keeps the gaps between a call and the transfer after it, as a live feed
    does; a flat-out replay is for throughput, where the stream may see events far out of order.
    """
    assert settings.broker_url, "broker_url must be set"
    lines = load_lines(path, settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap(settings.broker_url),
        linger_ms=5,
        max_batch_size=256 * 1024,
        acks=1,
    )
    await producer.start()
    calls = transfers = starts = reports = unroutable = 0
    started = time.monotonic()
    try:
        pending = []
        due = _pace(lines, rate, speedup)
        for i, (_arrival, topic, key, value) in enumerate(lines):
            ahead = started + due[i] - time.monotonic()
            if ahead > 0.001:
                await asyncio.sleep(ahead)
            pending.append(await producer.send(topic, value=value, key=key))
            if key is None:
                unroutable += 1
            elif topic == settings.calls_topic:
                calls += 1
            elif topic == settings.call_starts_topic:
                starts += 1
            elif topic == settings.reports_topic:
                reports += 1
            else:
                transfers += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ReplayStats(len(lines), calls, transfers, unroutable, time.monotonic() - started, starts, reports)
