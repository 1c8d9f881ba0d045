"""Cases: one per subscriber episode, so repeated evidence raises a case instead of spawning tasks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from alerting import keys
from alerting.decision import Decision
from core.errors import CaseContention
from core.pseudonym import pseudonymise

MAX_REASONS = 20  # enough to explain a case; bounded so a chatty subscriber cannot grow a case forever
CASE_DECISIONS_KEPT = 500  # a case's timeline keeps its newest scored events; older ones fall off


@dataclass(frozen=True, slots=True)
class Case:
    """One subscriber episode as stored in ``fw:case:{case_key}``; ``subscriber`` is the pseudonym."""

    case_key: str
    subscriber: str
    start_ms: int
    end_ms: int
    level: int
    score: float
    reasons: tuple[str, ...]
    last_ts_ms: int
    decisions: int
    model_version: str
    lat: float | None = None
    lon: float | None = None

    def to_fields(self) -> dict[Any, str]:  # Any keys: what redis-py's hset mapping accepts
        """The Redis hash fields."""
        fields: dict[Any, str] = {
            "case_key": self.case_key,
            "subscriber": self.subscriber,
            "start_ms": str(self.start_ms),
            "end_ms": str(self.end_ms),
            "level": str(self.level),
            "score": repr(self.score),
            "reasons": orjson.dumps(list(self.reasons)).decode(),
            "last_ts_ms": str(self.last_ts_ms),
            "decisions": str(self.decisions),
            "model_version": self.model_version,
        }
        if self.lat is not None and self.lon is not None:
            fields["lat"], fields["lon"] = repr(self.lat), repr(self.lon)
        return fields

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> Case:
        """Parse a Redis hash (bytes or str replies)."""
        f = {keys.text(k): keys.text(v) or "" for k, v in raw.items()}
        return cls(
            case_key=f["case_key"],
            subscriber=f["subscriber"],
            start_ms=int(f["start_ms"]),
            end_ms=int(f["end_ms"]),
            level=int(f["level"]),
            score=float(f["score"]),
            reasons=tuple(orjson.loads(f["reasons"] or "[]")),
            last_ts_ms=int(f["last_ts_ms"]),
            decisions=int(f["decisions"]),
            model_version=f.get("model_version", ""),
            lat=float(f["lat"]) if f.get("lat") else None,
            lon=float(f["lon"]) if f.get("lon") else None,
        )


def case_key_for(subscriber_pseudonym: str, start_ms: int) -> str:
    """The stable key of the episode that a decision at ``start_ms`` opened."""
    return f"{subscriber_pseudonym}-{start_ms}"


def planned_case_key(
    pointer: tuple[str | None, int], pseudonym: str, earlier_ts_ms: Sequence[int], ts_ms: int, episode_ms: int
) -> str:
    """The case a decision at ``ts_ms`` will join once ``earlier_ts_ms`` (decisions of the same subscriber recorded
    before it, in that order) are recorded, given the open-case ``pointer`` (key, end) read now (pure).

    The same rule as :meth:`CaseStore.record` folds decisions by: before the open episode's end it joins it, else
    it opens a new one at its own time. Lets a hold name its case before the decision is recorded.
    """
    key, end_ms = pointer
    for t in (*earlier_ts_ms, ts_ms):
        joined = _episode_key(key, end_ms, pseudonym, t)
        if joined != key:
            key, end_ms = joined, t + episode_ms
    assert key is not None  # the loop ran at least once, for ``ts_ms``
    return key


def _episode_key(open_key: str | None, end_ms: int, pseudonym: str, ts_ms: int) -> str:
    """The case a decision at ``ts_ms`` joins: the open episode before its end (even a late, older decision: the
    same fraud story reported out of order), else a new episode opened at its own time (pure)."""
    if open_key is None or ts_ms >= end_ms:
        return case_key_for(pseudonym, ts_ms)
    return open_key


def merge_reasons(old: tuple[str, ...], new: tuple[str, ...], limit: int = MAX_REASONS) -> tuple[str, ...]:
    """Old reasons then unseen new ones, in order, at most ``limit``."""
    merged = list(dict.fromkeys((*old, *new)))
    return tuple(merged[:limit])


def apply_decision(case: Case | None, subscriber_pseudonym: str, d: Decision, episode_ms: int) -> Case:
    """The case after the decision: a new episode when ``case`` is None, else the updated case (pure)."""
    if case is None:
        return Case(
            case_key=case_key_for(subscriber_pseudonym, d.ts_ms),
            subscriber=subscriber_pseudonym,
            start_ms=d.ts_ms,
            end_ms=d.ts_ms + episode_ms,
            level=d.level,
            score=d.score,
            reasons=merge_reasons((), d.reasons),
            last_ts_ms=d.ts_ms,
            decisions=1,
            model_version=d.model_version,
            lat=d.lat,
            lon=d.lon,
        )
    has_place = d.lat is not None and d.lon is not None
    # Events arrive out of order: only a newer decision may move the subscriber's known location.
    move = has_place and (case.lat is None or d.ts_ms >= case.last_ts_ms)
    return replace(
        case,
        level=max(case.level, d.level),
        score=max(case.score, d.score),
        reasons=merge_reasons(case.reasons, d.reasons),
        last_ts_ms=max(case.last_ts_ms, d.ts_ms),
        decisions=case.decisions + 1,
        model_version=d.model_version if d.ts_ms >= case.last_ts_ms else case.model_version,
        lat=d.lat if move else case.lat,
        lon=d.lon if move else case.lon,
    )


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """What one decision did to its case."""

    case: Case
    created: bool  # the decision opened a new episode
    escalated: bool  # the decision's level had no record yet in this case (the hook ran)
    repeated: bool = False  # a new occasion repeated its level's action in this case (the hook ran)


# Called inside the case's MULTI block when a decision escalates its case, or repeats its level's action for a
# new occasion (the third argument; None for the level's first action): queue the task/warning writes on the
# pipeline so they commit atomically with the case. May run again if the commit loses a race.
EscalationHook = Callable[[Case, Pipeline, str | None], Awaitable[None]]

REPEATS_FIELD = "repeats"  # how many actions the case repeated for new occasions


def occasion_field(occasion: str) -> str:
    """The case's hash field marking that this call or transfer has acted in the case."""
    return f"occasion:{occasion}"


class CaseStore:
    """Cases in Redis, updated atomically per subscriber with WATCH/MULTI."""

    def __init__(
        self,
        redis: Redis,
        episode_ms: int,
        pseudonym_key: bytes | None = None,
        max_retries: int = 100,
        repeats_per_case: int = 0,
    ):
        self._redis = redis
        self._episode_ms = episode_ms
        self._pseudonym_key = pseudonym_key
        self._max_retries = max_retries
        self._repeats_per_case = repeats_per_case

    def pseudonym(self, subscriber: str) -> str:
        """The subscriber's pseudonym, as used in case keys."""
        return pseudonymise(subscriber, self._pseudonym_key)

    async def get(self, case_key: str) -> Case | None:
        """One case, or None."""
        raw = await self._redis.hgetall(keys.case(case_key))
        return Case.from_fields(raw) if raw else None

    async def open_case(self, subscriber: str, at_ms: int) -> Case | None:
        """The case whose episode covers event time ``at_ms`` for this subscriber, or None."""
        pointer = await self._redis.hgetall(keys.case_open(self.pseudonym(subscriber)))
        key, end_ms = _pointer(pointer)
        if key is None or at_ms >= end_ms:
            return None
        return await self.get(key)

    async def planned_key(self, subscriber: str, earlier_ts_ms: Sequence[int], ts_ms: int) -> str:
        """:func:`planned_case_key` from the subscriber's open-case pointer as it is now (one read)."""
        pseud = self.pseudonym(subscriber)
        pointer = _pointer(await self._redis.hgetall(keys.case_open(pseud)))
        return planned_case_key(pointer, pseud, earlier_ts_ms, ts_ms, self._episode_ms)

    async def record(
        self, d: Decision, on_escalation: EscalationHook | None = None, *, may_repeat: bool = False
    ) -> CaseOutcome:
        """Fold the decision into its subscriber's open case (or open one), atomically with the hook's writes.

        ``may_repeat``: the level's action repeats for a new occasion (``d.occasion``) of an open case, at most
        ``repeats_per_case`` times; the same occasion never acts twice at a level it has reached.
        """
        pseud = self.pseudonym(d.subscriber)
        pointer_key = keys.case_open(pseud)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(self._max_retries):
                try:
                    # Optimistic lock: if another decision for this subscriber commits first, EXEC fails
                    # and we re-read, so a case is never opened twice or updated from stale state.
                    await pipe.watch(pointer_key)
                    open_key, end_ms = _pointer(await pipe.hgetall(pointer_key))
                    case_key = _episode_key(open_key, end_ms, pseud, d.ts_ms)
                    await pipe.watch(keys.case(case_key))
                    raw = await pipe.hgetall(keys.case(case_key))
                    before = Case.from_fields(raw) if raw else None
                    after = apply_decision(before, pseud, d, self._episode_ms)
                    created = before is None
                    escalated = before is None or d.level > before.level
                    repeated = not escalated and may_repeat and self._repeats(raw, d)

                    pipe.multi()
                    pipe.hset(keys.case(after.case_key), mapping=after.to_fields())
                    # The case's timeline: every scored event that reached a level, in the console.
                    pipe.rpush(keys.case_decisions(after.case_key), _timeline_entry(d))
                    pipe.ltrim(keys.case_decisions(after.case_key), -CASE_DECISIONS_KEPT, -1)
                    if open_key != after.case_key:
                        pipe.hset(
                            pointer_key,
                            mapping={"case_key": after.case_key, "start_ms": after.start_ms, "end_ms": after.end_ms},
                        )
                    if created:
                        pipe.hincrby(keys.STATS, "cases", 1)
                    if (escalated or repeated) and d.occasion:
                        pipe.hset(keys.case(after.case_key), occasion_field(d.occasion), str(d.level))
                    if repeated:
                        pipe.hincrby(keys.case(after.case_key), REPEATS_FIELD, 1)
                    if on_escalation is not None and (escalated or repeated):
                        await on_escalation(after, pipe, d.occasion if repeated else None)
                    await pipe.execute()
                    return CaseOutcome(case=after, created=created, escalated=escalated, repeated=repeated)
                except WatchError:
                    continue
        raise CaseContention(f"case update for {pseud} lost {self._max_retries} races in a row")

    def _repeats(self, raw: Mapping[Any, Any], d: Decision) -> bool:
        """Whether ``d`` is a new occasion of the case ``raw`` that may repeat its level's action."""
        if not d.occasion or not raw:
            return False
        f = {keys.text(k): keys.text(v) for k, v in raw.items()}
        acted = f.get(occasion_field(d.occasion))
        if acted is not None and int(acted or 0) >= d.level:
            return False  # this call or transfer already acted at this level (a later tick, a redelivery)
        return int(f.get(REPEATS_FIELD) or 0) < self._repeats_per_case


def _timeline_entry(d: Decision) -> bytes:
    """One scored event of a case as the timeline shows it (event time; no number, only the event's id)."""
    return orjson.dumps(
        {
            "ts_ms": d.ts_ms,
            "event_id": d.event_id,
            "score": round(d.score, 4),
            "level": d.level,
            "occasion": d.occasion,
            "in_call": d.in_call,
            "hold": d.hold is not None,
            "reasons": list(d.reasons[:3]),
        }
    )


def _pointer(raw: Mapping[Any, Any]) -> tuple[str | None, int]:
    if not raw:
        return None, 0
    f = {keys.text(k): keys.text(v) for k, v in raw.items()}
    return f.get("case_key"), int(f.get("end_ms") or 0)
