"""The worker's followed thresholds against a real Redis: refitted from kept rows and recorded outcomes, shared by
workers, kept across a restart, and never in the way when Redis is away."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from redis.asyncio import Redis

from alerting import recent_outcomes
from core.errors import StateNotEmpty
from core.levels import decide_levels
from core.settings import Settings
from features import FeatureRow
from models import FollowResult
from streams.budget import CANDIDATES, HANDOVER_LIVE, HOLD_CANDIDATES, STATE, LiveBudget, seed_follower

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
BASE = (0.2, 0.4, 0.6)


def _settings(**extra: Any) -> Settings:
    return Settings(budget_follow=True, residents=10_000, budget_min_span_h=1.0, **extra)


def _scorer(version: str = "v1", hold: float | None = None, meta: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(version=version, thresholds=BASE, hold_threshold=hold, meta=meta or {})


async def _fresh(url: str) -> Redis:
    redis = Redis.from_url(url)
    await redis.delete(CANDIDATES, HOLD_CANDIDATES, STATE, "fw:budget:lock", "fw:budget:seen", "fw:labels")
    async for key in redis.scan_iter("fw:budget:handover:*"):
        await redis.delete(key)
    return redis


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _lower(p: np.ndarray) -> np.ndarray:
    """A retrain's scores of the same rows: every one 2 log-odds lower."""
    return np.asarray(1 / (1 + np.exp(-(np.log(p / (1 - p)) - 2.0))))


def test_a_flood_of_false_alarms_raises_the_thresholds_and_a_restart_keeps_them(redis_service: Any) -> None:
    async def go() -> None:
        redis = await _fresh(redis_service.url)
        budget = LiveBudget(_settings())
        scorer = _scorer()
        # Two hours of traffic in which 200 subscribers scored above the task threshold, each visit a false alarm.
        for i in range(200):
            budget.observe(scorer, f"e{i}", f"+8613{i:09d}", i * 36_000, 0.7 + i * 1e-4)
        for i in range(200):
            label = {"subscriber": f"+8613{i:09d}", "outcome": "false_alarm", "task_id": f"t{i}"}
            await redis.xadd("fw:labels", {"label": orjson.dumps(label)})
        await budget.refit(redis, scorer, watermark_ms=2 * 3_600_000)
        raised = budget.thresholds(scorer)
        assert raised[2] > 0.7 + 199e-4  # above every false alarm: ten thousand residents allow < 1 in two hours
        assert _logit(raised[2]) <= _logit(BASE[2]) + 10.0 + 1e-9  # within its documented bound
        assert list(raised) == sorted(raised)
        # The rows are in Redis once each, even if the same row is observed again (a re-delivery).
        budget.observe(scorer, "e0", "+8613000000000", 0, 0.7)
        await budget.refit(redis, scorer, watermark_ms=2 * 3_600_000 + 1)
        assert await redis.zcard(CANDIDATES) == 200
        # A restarted worker (or a second one) decides with the same thresholds before its first own refit.
        other = LiveBudget(_settings())
        await redis.set("fw:budget:lock", b"held by the first worker", px=60_000)
        await other.refit(redis, scorer, watermark_ms=2 * 3_600_000 + 2)
        assert other.thresholds(scorer) == budget.thresholds(scorer)
        # Another model version is not followed until a read-back...
        assert other.thresholds(_scorer("v2")) == BASE
        # ...and once promoted it starts from the learnt offset carried onto its own thresholds, not from them.
        v2 = SimpleNamespace(version="v2", thresholds=(0.1, 0.3, 0.5), hold_threshold=None)
        await redis.delete("fw:budget:lock")
        await redis.set("fw:budget:lock", b"held by another worker", px=60_000)
        await other.refit(redis, v2, watermark_ms=2 * 3_600_000 + 3)
        carried = other.thresholds(v2)
        for new, old, new_base, old_base in zip(carried, raised, v2.thresholds, BASE, strict=True):
            assert _logit(new) - _logit(new_base) == pytest.approx(_logit(old) - _logit(old_base), abs=1e-6)
        outcomes = await recent_outcomes(redis, 10)
        assert len(outcomes) == 10 and all(false for _, false in outcomes)
        await redis.aclose()

    asyncio.run(go())


def test_a_model_shadowed_before_its_promotion_takes_over_at_the_live_alert_volume(redis_service: Any) -> None:
    async def go() -> None:
        redis = await _fresh(redis_service.url)
        rng = np.random.default_rng(8)
        live = _scorer(hold=0.5)
        # The retrain scores every row 2 log-odds lower: its own thresholds would alert on far fewer rows.
        # It trained on this city's outcomes up to an hour in.
        learnt = {"data": {"sources": {"field_rows": 1000, "cutoff_ms": 3_600_000}}}
        shadow = SimpleNamespace(version="v2", thresholds=(0.1, 0.3, 0.5), hold_threshold=0.45, meta=learnt)
        scores = rng.random(3000)
        shadow_scores = _lower(scores)
        live_levels = decide_levels(scores.tolist(), BASE, ["call.v1"] * len(scores))
        budget = LiveBudget(_settings())
        for i, (score, mine, level) in enumerate(zip(scores, shadow_scores, live_levels, strict=True)):
            budget.observe(live, f"e{i}", f"+8613{i:09d}", i * 2_400, float(score))
            budget.observe_shadow(shadow, f"e{i}", i * 2_400, float(mine), level)
        budget.observe_shadow(shadow, "e0", 0, float(shadow_scores[0]), live_levels[0])  # a re-delivery
        await budget.refit(redis, live, watermark_ms=2 * 3_600_000)
        assert 0 < await redis.ttl(HANDOVER_LIVE.format(version="v2")) <= 14 * 86_400
        # Promoted: a worker (this one, or a restarted one) starts the new model where it alerts as much.
        other = LiveBudget(_settings())
        await redis.set("fw:budget:lock", b"held by the first worker", px=60_000)
        await other.refit(redis, shadow, watermark_ms=2 * 3_600_000 + 1)
        handed = other.thresholds(shadow)
        for level, threshold in enumerate(handed, 1):
            alerting_live = sum(1 for x in live_levels if x >= level)
            assert int((np.round(shadow_scores, 9) >= threshold).sum()) == alerting_live > 0  # as stored
        assert handed != shadow.thresholds and other.hold_threshold(shadow) == 0.45  # the hold: its own
        # Its first refit: bounds drawn around the handed-over thresholds, as the field trial's. It learnt this
        # city's rows up to an hour in, so its windows hold only later rows: however high it scores the rows it
        # learnt, they move none of its thresholds, the hold's included.
        await redis.delete("fw:budget:lock")
        await other.refit(redis, shadow, watermark_ms=2 * 3_600_000 + 2)
        state = {k.decode(): v for k, v in (await redis.hgetall(STATE)).items()}
        assert tuple(orjson.loads(state["base"])) == handed and int(state["learnt_until_ms"]) == 3_600_000
        stored = await redis.hgetall(STATE)

        async def a_day_on(model: Any, learnt_rows_score: float | None) -> tuple[tuple[float, ...], float | None]:
            await redis.delete("fw:budget:lock", CANDIDATES, HOLD_CANDIDATES)
            await redis.hset(STATE, mapping=stored)
            worker = LiveBudget(_settings())
            if learnt_rows_score is not None:
                for i in range(300):  # far more than any level's allowance, had they counted
                    worker.observe(
                        model, f"l{i}", f"+8614{i:09d}", 1_000 + i * 10_000, learnt_rows_score, "transfer.v1"
                    )
            worker.observe(model, "after", "+8615000000001", 2 * 3_600_000, 0.2, "call.v1")
            await worker.refit(redis, model, watermark_ms=DAY_MS)
            return worker.thresholds(model), worker.hold_threshold(model)

        unseen_only = await a_day_on(shadow, None)
        assert await a_day_on(shadow, 0.999999) == await a_day_on(shadow, 0.3) == unseen_only
        assert await redis.zcard(CANDIDATES) > 300  # they were stored, only not counted
        # A model that never learnt this city counts the same rows: high scores now raise its thresholds.
        never_learnt = SimpleNamespace(version="v2", thresholds=shadow.thresholds, hold_threshold=0.45, meta={})
        stored[b"learnt_until_ms"] = b""
        high, low = await a_day_on(never_learnt, 0.999999), await a_day_on(never_learnt, 0.3)
        assert high[0] > low[0] and high[1] is not None and low[1] is not None and high[1] > low[1]
        # A model never shadowed still carries the learnt offset over (the test above), and one that never saw
        # this city explores at full pace.
        never = SimpleNamespace(version="v3", thresholds=(0.1, 0.3, 0.5), hold_threshold=None, meta={})
        await redis.delete("fw:budget:lock")
        await other.refit(redis, never, watermark_ms=DAY_MS + 3_600_000 + 1)
        assert other.thresholds(never) != handed
        assert not await redis.hget(STATE, "learnt_until_ms")
        await redis.aclose()

    asyncio.run(go())


def test_a_promotion_puts_the_window_on_the_new_models_scale(redis_service: Any) -> None:
    async def go() -> None:
        redis = await _fresh(redis_service.url)
        rng = np.random.default_rng(9)
        live = _scorer()
        shadow = SimpleNamespace(version="v2", thresholds=(0.1, 0.3, 0.5), hold_threshold=None, meta={})

        budget = LiveBudget(_settings())
        # An hour of rows scored live only, then two hours also in shadow.
        early = rng.uniform(0.05, 0.99, 1000)
        for i, score in enumerate(early):
            budget.observe(live, f"a{i}", f"+8613{i:09d}", i * 3_600, float(score))
        run = rng.uniform(0.05, 0.99, 2000)
        levels = decide_levels(run.tolist(), BASE, ["call.v1"] * len(run))
        for i, (score, mine, level) in enumerate(zip(run, _lower(run), levels, strict=True)):
            at = 3_600_000 + i * 3_600
            budget.observe(live, f"b{i}", f"+8614{i:09d}", at, float(score))
            budget.observe_shadow(shadow, f"b{i}", at, float(mine), level)
        await budget.refit(redis, live, watermark_ms=3 * 3_600_000)
        before = {orjson.loads(m)[0]: s for m, s in await redis.zrange(CANDIDATES, 0, -1, withscores=True)}
        await redis.delete("fw:budget:lock")
        await budget.refit(redis, shadow, watermark_ms=3 * 3_600_000 + 1)
        after = {orjson.loads(m)[0]: float(orjson.loads(m)[2]) for m in await redis.zrange(CANDIDATES, 0, -1)}
        assert after.keys() <= before.keys() and len(after) > 1000
        # A row the shadow scored takes that score; one from before its run the score of the same rank.
        for i, score in enumerate(_lower(run)):
            if f"b{i}" in after:
                assert after[f"b{i}"] == pytest.approx(float(score), abs=1e-8)
        mapped = [(after[f"a{i}"], float(_lower(early[i : i + 1])[0])) for i in range(len(early)) if f"a{i}" in after]
        assert len(mapped) > 500 and max(abs(a - b) for a, b in mapped) < 0.03
        assert (await redis.hget(STATE, "rescored")) == b"v2"
        await redis.aclose()

    asyncio.run(go())


def test_the_hold_threshold_follows_false_holds_on_transfers_only(redis_service: Any) -> None:
    async def go() -> None:
        redis = await _fresh(redis_service.url)
        budget = LiveBudget(_settings())
        scorer = _scorer(hold=0.5)
        # Two hours: 100 transfers of innocent people above the hold threshold, and 300 calls scored higher still.
        for i in range(100):
            sub = f"+8613{i:09d}"
            budget.observe(scorer, f"t{i}", sub, i * 72_000, 0.55 + i * 1e-4, "transfer.v1")
            await redis.xadd("fw:labels", {"label": orjson.dumps({"subscriber": sub, "outcome": "false_alarm"})})
        for i in range(300):
            budget.observe(scorer, f"c{i}", f"+8614{i:09d}", i * 24_000, 0.9, "call.v1")
        await budget.refit(redis, scorer, watermark_ms=2 * 3_600_000)
        held_from = budget.hold_threshold(scorer)
        assert held_from is not None and held_from > 0.5599  # above every false hold (kept to 9 digits): none fit
        assert await redis.zcard(HOLD_CANDIDATES) == 100  # the calls are no hold candidates
        # Another worker holds from the same threshold; a model without one holds nothing.
        other = LiveBudget(_settings())
        await redis.set("fw:budget:lock", b"held by the first worker", px=60_000)
        await other.refit(redis, scorer, watermark_ms=2 * 3_600_000 + 1)
        assert other.hold_threshold(scorer) == held_from
        assert other.hold_threshold(_scorer("v2")) is None
        await redis.aclose()

    asyncio.run(go())


def test_a_seeded_follower_is_what_the_workers_decide_with(redis_service: Any) -> None:
    async def go() -> None:
        redis = await _fresh(redis_service.url)
        scorer = _scorer(hold=0.5)
        kinds = ["call.v1", "call_start.v1", "transfer.v1", "call.v1"]
        # A week and a day of rows: the first is older than the longest window and is not kept.
        times = [0, 8 * DAY_MS, 8 * DAY_MS + 1, 8 * DAY_MS + 2]
        rows = [
            FeatureRow(f"e{i}", f"+8613{i:09d}", t, k != "transfer.v1", (), None, None, k)
            for i, (t, k) in enumerate(zip(times, kinds, strict=True))
        ]
        followed = FollowResult(
            np.zeros(4, dtype=np.int8), [(0, BASE), (DAY_MS, (0.3, 0.5, 0.7))], hold_history=[(0, 0.5), (DAY_MS, 0.65)]
        )
        kept = await seed_follower(redis, _settings(), scorer, followed, rows, [0.9, 0.9, 0.9, 0.01])
        assert (
            kept == 2 and await redis.zcard(CANDIDATES) == 2
        )  # the recent connect and transfer; not the old call nor the low score
        assert await redis.zcard(HOLD_CANDIDATES) == 1
        worker = LiveBudget(_settings())
        await redis.set("fw:budget:lock", b"held", px=60_000)  # read back only, no refit of its own
        await worker.refit(redis, scorer, watermark_ms=8 * DAY_MS + 3)
        assert worker.thresholds(scorer) == (0.3, 0.5, 0.7) and worker.hold_threshold(scorer) == 0.65
        with pytest.raises(StateNotEmpty):
            await seed_follower(redis, _settings(), scorer, followed, rows, [0.9] * 4)
        await redis.aclose()

    asyncio.run(go())


def test_thresholds_off_keeps_the_models_own(redis_service: Any) -> None:
    async def go() -> None:
        redis = await _fresh(redis_service.url)
        budget = LiveBudget(Settings(budget_follow=False, residents=10_000))
        scorer = _scorer()
        budget.observe(scorer, "e1", "+8613000000001", 0, 0.99)
        await budget.refit(redis, scorer, watermark_ms=DAY_MS)
        assert budget.thresholds(scorer) == BASE
        assert await redis.zcard(CANDIDATES) == 0
        await redis.aclose()

    asyncio.run(go())


def test_redis_away_keeps_the_rows_and_the_thresholds() -> None:
    async def go() -> None:
        budget = LiveBudget(_settings())
        scorer = _scorer()
        budget.observe(scorer, "e1", "+8613000000001", 0, 0.99)
        dead = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
        await budget.refit(dead, scorer, watermark_ms=DAY_MS)  # logged and counted, not raised
        assert budget.thresholds(scorer) == BASE
        assert len(budget._buffer) == 1  # kept for the next refit
        await dead.aclose()

    asyncio.run(go())
