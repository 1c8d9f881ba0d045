"""The worker's followed thresholds (models/feedback.py) with their state in Redis.

Every scored row at or above the candidate floor is kept in a sorted set by event time (member: event id,
subscriber pseudonym and score, so a row scored again after a crash is the same member); the outcomes are
the labels the dispatch side writes to ``fw:labels``. Every ``FW_BUDGET_UPDATE_S`` one worker (a short Redis
lock) refits the thresholds from them and stores them, with the model version they belong to; every worker
reads them back, so all workers decide with the same thresholds and a restarted worker with the ones it had.
Redis away: the worker keeps deciding with the thresholds it holds and refits when Redis answers again.
A newly promoted model does not start over. If it ran in shadow first (``fraudwatch models shadow V``), each
worker kept, per scored row, the live level it reached and the shadow's score; on promotion the new model takes
over at the live alert volume (``models.match_alert_rate`` over those rows), as the field trial hands over, and
its hold threshold starts from its own. Without a shadow run the state's learnt offset is carried onto its own
thresholds (``models.carry_over``), which misleads when the new model learnt the city the old one missed (issue
#21's note, stop 39): shadow a retrain before promoting it. A handed-over model's first refit puts the window's
candidates on its scale (:func:`_rescore_window`: the shadow's own scores, a quantile map for older rows); carried
over, they keep the old model's scores until they age out. The promoted model's bounds are drawn around the
thresholds it was handed over at (kept as the state's ``base``), and one trained on this city's outcomes or reports
counts only the rows after its training cut-off in its windows (``models.unseen_window``), as the field trial does.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerting import recent_outcomes
from core.errors import StateNotEmpty
from core.events import TransferEvent
from core.levels import candidate_groups, level_budgets, level_cap, levels
from core.pseudonym import pseudonymise
from core.settings import Settings
from features import FeatureRow
from models import (
    FollowConfig,
    FollowResult,
    Scorer,
    best_in_windows,
    best_per_level,
    candidate_floor,
    carry_over,
    false_share,
    follow_thresholds,
    match_alert_rate,
    threshold_bounds,
    unseen_window,
)
from streams.metrics import (
    BUDGET_FOLLOWING,
    BUDGET_REFITS,
    BUDGET_RESIDENTS,
    FALSE_SHARE,
    HOLD_THRESHOLD,
    LEVEL_THRESHOLD,
    LEVEL_THRESHOLD_BOUND,
)

__all__ = ["LiveBudget", "refit_event_ms", "seed_follower"]

log = logging.getLogger(__name__)

# sorted set: JSON [event id, subscriber pseudonym, score, cap] -> event ms; cap: the highest level the row's kind
# may reach (core.levels.level_cap; absent from members of a worker before it: the top level)
CANDIDATES = "fw:budget:candidates"
HOLD_CANDIDATES = "fw:budget:hold-candidates"  # the same, of transfers only: the hold threshold's candidates
SEEN = "fw:budget:seen"  # HyperLogLog of subscriber pseudonyms (residents, when FW_RESIDENTS is not set)
# hash: model, thresholds, base (JSON), hold, hold_base, since_ms, refit_ms, learnt_until_ms, rescored
STATE = "fw:budget:state"
# Per shadow version: zset event id -> its shadow score (rows at the shadow's candidate floor or alerting live),
# zset event id -> the live level it reached (alerting rows), hash first_ms / last_ms (event time covered).
HANDOVER_SCORES = "fw:budget:handover:{version}:shadow"
HANDOVER_LIVE = "fw:budget:handover:{version}:live"
HANDOVER_SPAN = "fw:budget:handover:{version}:span"
HANDOVER_TTL_S = 14 * 86_400  # a shadow run's rows are kept this long after its last write
LOCK = "fw:budget:lock"


class LiveBudget:
    """Decides a score's level with the followed thresholds; :meth:`refit` keeps them current."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = FollowConfig.from_settings(settings)
        self._thresholds: dict[str, tuple[float, ...]] = {}  # model version -> followed thresholds
        self._hold: dict[str, float] = {}  # model version -> followed hold threshold
        self._buffer: list[tuple[str, str, int, float, int]] = []  # (event id, pseudonym, event ms, score, cap)
        self._hold_buffer: list[tuple[str, str, int, float]] = []  # (event id, pseudonym, event ms, score)
        self._seen: set[str] = set()
        self._shadow_buffer: list[tuple[str, str, int, float, int]] = []  # (version, event id, ms, score, live level)
        self._shadow_floor: tuple[str, float] = ("", 0.0)
        self._handover: dict[str, tuple[float, ...] | None] = {}  # promoted version -> its matched thresholds
        # (model version, its base, its candidate floor, its hold candidates' floor): computed once per model and base
        self._floor: tuple[str, tuple[float, ...], float, float] = ("", (), 0.0, 0.0)
        self._bases: dict[str, tuple[float, ...]] = {}  # model version -> the thresholds its bounds are drawn around
        BUDGET_FOLLOWING.set(int(settings.budget_follow))
        for result in ("ok", "redis_error"):
            BUDGET_REFITS.labels(result=result)  # both series exist from the start, so a rate over them is 0

    def thresholds(self, scorer: Scorer) -> tuple[float, ...]:
        """The thresholds the worker decides ``scorer``'s scores with now."""
        if not self.settings.budget_follow:
            return scorer.thresholds
        return self._thresholds.get(scorer.version, scorer.thresholds)

    def hold_threshold(self, scorer: Scorer) -> float | None:
        """The lowest score of a transfer that is held now (None: the model has none, no holds): followed from
        the outcomes on its own budget of false holds, as the levels' thresholds are on theirs."""
        if not self.settings.budget_follow or scorer.hold_threshold is None:
            return scorer.hold_threshold
        return self._hold.get(scorer.version, scorer.hold_threshold)

    def observe(
        self, scorer: Scorer, event_id: str, subscriber: str, avail_ms: int, score: float, kind: str = ""
    ) -> None:
        """Keep a scored row for the next refit if it can matter to any level's threshold (or the hold's).

        A row whose kind is capped below a level (a connect, below a visit) is that level's candidate no more: the
        refit fits each level from the best score per subscriber among the rows that may reach it.
        """
        if not self.settings.budget_follow:
            return
        if not self.settings.residents:
            self._seen.add(pseudonymise(subscriber))
        cap = level_cap(kind)
        base = self._bases.get(scorer.version, scorer.thresholds)
        if self._floor[:2] != (scorer.version, base):
            hold_floor = candidate_floor((scorer.hold_threshold,), self.config) if scorer.hold_threshold else 2.0
            self._floor = (scorer.version, base, candidate_floor(base, self.config), hold_floor)
        if cap >= 1 and score >= self._floor[2]:
            self._buffer.append((event_id, pseudonymise(subscriber), avail_ms, score, cap))
        if kind == TransferEvent.SCHEMA and score >= self._floor[3]:
            self._hold_buffer.append((event_id, pseudonymise(subscriber), avail_ms, score))

    def observe_shadow(self, shadow: Scorer, event_id: str, avail_ms: int, score: float, live_level: int) -> None:
        """Keep a row the shadow model scored, for its handover if it is promoted: rows alerting live, and rows
        at the shadow's candidate floor (below it, no threshold of the shadow can ever sit)."""
        if not self.settings.budget_follow:
            return
        if self._shadow_floor[0] != shadow.version:
            self._shadow_floor = (shadow.version, candidate_floor(shadow.thresholds, self.config))
        if live_level >= 1 or score >= self._shadow_floor[1]:
            self._shadow_buffer.append((shadow.version, event_id, avail_ms, score, live_level))

    async def refit(self, redis: Redis, scorer: Scorer, watermark_ms: int) -> None:
        """Store the rows kept since the last call, refit (if this worker holds the lock) and read back."""
        if not self.settings.budget_follow:
            return
        try:
            await self._flush(redis, watermark_ms)
            if await redis.set(LOCK, b"1", nx=True, px=max(int(self.settings.budget_update_s * 900), 1)):
                await self._refit(redis, scorer, watermark_ms)
            await self._read_back(redis, scorer)
        except (RedisError, OSError) as exc:
            BUDGET_REFITS.labels(result="redis_error").inc()
            log.warning("followed thresholds not refitted: %s", exc)

    async def _flush(self, redis: Redis, watermark_ms: int) -> None:
        buffer, self._buffer = self._buffer, []
        holds, self._hold_buffer = self._hold_buffer, []
        seen, self._seen = self._seen, set()
        shadow, self._shadow_buffer = self._shadow_buffer, []
        pipe = redis.pipeline(transaction=False)
        for version in {v for v, *_ in shadow}:
            mine = [row for row in shadow if row[0] == version]
            keys = [k.format(version=version) for k in (HANDOVER_SCORES, HANDOVER_LIVE, HANDOVER_SPAN)]
            pipe.zadd(keys[0], {e: round(s, 9) for _, e, _, s, _ in mine})
            alerting = {e: level for _, e, _, _, level in mine if level >= 1}
            if alerting:
                pipe.zadd(keys[1], alerting)
            pipe.hsetnx(keys[2], "first_ms", min(at for _, _, at, _, _ in mine))
            pipe.hset(keys[2], "last_ms", max(at for _, _, at, _, _ in mine))
            for key in keys:
                pipe.expire(key, HANDOVER_TTL_S)
        if buffer:
            pipe.zadd(CANDIDATES, {orjson.dumps([e, p, round(s, 9), c]): at for e, p, at, s, c in buffer})
            pipe.hsetnx(STATE, "since_ms", min(at for _, _, at, _, _ in buffer))
        if holds:
            pipe.zadd(HOLD_CANDIDATES, {orjson.dumps([e, p, round(s, 9)]): at for e, p, at, s in holds})
        if seen:
            pipe.pfadd(SEEN, *seen)
        for key in (CANDIDATES, HOLD_CANDIDATES):
            pipe.zremrangebyscore(key, "-inf", watermark_ms - self.config.max_window_ms)
        try:
            await pipe.execute()
        except BaseException:
            # Kept for the next try: a row is never dropped for an outage.
            self._buffer = buffer + self._buffer
            self._hold_buffer = holds + self._hold_buffer
            self._seen |= seen
            self._shadow_buffer = shadow + self._shadow_buffer
            raise

    async def _residents(self, redis: Redis) -> int:
        if self.settings.residents:
            return self.settings.residents
        return int(await redis.pfcount(SEEN))

    async def _refit(self, redis: Redis, scorer: Scorer, watermark_ms: int) -> None:
        state = await redis.hgetall(STATE)
        field = _fields(state)
        since = int(field.get("since_ms") or watermark_ms)
        # Event time since the last refit, as evaluate's replay counts it (a fast replay moves days in minutes).
        elapsed_ms = max(watermark_ms - int(field.get("refit_ms") or watermark_ms), 0)
        previous = await self._previous(redis, field, scorer)
        budgets = level_budgets(self.settings.budget_tasks_per_10k_per_day)
        residents = await self._residents(redis)
        spans = [self.config.window_ms(b, residents) for b in budgets]
        base, learnt_until = await self._base(redis, field, scorer, watermark_ms)
        starts, span_ms = unseen_window(watermark_ms, since, spans, learnt_until)
        candidates = await _candidates(redis, CANDIDATES, min(starts))
        outcomes = await recent_outcomes(redis, self.config.known_memory)
        known: dict[str, bool] = {}
        for subscriber, false in reversed(outcomes):  # oldest first, so the newest outcome per subscriber wins
            known[pseudonymise(subscriber)] = false
        latest = outcomes[: self.config.outcome_memory]
        share = false_share([false for _, false in reversed(latest)], self.config)
        fitted = follow_thresholds(
            base,
            budgets,
            previous,
            best_per_level(candidates, starts),
            known,
            share,
            residents,
            span_ms,
            elapsed_ms,
            self.config,
            candidate_groups(),
        )
        state_now: dict[Any, Any] = {  # Any keys: what redis-py's hset mapping accepts
            "model": scorer.version,
            "thresholds": orjson.dumps(list(fitted)),
            # The thresholds the bounds are drawn around: the model's own, or those it was handed over at. A model
            # promoted later carries the followed offset from them over.
            "base": orjson.dumps(list(base)),
            "refit_ms": watermark_ms,
        }
        # Written either way: a promotion must not inherit the previous model's.
        state_now["learnt_until_ms"] = learnt_until if learnt_until is not None else ""
        if scorer.hold_threshold is not None:
            # The hold threshold: one more level on a chain of its own, transfers its candidates.
            hold_budget = self.settings.budget_holds_per_10k_per_day
            (hold_since,), hold_span_ms = unseen_window(
                watermark_ms, since, (self.config.window_ms(hold_budget, residents),), learnt_until
            )
            state_now["hold_base"] = scorer.hold_threshold
            (state_now["hold"],) = follow_thresholds(
                (scorer.hold_threshold,),
                (hold_budget,),
                (await self._previous_hold(redis, field, scorer),),
                best_in_windows(
                    [(at, p, score) for at, p, score, _ in await _candidates(redis, HOLD_CANDIDATES, hold_since)],
                    [hold_since],
                ),
                known,
                self.config.hold_unknown_false,
                residents,
                hold_span_ms,
                elapsed_ms,
                self.config,
            )
        await redis.hset(STATE, mapping=state_now)
        BUDGET_REFITS.labels(result="ok").inc()
        BUDGET_RESIDENTS.set(residents)
        FALSE_SHARE.set(share)

    async def _base(
        self, redis: Redis, field: dict[str, str], scorer: Scorer, watermark_ms: int
    ) -> tuple[tuple[float, ...], int | None]:
        """The thresholds ``scorer``'s bounds are drawn around (its own, or those it was handed over at, as the
        field trial's), and for a model promoted after training on this city's rows, until when it learnt them
        (:func:`models.unseen_window`; else None)."""
        if _promoted(field, scorer):  # its first refit since a promotion
            handed = await self._handed_over(redis, scorer)
            if handed is not None and field.get("rescored") != scorer.version:
                await _rescore_window(redis, scorer, handed, self.config)
            learnt = _learnt_until(scorer)
            return (handed if handed is not None else scorer.thresholds), (
                None if learnt is None else min(learnt, watermark_ms)
            )
        base = _stored_base(field, scorer)
        learnt_until = field.get("learnt_until_ms") if field.get("model") == scorer.version else None
        return base, int(learnt_until) if learnt_until else None

    async def _read_back(self, redis: Redis, scorer: Scorer) -> None:
        field = _fields(await redis.hgetall(STATE))
        if field.get("model") == scorer.version:
            self._bases[scorer.version] = _stored_base(field, scorer)
        if field.get("thresholds"):
            # Another model's state (a promotion since the last refit): handed over at its shadow run's alert volume,
            # or the followed offset carried over.
            self._thresholds = {scorer.version: await self._previous(redis, field, scorer)}
            if scorer.hold_threshold is not None:
                self._hold = {scorer.version: await self._previous_hold(redis, field, scorer)}
        hold = self.hold_threshold(scorer)
        if hold is not None:
            HOLD_THRESHOLD.set(hold)
        bounds = threshold_bounds(self._bases.get(scorer.version, scorer.thresholds), self.config)
        for number, (threshold, (lo, hi)) in enumerate(zip(self.thresholds(scorer), bounds, strict=True), 1):
            LEVEL_THRESHOLD.labels(level=str(number)).set(threshold)
            LEVEL_THRESHOLD_BOUND.labels(level=str(number), side="low").set(lo)
            LEVEL_THRESHOLD_BOUND.labels(level=str(number), side="high").set(hi)

    async def _previous(self, redis: Redis, field: dict[str, str], scorer: Scorer) -> tuple[float, ...]:
        """The thresholds ``scorer`` follows on from: its shadow run's handover once promoted, else
        :func:`_previous`."""
        if _promoted(field, scorer):
            matched = await self._handed_over(redis, scorer)
            if matched is not None:
                return matched
        return _previous(field, scorer, self.config)

    async def _previous_hold(self, redis: Redis, field: dict[str, str], scorer: Scorer) -> float:
        """The hold threshold ``scorer`` follows on from: its own after a handover (the field trial's), else
        :func:`_previous_hold`."""
        handed = field.get("hold") and field.get("model") != scorer.version
        if handed and scorer.hold_threshold is not None and await self._handed_over(redis, scorer) is not None:
            return scorer.hold_threshold
        return _previous_hold(field, scorer, self.config)

    async def _handed_over(self, redis: Redis, scorer: Scorer) -> tuple[float, ...] | None:
        """``scorer``'s thresholds at the live alert volume of its shadow run (None: no run of an hour or more);
        worked out once per worker and version."""
        if scorer.version not in self._handover:
            self._handover[scorer.version] = await _handover(redis, scorer, self.config)
            if self._handover[scorer.version] is not None:
                log.info(
                    "promoted model takes over at the live alert volume of its shadow run",
                    extra={"version": scorer.version, "thresholds": self._handover[scorer.version]},
                )
        return self._handover[scorer.version]


async def _handover(redis: Redis, scorer: Scorer, config: FollowConfig) -> tuple[float, ...] | None:
    """The thresholds at which ``scorer`` alerted, in its shadow run, on as many rows per level as the live model
    did (:func:`models.match_alert_rate`); None without a run of ``min_span_ms``."""
    keys = [k.format(version=scorer.version) for k in (HANDOVER_SCORES, HANDOVER_LIVE, HANDOVER_SPAN)]
    span = _fields(await redis.hgetall(keys[2]))
    if not span or int(span["last_ms"]) - int(span["first_ms"]) < config.min_span_ms:
        return None
    shadow = dict(await _scored(redis, keys[0]))
    live = {e: int(level) for e, level in await _scored(redis, keys[1])}
    rows = sorted(shadow.keys() | live.keys())
    if not rows:
        return None
    # A row alerting live below the shadow's floor scored too low for any of the shadow's thresholds: 0 stands in.
    return match_alert_rate(
        np.asarray([live.get(e, 0) for e in rows], dtype=float),
        [float(level) for level in range(1, len(scorer.thresholds) + 1)],
        np.asarray([shadow.get(e, 0.0) for e in rows]),
    )


async def _rescore_window(redis: Redis, scorer: Scorer, base: tuple[float, ...], config: FollowConfig) -> None:
    """Put the window's candidates on a promoted model's scale, as the field trial re-scores its window.

    They hold the old model's scores; read against the new thresholds they would look over- or underspent (a
    retrain scoring 2 log-odds lower sends its thresholds to the top at its first refit). A row the shadow scored
    takes its shadow score; one from before the shadow run, the shadow score of the same rank among the rows of
    the run (a quantile map, old to new); one during the run that the shadow scored below its floor, and any that
    falls below the new floor, leaves. Rows after the run are the new model's already. Marked done in the same
    transaction (``rescored``), so a crash in between never maps a row twice.
    """
    keys = [k.format(version=scorer.version) for k in (HANDOVER_SCORES, HANDOVER_SPAN)]
    span = _fields(await redis.hgetall(keys[1]))
    first, last = int(span["first_ms"]), int(span["last_ms"])
    shadow = dict(await _scored(redis, keys[0]))
    floors = {CANDIDATES: candidate_floor(base, config)}
    if scorer.hold_threshold is not None:
        floors[HOLD_CANDIDATES] = candidate_floor((scorer.hold_threshold,), config)
    pipe = redis.pipeline(transaction=True)
    for key in (CANDIDATES, HOLD_CANDIDATES):
        raw: list[Any] = await redis.zrangebyscore(key, "-inf", last, withscores=True)
        rows = [(member, orjson.loads(member), int(at)) for member, at in raw]
        during = [(float(f[2]), shadow.get(str(f[0]), 0.0)) for _, f, at in rows if at >= first]
        old_scale = np.sort(np.asarray([o for o, _ in during], dtype=float))
        new_scale = np.sort(np.asarray([n for _, n in during], dtype=float))
        out: dict[bytes, int] = {}
        for _, fields, at in rows:
            if at >= first:
                score = shadow.get(str(fields[0]), 0.0)
            elif len(old_scale):
                score = float(np.interp(float(fields[2]), old_scale, new_scale))
            else:
                score = 0.0  # no row of the run to map it by
            if score >= floors.get(key, 2.0):
                out[orjson.dumps([*fields[:2], round(score, 9), *fields[3:]])] = at
        if rows:
            pipe.zrem(key, *[member for member, _, _ in rows])
        if out:
            pipe.zadd(key, out)
    pipe.hset(STATE, "rescored", scorer.version)
    await pipe.execute()
    log.info("window re-scored for the promoted model", extra={"version": scorer.version})


async def _scored(redis: Redis, key: str) -> list[tuple[str, float]]:
    """Every (member, score) of a sorted set."""
    raw: list[Any] = await redis.zrange(key, 0, -1, withscores=True)
    return [(_text(member), float(score)) for member, score in raw]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def seed_follower(
    redis: Redis,
    settings: Settings,
    scorer: Scorer,
    followed: FollowResult,
    rows: list[FeatureRow],
    scores: list[float],
) -> int:
    """Write the follower's state after a history decided offline (:func:`models.follow_offline` over ``rows``
    and their ``scores``): its last thresholds and hold threshold, and the candidates of the last window, kept
    and stored as a worker keeps and stores them; how many rows were kept. Into an empty follower only."""
    if await redis.exists(STATE):
        raise StateNotEmpty("the followed thresholds already have a state: seed a new deployment only")
    if not rows:
        return 0
    budget = LiveBudget(settings)
    end = max(r.avail_ms for r in rows)
    for row, score in zip(rows, scores, strict=True):
        if row.avail_ms >= end - budget.config.max_window_ms:
            budget.observe(scorer, row.event_id, row.subscriber, row.avail_ms, score, row.schema)
    kept = len(budget._buffer)
    await budget._flush(redis, end)
    state: dict[Any, Any] = {  # Any keys: what redis-py's hset mapping accepts
        "model": scorer.version,
        "thresholds": orjson.dumps(list(followed.history[-1][1])),
        "base": orjson.dumps(list(scorer.thresholds)),
        "since_ms": min(r.avail_ms for r in rows),
        "refit_ms": end,
    }
    if followed.hold_history:
        state["hold"] = followed.hold_history[-1][1]
        state["hold_base"] = scorer.hold_threshold
    await redis.hset(STATE, mapping=state)
    return kept


async def refit_event_ms(redis: Redis) -> int | None:
    """The event time (the workers' watermark) of the thresholds' last refit; None before the first."""
    raw = await redis.hget(STATE, "refit_ms")
    return int(raw) if raw else None


async def _candidates(redis: Redis, key: str, since_ms: int) -> list[tuple[int, str, float, int]]:
    """The (event ms, pseudonym, score, cap) candidates of ``key`` from ``since_ms`` on, in time order."""
    raw: list[Any] = await redis.zrangebyscore(key, since_ms, "+inf", withscores=True)
    top = len(levels())
    out = []
    for member, at in raw:
        fields = orjson.loads(member)
        cap = int(fields[3]) if len(fields) > 3 else top  # hold candidates, and members of older workers
        out.append((int(at), str(fields[1]), float(fields[2]), cap))
    return out


def _previous(field: dict[str, str], scorer: Scorer, config: FollowConfig) -> tuple[float, ...]:
    """The thresholds ``scorer`` follows on from: the stored ones if they are its own, else the stored model's
    carried over (:func:`models.carry_over`), else (no state, or one from before bases were kept) its own."""
    base = tuple(scorer.thresholds)
    stored = _stored(field, "thresholds", len(base))
    if stored is None:
        return base
    if field.get("model") == scorer.version:
        return stored
    old_base = _stored(field, "base", len(base))
    return carry_over(stored, old_base, base, config) if old_base is not None else base


def _previous_hold(field: dict[str, str], scorer: Scorer, config: FollowConfig) -> float:
    """The hold threshold ``scorer`` follows on from, as :func:`_previous` for the levels'."""
    own = scorer.hold_threshold
    assert own is not None
    if not field.get("hold"):
        return own
    if field.get("model") == scorer.version:
        return float(field["hold"])
    if not field.get("hold_base"):
        return own
    return carry_over((float(field["hold"]),), (float(field["hold_base"]),), (own,), config)[0]


def _learnt_until(scorer: Scorer) -> int | None:
    """The training cut-off of a model trained on this city's own outcomes or reports (``fraudwatch train
    --labels/--reports``), else None: the latest rows of this stream it can have learnt."""
    data = scorer.meta.get("data", {})
    sources = data.get("sources", {})
    if not (sources.get("field_rows") or sources.get("field_labels") or sources.get("police_reports")):
        return None
    cutoff = sources.get("cutoff_ms") or data.get("to_ms")
    return int(cutoff) if cutoff is not None else None


def _promoted(field: dict[str, str], scorer: Scorer) -> bool:
    """True when the state is another model's: ``scorer`` was promoted since the last refit."""
    return bool(field.get("thresholds")) and field.get("model") != scorer.version


def _stored(field: dict[str, str], name: str, levels: int) -> tuple[float, ...] | None:
    """The thresholds stored under ``name``; None when absent or not of ``levels`` levels (an older state)."""
    stored = tuple(float(x) for x in orjson.loads(field[name])) if field.get(name) else ()
    return stored if stored and len(stored) == levels else None


def _stored_base(field: dict[str, str], scorer: Scorer) -> tuple[float, ...]:
    """The base stored for ``scorer``'s levels, else its own thresholds."""
    return _stored(field, "base", len(scorer.thresholds)) or tuple(scorer.thresholds)


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}
