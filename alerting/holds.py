"""Payment holds (hold.v1): the bank keeps a risky initiated transfer until the case's outcome, or until it lapses.

A decision on a transfer at or above the model's hold threshold issues one ``hold`` per transfer (its
``hold_id`` comes from the transfer's event id, so a redelivered decision finds it and stages nothing). The
case's outcome ends it: ``false_alarm`` sends ``release``, ``dissuaded`` sends ``cancel`` (staged in the MULTI
that resolves the task, see ``alerting.lifecycle``), a dispatcher may release it from the console, and a hold
nobody ends lapses at ``expires_ms`` (the bank lets it go by itself; the service only records it). Every
message goes through its own outbox stream to the holds topic and the bank, with its own idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from alerting import keys
from alerting.audit import SYSTEM, Actor, publish_change, stage_audit
from alerting.decision import Decision
from alerting.delivery import Deliverer
from alerting.metrics import (
    HOLD_DELIVERY_FAILURES,
    HOLD_DELIVERY_RETRIES,
    HOLD_LATENCY,
    HOLD_MESSAGES_DELIVERED,
    HOLDS,
)
from alerting.outbox import HOLD_OUTBOX, OutboxEntry, stage_outbox
from core.clock import SYSTEM_CLOCK, Clock
from core.errors import DeliveryFailed, InvalidTransition, TransitionContention, UnknownHold
from core.settings import Settings

__all__ = [
    "CANCEL",
    "CANCELLED",
    "ENDING_OF_OUTCOME",
    "HELD",
    "HOLD",
    "HOLD_STATES",
    "LAPSED",
    "RELEASE",
    "RELEASED",
    "HoldDeliverer",
    "HoldRecord",
    "HoldSink",
    "HoldStore",
    "build_hold",
    "ending_message",
    "hold_id_for",
    "message_key",
    "stage_ending",
    "watch_held",
]

log = logging.getLogger(__name__)

HOLD, RELEASE, CANCEL = "hold", "release", "cancel"  # the contract's actions
HELD, RELEASED, CANCELLED, LAPSED = "held", "released", "cancelled", "lapsed"  # a hold's states
HOLD_STATES = (HELD, RELEASED, CANCELLED, LAPSED)
STATE_AFTER = {RELEASE: RELEASED, CANCEL: CANCELLED}
# The outcomes that end a case's holds; ``money_lost`` and ``unreachable`` leave them to lapse.
ENDING_OF_OUTCOME: Mapping[str, str] = {"false_alarm": RELEASE, "dissuaded": CANCEL}
HOLDS_ACTOR = Actor("holds", SYSTEM)  # the automatic hold path, as named in the audit stream
MAX_HOLD_REASONS = 10

# Publishes one hold.v1 message on the holds topic: (key, value) -> anything awaitable (a broker's ack).
HoldSink = Callable[[bytes, bytes], Awaitable[object]]


def hold_id_for(transfer_event_id: str) -> str:
    """The one hold a transfer may have: a replayed or redelivered decision names the same."""
    return f"hold-{transfer_event_id}"


def message_key(hold_id: str, action: str) -> str:
    """The idempotency key of one message about a hold (``<hold_id>:hold``, ``:release``, ``:cancel``)."""
    return f"{hold_id}:{action}"


def build_hold(case_key: str, d: Decision, expiry_ms: int) -> dict[str, Any]:
    """The ``hold`` message of a decision on a transfer (``d.hold`` set): the contract's fields, in event time."""
    t = d.hold
    if t is None:
        raise ValueError("the decision holds no transfer")
    hold_id = hold_id_for(t.event_id)
    return {
        "hold_id": hold_id,
        "action": HOLD,
        "transfer_event_id": t.event_id,
        # Clear number and accounts on purpose: the bank has to find this transfer.
        "subscriber": d.subscriber,
        "payer_account": t.payer_account,
        "payee_account": t.payee_account,
        "amount": t.amount,
        "currency": t.currency,
        "case_key": case_key,
        "created_ms": t.ts_ms,  # event time, so a replay builds the same message
        "expires_ms": t.ts_ms + expiry_ms,
        "idempotency_key": message_key(hold_id, HOLD),
        "score": d.score,
        "level": d.level,
        "reasons": list(d.reasons[:MAX_HOLD_REASONS]),
        "model_version": d.model_version,
    }


def ending_message(hold: Mapping[str, Any], action: str) -> dict[str, Any]:
    """The ``release`` or ``cancel`` message of a ``hold`` message: the same transfer, its own idempotency key."""
    if action not in STATE_AFTER:
        raise InvalidTransition(f"a hold ends with {RELEASE} or {CANCEL}, not {action!r}")
    return {**hold, "action": action, "idempotency_key": message_key(str(hold["hold_id"]), action)}


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """One hold as stored in ``fw:hold:{hold_id}``."""

    hold_id: str
    state: str
    case_key: str
    message: dict[str, Any]  # the hold message as sent
    since_ms: int  # wall time the current state was reached
    ended_by: str | None = None

    @property
    def expires_ms(self) -> int:
        """When the bank lets the hold lapse."""
        return int(self.message["expires_ms"])

    @classmethod
    def from_fields(cls, hold_id: str, raw: Mapping[Any, Any]) -> HoldRecord:
        """Parse a Redis hash (bytes or str replies)."""
        f = {keys.text(k): keys.text(v) or "" for k, v in raw.items()}
        return cls(
            hold_id=hold_id,
            state=f["state"],
            case_key=f.get("case_key", ""),
            message=orjson.loads(f["message"]),
            since_ms=int(f.get("since_ms") or 0),
            ended_by=f.get("ended_by") or None,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for the console (the transfer, the state, the times)."""
        m = self.message
        return {
            "hold_id": self.hold_id,
            "state": self.state,
            "case_key": self.case_key,
            "transfer_event_id": m.get("transfer_event_id"),
            "amount": m.get("amount"),
            "currency": m.get("currency"),
            "payee_account": m.get("payee_account"),
            "created_ms": m.get("created_ms"),
            "expires_ms": m.get("expires_ms"),
            "since_ms": self.since_ms,
            "ended_by": self.ended_by,
        }


async def watch_held(pipe: Pipeline, case_key: str) -> list[HoldRecord]:
    """The case's holds still held, read under WATCH (the caller's pipeline, before its MULTI)."""
    await pipe.watch(keys.case_holds(case_key))
    ids = sorted(keys.text(h) or "" for h in await pipe.smembers(keys.case_holds(case_key)))
    if not ids:
        return []
    await pipe.watch(*(keys.hold(h) for h in ids))
    out = []
    for hold_id in ids:
        raw = await pipe.hgetall(keys.hold(hold_id))
        if raw:
            record = HoldRecord.from_fields(hold_id, raw)
            if record.state == HELD:
                out.append(record)
    return out


def stage_ending(
    pipe: Pipeline, record: HoldRecord, action: str, actor: Actor, now_ms: int, enqueued_at: float
) -> None:
    """Queue a held hold's release or cancel inside the caller's MULTI: its state, the message, the audit."""
    message = ending_message(record.message, action)
    body = orjson.dumps(message)
    pipe.hset(
        keys.hold(record.hold_id),
        mapping={"state": STATE_AFTER[action], "since_ms": str(now_ms), "ended_by": actor.name, "ending": body},
    )
    pipe.zrem(keys.HOLDS_ACTIVE, record.hold_id)
    stage_outbox(pipe, message, body, enqueued_at, streams=HOLD_OUTBOX, item_id=record.hold_id)
    stage_audit(pipe, actor, f"hold:{action}", case_key=record.case_key, at_ms=now_ms, hold_id=record.hold_id)


def count_ending(action: str) -> None:
    """Count a committed release or cancel."""
    HOLDS.labels(event=STATE_AFTER[action]).inc()


class HoldStore:
    """Holds in Redis: issued once per transfer, ended at most once, lapsed when due."""

    def __init__(self, redis: Redis, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, max_retries: int = 50):
        self._redis = redis
        self._expiry_ms = int(settings.hold_expiry_s * 1000)
        self._clock = clock
        self._max_retries = max_retries

    async def issue(self, case_key: str, d: Decision, *, early: bool = False) -> dict[str, Any] | None:
        """Record the decision's hold and queue its message; None when the transfer already has one.

        ``early``: issued before the decision's case is recorded, under the case it is planned to join
        (``CaseStore.planned_key``), so that the bank does not wait for the explanation and the case write. The
        call made once the case is recorded then finds the hold; should it name another case (a plan overtaken by
        another worker's write), that call moves it into the recorded case (:meth:`_relink`).
        """
        message = build_hold(case_key, d, self._expiry_ms)
        hold_id = message["hold_id"]
        key = keys.hold(hold_id)
        body = orjson.dumps(message)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(self._max_retries):
                try:
                    await pipe.watch(key)
                    stored = keys.text(await pipe.hget(key, "case_key"))
                    if stored is not None:
                        # A redelivered decision, a restarted worker or an early issue: the hold was made already.
                        if not early and stored != case_key:
                            await self._relink(pipe, hold_id, stored, case_key)
                        return None
                    now_s = self._clock.now_s()
                    now_ms = int(now_s * 1000)
                    pipe.multi()
                    pipe.hset(
                        key,
                        mapping={"state": HELD, "case_key": case_key, "message": body, "since_ms": str(now_ms)},
                    )
                    pipe.sadd(keys.case_holds(case_key), hold_id)
                    pipe.zadd(keys.HOLDS_ACTIVE, {hold_id: message["expires_ms"]})
                    pipe.hincrby(keys.STATS, "holds", 1)
                    # Latency starts where the bank's wait does: the transfer's arrival on the broker when known,
                    # else the scoring decision (as for tasks), else now.
                    enqueued_at = next(
                        t for t in (d.hold.received_at_s if d.hold else None, d.decided_at_s, now_s) if t is not None
                    )
                    stage_outbox(pipe, message, body, enqueued_at, streams=HOLD_OUTBOX, item_id=hold_id)
                    stage_audit(pipe, HOLDS_ACTOR, "hold:hold", case_key=case_key, at_ms=now_ms, hold_id=hold_id)
                    await pipe.execute()
                    break
                except WatchError:
                    continue
            else:
                raise TransitionContention(f"hold {hold_id}: lost {self._max_retries} races")
        HOLDS.labels(event="issued").inc()
        await publish_change(self._redis, {"type": "hold", "hold_id": hold_id, "case_key": case_key, "state": HELD})
        return message

    async def _relink(self, pipe: Pipeline, hold_id: str, planned: str, case_key: str) -> None:
        """Move a hold issued under a planned case into the case its decision was recorded in (``pipe`` watches it).

        The bank keeps the message it was sent (its ``case_key`` is the planned one, and so are the release's or
        cancel's, which repeat it); the service's own record follows the case, so that its outcome ends the hold.
        """
        now_ms = self._clock.now_ms()
        pipe.multi()
        pipe.hset(keys.hold(hold_id), "case_key", case_key)
        pipe.srem(keys.case_holds(planned), hold_id)
        pipe.sadd(keys.case_holds(case_key), hold_id)
        stage_audit(pipe, HOLDS_ACTOR, "hold:relink", case_key=case_key, at_ms=now_ms, hold_id=hold_id, planned=planned)
        await pipe.execute()
        HOLDS.labels(event="relinked").inc()
        log.warning("hold moved to the case its decision joined", extra={"hold_id": hold_id, "case_key": case_key})
        await publish_change(self._redis, {"type": "hold", "hold_id": hold_id, "case_key": case_key, "state": HELD})

    async def get(self, hold_id: str) -> HoldRecord:
        """One hold, or UnknownHold."""
        raw = await self._redis.hgetall(keys.hold(hold_id))
        if not raw:
            raise UnknownHold(hold_id)
        return HoldRecord.from_fields(hold_id, raw)

    async def for_case(self, case_key: str) -> list[HoldRecord]:
        """Every hold of a case, oldest transfer first."""
        ids = sorted(keys.text(h) or "" for h in await self._redis.smembers(keys.case_holds(case_key)))
        pipe = self._redis.pipeline(transaction=False)
        for hold_id in ids:
            pipe.hgetall(keys.hold(hold_id))
        rows = await pipe.execute() if ids else []
        found = [HoldRecord.from_fields(h, raw) for h, raw in zip(ids, rows, strict=True) if raw]
        return sorted(found, key=lambda r: int(r.message.get("created_ms", 0)))

    async def for_cases(self, case_keys: list[str]) -> dict[str, list[HoldRecord]]:
        """:meth:`for_case` of many cases in two round trips (the console's queue)."""
        pipe = self._redis.pipeline(transaction=False)
        for ck in case_keys:
            pipe.smembers(keys.case_holds(ck))
        members = await pipe.execute() if case_keys else []
        wanted = [(ck, keys.text(h) or "") for ck, ids in zip(case_keys, members, strict=True) for h in ids]
        pipe = self._redis.pipeline(transaction=False)
        for _, hold_id in wanted:
            pipe.hgetall(keys.hold(hold_id))
        rows = await pipe.execute() if wanted else []
        out: dict[str, list[HoldRecord]] = {ck: [] for ck in case_keys}
        for (ck, hold_id), raw in zip(wanted, rows, strict=True):
            if raw:
                out[ck].append(HoldRecord.from_fields(hold_id, raw))
        for found in out.values():
            found.sort(key=lambda r: int(r.message.get("created_ms", 0)))
        return out

    async def end(self, hold_id: str, action: str, actor: Actor) -> HoldRecord:
        """Release or cancel one held hold (a dispatcher's decision); InvalidTransition if it is no longer held."""
        if action not in STATE_AFTER:
            raise InvalidTransition(f"a hold ends with {RELEASE} or {CANCEL}, not {action!r}")
        key = keys.hold(hold_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(self._max_retries):
                try:
                    await pipe.watch(key)
                    raw = await pipe.hgetall(key)
                    if not raw:
                        raise UnknownHold(hold_id)
                    record = HoldRecord.from_fields(hold_id, raw)
                    if record.state != HELD:
                        raise InvalidTransition(f"hold {hold_id} is {record.state}, not held")
                    now_s = self._clock.now_s()
                    pipe.multi()
                    stage_ending(pipe, record, action, actor, int(now_s * 1000), now_s)
                    await pipe.execute()
                    break
                except WatchError:
                    continue
            else:
                raise TransitionContention(f"hold {hold_id}: lost {self._max_retries} races")
        count_ending(action)
        await publish_change(
            self._redis,
            {"type": "hold", "hold_id": hold_id, "case_key": record.case_key, "state": STATE_AFTER[action]},
        )
        return await self.get(hold_id)

    async def lapse_due(self, now_ms: int | None = None) -> int:
        """Mark every hold still held at its ``expires_ms`` (by ``now_ms``, else the clock) lapsed; how many."""
        now = now_ms if now_ms is not None else self._clock.now_ms()
        raw: list[Any] = await self._redis.zrangebyscore(keys.HOLDS_ACTIVE, "-inf", now)
        due = [keys.text(h) or "" for h in raw]
        lapsed = 0
        for hold_id in due:
            if await self._lapse(hold_id, now):
                lapsed += 1
        return lapsed

    async def _lapse(self, hold_id: str, now_ms: int) -> bool:
        key = keys.hold(hold_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(self._max_retries):
                try:
                    await pipe.watch(key)
                    raw = await pipe.hgetall(key)
                    record = HoldRecord.from_fields(hold_id, raw) if raw else None
                    pipe.multi()
                    pipe.zrem(keys.HOLDS_ACTIVE, hold_id)
                    if record is None or record.state != HELD or record.expires_ms > now_ms:
                        await pipe.execute()  # ended meanwhile (or gone): only the index entry was left
                        return False
                    pipe.hset(key, mapping={"state": LAPSED, "since_ms": str(now_ms), "ended_by": HOLDS_ACTOR.name})
                    stage_audit(
                        pipe, HOLDS_ACTOR, "hold:lapse", case_key=record.case_key, at_ms=now_ms, hold_id=hold_id
                    )
                    await pipe.execute()
                    break
                except WatchError:
                    continue
            else:
                raise TransitionContention(f"hold {hold_id}: lapse lost {self._max_retries} races")
        HOLDS.labels(event=LAPSED).inc()
        await publish_change(
            self._redis, {"type": "hold", "hold_id": hold_id, "case_key": record.case_key, "state": LAPSED}
        )
        return True


class HoldDeliverer(Deliverer):
    """Delivers ``fw:holds:outbox``: each message is published on the holds topic (when a sink is given), then
    POSTed to the bank (``FW_BANK_URL``; without one, publishing is the whole delivery)."""

    STREAMS = HOLD_OUTBOX
    URL_REQUIRED = False

    def __init__(self, redis: Redis, settings: Settings, *, publish: HoldSink | None = None, **kw: Any) -> None:
        super().__init__(redis, settings, **kw)
        self._publish = publish
        self._published: set[str] = set()  # entry ids on the topic already: a retried POST does not re-publish
        if not self._url:
            log.warning("no bank URL (FW_BANK_URL): holds are recorded and published on the holds topic, not POSTed")

    def _default_url(self, settings: Settings) -> str | None:
        return settings.bank_url

    def _on_retry(self) -> None:
        HOLD_DELIVERY_RETRIES.inc()

    def _on_failure(self, reason: str) -> None:
        HOLD_DELIVERY_FAILURES.labels(reason=reason).inc()

    def _on_delivered(self, entry: OutboxEntry, latency_s: float | None) -> None:
        self._published.discard(entry.entry_id)
        action = entry.idempotency_key.rpartition(":")[2]
        HOLD_MESSAGES_DELIVERED.labels(action=action).inc()
        if action == HOLD and latency_s is not None:
            HOLD_LATENCY.observe(latency_s)

    async def _attempt(self, entry: OutboxEntry) -> int:
        # The topic and the bank at once: the bank's wait is one round trip, not the broker's ack plus one.
        # Either failing retries the entry; the part that succeeded is not repeated on the topic, and the bank
        # deduplicates a repeated POST by its Idempotency-Key.
        publishing = self._publish is not None and entry.entry_id not in self._published
        posting = bool(self._url)
        results = await asyncio.gather(
            self._publish_once(entry) if publishing else _nothing(),
            super()._attempt(entry) if posting else _nothing(),
            return_exceptions=True,
        )
        for result in reversed(results):  # the bank's answer first: its refusal is final, a topic failure is not
            if isinstance(result, BaseException):
                raise result
        status = results[1]
        return status if isinstance(status, int) else 204  # no URL: the topic was the whole delivery

    async def _publish_once(self, entry: OutboxEntry) -> None:
        assert self._publish is not None
        try:
            await self._publish(entry.task_id.encode(), entry.body)  # keyed by hold id: one transfer, in order
        except Exception as exc:
            raise DeliveryFailed(f"holds topic publish failed: {type(exc).__name__}", retryable=True) from exc
        self._published.add(entry.entry_id)


async def _nothing() -> None:
    return None
