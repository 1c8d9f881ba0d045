"""The transactional outbox: tasks (and, in a stream of their own, hold messages) enter a Redis stream in the
same MULTI that creates them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from alerting import keys
from alerting.tasks import DELIVERED, DELIVERY_FAILED, task_event
from core.clock import SYSTEM_CLOCK, Clock

__all__ = ["HOLD_OUTBOX", "TASK_OUTBOX", "Outbox", "OutboxEntry", "OutboxStreams", "stage_outbox"]


@dataclass(frozen=True, slots=True)
class OutboxStreams:
    """One outbox's Redis names: its stream, dead-letter stream, group and where each item's history goes."""

    stream: str
    dead: str
    group: str
    events_of: Callable[[str], str]  # item id -> the list its delivered / delivery_failed entries go to
    delivered_stat: str  # the fw:stats counters of its deliveries and give-ups
    failed_stat: str


TASK_OUTBOX = OutboxStreams(
    keys.OUTBOX, keys.OUTBOX_DEAD, keys.OUTBOX_GROUP, keys.task_events, "delivered", "delivery_failed"
)
# Holds have their own stream: a bank that is down must not hold up the police's tasks, nor they the bank's holds.
HOLD_OUTBOX = OutboxStreams(
    keys.HOLDS_OUTBOX, keys.HOLDS_OUTBOX_DEAD, keys.OUTBOX_GROUP, keys.hold_events, "holds_delivered", "holds_failed"
)

# Success and give-up are recorded only by whoever's XACK removes the entry from the pending list, so a
# task reclaimed by a second deliverer is still counted delivered once. KEYS: outbox, events, stats.
# ARGV: group, entry id, event, stats field.
_ACK_DELIVERED = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  return 1
end
return 0
"""

# KEYS: outbox, dead, events, stats. ARGV: group, entry id, event, stats field, then the dead entry's
# field/value pairs.
_DEAD_LETTER = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
  redis.call('XDEL', KEYS[1], ARGV[2])
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One task waiting in ``fw:outbox`` (or message in ``fw:holds:outbox``); ``body`` is the exact JSON to POST."""

    entry_id: str
    task_id: str  # on the holds outbox, the hold id
    idempotency_key: str
    body: bytes
    enqueued_at: float  # wall-clock seconds of the outbox write

    @property
    def well_formed(self) -> bool:
        """Whether the entry has what a delivery needs."""
        return bool(self.task_id and self.idempotency_key and self.body)


def stage_outbox(
    pipe: Pipeline,
    task: Mapping[str, Any],
    body: bytes,
    enqueued_at: float,
    streams: OutboxStreams = TASK_OUTBOX,
    item_id: str | None = None,
) -> None:
    """Queue the outbox write of a task inside the caller's MULTI (so it commits with the task or not at all).

    ``enqueued_at`` is wall-clock seconds: where the decision-to-delivery latency starts. ``item_id``: the id
    the entry's history is kept under (default the task's ``task_id``; a hold message's ``hold_id``).
    """
    pipe.xadd(
        streams.stream,
        {
            "task_id": item_id if item_id is not None else task["task_id"],
            "idempotency_key": task["idempotency_key"],
            "task": body,
            "enqueued_at": repr(enqueued_at),
        },
    )


def _entry(entry_id: Any, fields: Mapping[Any, Any] | None) -> OutboxEntry:
    f: dict[str | None, Any] = {keys.text(k): v for k, v in (fields or {}).items()}
    body = f.get("task") or b""
    try:
        enqueued_at = float(keys.text(f.get("enqueued_at")) or "nan")
    except ValueError:
        enqueued_at = float("nan")
    return OutboxEntry(
        entry_id=keys.text(entry_id) or "",
        task_id=keys.text(f.get("task_id")) or "",
        idempotency_key=keys.text(f.get("idempotency_key")) or "",
        body=body.encode() if isinstance(body, str) else body,
        enqueued_at=enqueued_at,
    )


def _stream_entries(reply: Any) -> list[OutboxEntry]:
    """Entries from an XREADGROUP reply (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[OutboxEntry] = []
    for _name, messages in streams:
        # RESP3 wraps each stream's messages in one more list.
        if messages and isinstance(messages[0], list) and messages[0] and isinstance(messages[0][0], list | tuple):
            messages = messages[0]
        for entry_id, fields in messages:
            out.append(_entry(entry_id, fields))
    return out


class Outbox:
    """One consumer's view of ``fw:outbox`` (or another outbox's stream) in the ``delivery`` consumer group."""

    def __init__(
        self, redis: Redis, consumer: str, *, clock: Clock = SYSTEM_CLOCK, streams: OutboxStreams = TASK_OUTBOX
    ) -> None:
        self._redis = redis
        self.consumer = consumer
        self.streams = streams
        self._clock = clock
        self._ack_delivered = redis.register_script(_ACK_DELIVERED)
        self._dead_letter = redis.register_script(_DEAD_LETTER)

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so nothing written earlier is skipped)."""
        try:
            await self._redis.xgroup_create(self.streams.stream, self.streams.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, count: int, block_ms: int | None = None) -> list[OutboxEntry]:
        """Entries never handed to any consumer yet; waits up to ``block_ms`` when there are none."""
        reply = await self._redis.xreadgroup(
            self.streams.group, self.consumer, {self.streams.stream: ">"}, count=count, block=block_ms
        )
        return _stream_entries(reply)

    async def read_own_pending(self, count: int) -> list[OutboxEntry]:
        """Entries this consumer name was given earlier and never acknowledged (a restart under the same name)."""
        reply = await self._redis.xreadgroup(self.streams.group, self.consumer, {self.streams.stream: "0"}, count=count)
        return [e for e in _stream_entries(reply) if e.entry_id]

    async def claim_idle(self, min_idle_ms: int, count: int = 100) -> list[OutboxEntry]:
        """Take over entries pending longer than ``min_idle_ms`` with any consumer (e.g. a crashed one)."""
        out: list[OutboxEntry] = []
        start = "0-0"
        while True:
            reply = await self._redis.xautoclaim(
                self.streams.stream, self.streams.group, self.consumer, min_idle_ms, start_id=start, count=count
            )
            start = keys.text(reply[0]) or "0-0"
            out.extend(_entry(entry_id, fields) for entry_id, fields in reply[1] if entry_id is not None)
            if start == "0-0":
                return out

    async def touch(self, entry_id: str) -> None:
        """Reset the entry's idle time so peers do not reclaim a delivery that is still being retried."""
        await self._redis.xclaim(self.streams.stream, self.streams.group, self.consumer, 0, [entry_id], justid=True)

    async def ack_delivered(self, entry: OutboxEntry, **detail: Any) -> bool:
        """Acknowledge a delivered entry and record the task ``delivered``; False if someone else already had."""
        done = await self._ack_delivered(
            keys=[self.streams.stream, self.streams.events_of(entry.task_id), keys.STATS],
            args=[
                self.streams.group,
                entry.entry_id,
                task_event(DELIVERED, self._clock.now_ms(), **detail),
                self.streams.delivered_stat,
            ],
        )
        return bool(done)

    async def dead_letter(self, entry: OutboxEntry, reason: str, **detail: Any) -> bool:
        """Move an entry to ``fw:outbox:dead`` and record the task ``delivery_failed``."""
        dead_fields: list[Any] = [
            "task_id",
            entry.task_id,
            "idempotency_key",
            entry.idempotency_key,
            "task",
            entry.body,
            "enqueued_at",
            repr(entry.enqueued_at),
            "reason",
            reason,
            "source_id",
            entry.entry_id,
            "failed_at",
            repr(self._clock.now_s()),
        ]
        done = await self._dead_letter(
            keys=[self.streams.stream, self.streams.dead, self.streams.events_of(entry.task_id), keys.STATS],
            args=[
                self.streams.group,
                entry.entry_id,
                task_event(DELIVERY_FAILED, self._clock.now_ms(), reason=reason, **detail),
                self.streams.failed_stat,
                *dead_fields,
            ],
        )
        return bool(done)

    async def pending_count(self) -> int:
        """Entries handed out but not acknowledged yet."""
        try:
            info = await self._redis.xpending(self.streams.stream, self.streams.group)
        except ResponseError:
            return 0
        return int(info["pending"] if isinstance(info, dict) else info[0])

    async def redrive_dead(self, entry_ids: Sequence[str] | None = None, count: int = 100) -> int:
        """Put dead-lettered tasks back into the outbox (after the endpoint is fixed); returns how many."""
        rows = await self._redis.xrange(self.streams.dead, count=count)
        moved = 0
        for entry_id, fields in rows or []:
            eid = keys.text(entry_id) or ""
            if entry_ids is not None and eid not in entry_ids:
                continue
            dead = _entry(eid, fields)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    self.streams.stream,
                    {
                        "task_id": dead.task_id,
                        "idempotency_key": dead.idempotency_key,
                        "task": dead.body,
                        "enqueued_at": repr(dead.enqueued_at),
                    },
                )
                pipe.xdel(self.streams.dead, eid)
                pipe.rpush(self.streams.events_of(dead.task_id), task_event("requeued", self._clock.now_ms()))
                await pipe.execute()
            moved += 1
        return moved
