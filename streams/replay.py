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

import orjson
from aiokafka import AIOKafkaProducer

from fraudwatch.settings import Settings
from streams.topics import bootstrap


@dataclass(frozen=True)
class ReplayStats:
    """What a replay sent."""

    sent: int
    calls: int
    transfers: int
    unroutable: int
    seconds: float

    @property
    def rate(self) -> float:
        """Events per second achieved."""
        return self.sent / self.seconds if self.seconds else 0.0


def _route(line: bytes, settings: Settings) -> tuple[float, str, bytes | None]:
    """(arrival time, topic, key) of a raw line; unparseable lines go unkeyed to the calls topic."""
    try:
        obj = orjson.loads(line)
        schema = obj.get("schema")
        ts = float(obj["ts_ms"])
        if schema == "call.v1":
            return ts + float(obj.get("duration_s") or 0) * 1000, settings.calls_topic, str(obj["callee"]).encode()
        if schema == "transfer.v1":
            return ts, settings.transfers_topic, str(obj["subscriber"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        pass
    return float("inf"), settings.calls_topic, None


def load_lines(path: Path, settings: Settings) -> list[tuple[float, str, bytes | None, bytes]]:
    """The file's non-empty lines with their route, in arrival order (unroutable ones last)."""
    routed = []
    with path.open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.strip():
                arrival, topic, key = _route(line, settings)
                routed.append((arrival, topic, key, line))
    routed.sort(key=lambda r: r[0])
    return routed


async def replay(path: Path, settings: Settings, rate: float | None = None) -> ReplayStats:
    """Send every line of ``path``; ``rate`` caps events per second (None = as fast as possible)."""
    assert settings.broker_url, "broker_url must be set"
    lines = load_lines(path, settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap(settings.broker_url),
        linger_ms=5,
        max_batch_size=256 * 1024,
        acks=1,
    )
    await producer.start()
    calls = transfers = unroutable = 0
    started = time.monotonic()
    try:
        pending = []
        for i, (_arrival, topic, key, value) in enumerate(lines):
            if rate:
                ahead = started + i / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            pending.append(await producer.send(topic, value=value, key=key))
            if key is None:
                unroutable += 1
            elif topic == settings.calls_topic:
                calls += 1
            else:
                transfers += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ReplayStats(len(lines), calls, transfers, unroutable, time.monotonic() - started)
