"""The main job on loopback: real broker, real Redis, a simulated city, a model, a worker, a receiver.

Everything it starts it stops again, also on error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.settings import Settings
from sandbox.services import RunningService, free_port, start_redis, start_tansu
from sandbox.simulate import DAY_MS, CityConfig, raw_event_ms, simulate, write_city

__all__ = [
    "BAD_LINES",
    "DEFAULT_TRAIN_WORLDS",
    "DEMO_STALE_S",
    "DemoConfig",
    "caught_before_loss",
    "default_training_worlds",
    "ensure_model",
    "run_demo",
    "scrape",
    "start_worker",
    "stop_worker",
    "summarise",
    "total",
]

DEMO_STALE_S = 7 * 86_400
# A few broken lines ride along with the replay so the dead-letter path is exercised every run.
BAD_LINES = (
    b"{not json",
    b'{"schema": "call.v1", "event_id": "bad-1"}',
    b'{"schema": "transfer.v1", "event_id": "bad-2", "ts_ms": 1, "subscriber": "12345", "payer_account": "A",'
    b' "payee_account": "B", "amount": -5, "currency": "CNY", "channel": "mobile_app"}',
    b'{"schema": "sms.v9", "event_id": "bad-3", "ts_ms": 1}',
    b"\xff\xfe\x00garbage",
)


@dataclass(frozen=True)
class DemoConfig:
    """Size of the simulated days and of the training city used when no model exists yet."""

    subscribers: int = 3000
    days: float = 2.0  # the judged days: the summary counts only these
    # Days of the same city simulated before the judged ones and replayed first, unpaced, so that the judged
    # days meet a running service's state (callers' and payees' 7 d histories, the thresholds after a week of
    # outcomes), not a cold start. A week at 3,000 is ~131k events: replayed in 12 s and drained in 202 s on 2
    # cores shared with two other jobs. Replayed through the worker rather than seeded (``fraudwatch
    # seed-state``), because the thresholds learn from the history's own tasks and outcomes.
    history_days: float = 7.0
    # "seed": the history's state is built offline, written to the changelogs before the worker starts, and the
    # thresholds follow its outcomes offline (models.follow_offline, as `evaluate` does) into the worker's Redis.
    # "replay": the history goes through the worker unpaced. Compressing a week into a minute reorders the three
    # input topics and outruns the feedback hop, so the features, and the thresholds after them, differ from
    # what a service running in real time computes (measured: task threshold 0.998 after the history, 0.95
    # offline on the same stream); seeding gives what a real week would have.
    history_mode: Literal["seed", "replay"] = "seed"
    seed: int = 101
    victims_per_10k_per_day: float = 30.0
    # Same city size, more days: fan-out and other per-city counts then mean the same at training and serving.
    train_days: float = 14.0
    train_seed: int = 7
    train_victims_per_10k_per_day: float = 40.0
    # The model card's hold-out city runs this many days before the judged ones, so that the card's main
    # figures have a history behind their features, as a live service's do (it also shows the cold start).
    card_warmup_days: float = 7.0
    replay_seconds: float = 60.0  # the simulated days are replayed in event-time order within this
    # The stand-in responders record each judged-day visit's outcome this long (event time) after its task,
    # as evaluate assumes, so the thresholds keep following feedback during the judged days too.
    outcome_delay_h: float = 4.0
    # How often (wall seconds) the worker refits its followed thresholds. A service refits every 30 s of a
    # real-time stream; the demo runs days in a minute, where 30 s would be a day of event time per refit,
    # and one refit would step the thresholds down a whole day's pace at once (seen: pinned at the lower bound).
    budget_update_s: float = 1.0
    # Share of the city's answered calls signalled when they connect (call_start.v1); 0: no signalling feed.
    signalling: float = 1.0
    # The training worlds' signalled shares (WorldRanges.signalling): full, none and lossy, so the model the demo
    # trains serves a city with or without a feed.
    train_signalling: tuple[float, ...] = (1.0, 0.0, 0.5)
    timeout_s: float = 300.0  # how long the worker may make no progress before the run gives up
    hold: bool = False  # keep the console (and everything behind it) up after the summary, until Ctrl-C
    console_port: int = 0


def _say(message: str) -> None:
    print(f"[fraudwatch] {message}", file=sys.stderr, flush=True)


@contextmanager
def _service(service: RunningService | None) -> Iterator[RunningService | None]:
    try:
        yield service
    finally:
        if service is not None:
            service.stop()


# Worlds of the default training: few enough that their featurising stays about one training city's cost.
DEFAULT_TRAIN_WORLDS = 3


def default_training_worlds(config: DemoConfig) -> list[CityConfig]:
    """The sampled worlds the demo trains on when it has no model: as many subscriber-days as one
    ``subscribers x train_days`` city (so about its cost), spread over cities of 2/3x to 10/3x that size,
    each at least 2 days long (see ``WorldRanges.days``)."""
    from sandbox.worlds import WorldRanges, sample_worlds

    rate = config.train_victims_per_10k_per_day
    ranges = WorldRanges(
        subscribers=(round(config.subscribers * 2 / 3), round(config.subscribers * 10 / 3)),
        subscriber_days=config.subscribers * config.train_days,
        days=(2.0, config.train_days),
        victims_per_10k_per_day=(rate / 2, rate * 1.5),
        signalling=config.train_signalling,
    )
    return sample_worlds(DEFAULT_TRAIN_WORLDS, config.train_seed, ranges)


def ensure_model(settings: Settings, config: DemoConfig) -> str:
    """The live model's version, training one on a separate simulated city if the registry is empty."""
    from core.errors import FeatureMismatch, NoModel
    from models import ModelRegistry, check_features
    from sandbox.training import holdout_city, train_on_worlds

    try:
        live = ModelRegistry(settings.models_path).live()
        check_features(live)
        return live.version
    except NoModel:
        pass
    except FeatureMismatch as exc:  # an older model (the features changed since): the demo trains a current one
        _say(f"the live model does not fit the current features ({exc}); training a new one")
    worlds = default_training_worlds(config)
    sizes = ", ".join(f"{w.subscribers} x {w.days:g} days" for w in worlds)
    _say(f"no model yet: simulating {len(worlds)} training worlds ({sizes}); training; then a model card")
    warmup = config.card_warmup_days
    # The card's hold-out city is the demo's own kind of city, right after the longest training world.
    template = CityConfig(
        subscribers=config.subscribers,
        days=max(w.days for w in worlds),
        seed=config.train_seed,
        victims_per_10k_per_day=config.train_victims_per_10k_per_day,
        signalling=config.signalling,
    )
    version = train_on_worlds(
        worlds,
        settings,
        promote=True,
        # Thresholds from the held-out days rather than 4 subscriber folds (15 boosters -> 3): the live
        # thresholds follow the outcomes from there (models/feedback.py), so the folds' finer starting
        # point is not worth 10 minutes of a first run on 2 cores.
        threshold_folds=0,
        card_city=holdout_city(template, warmup_days=warmup),
        card_warmup_days=warmup,
        out_dir=settings.data_dir / "train-worlds",
    )
    _say(f"model card: {version.path / 'card.md'}")
    return version.version


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("wb") as fh:
        fh.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def scrape(url: str) -> dict[str, float]:
    """Prometheus samples of a /metrics page as ``name{labels}`` -> value."""
    text = httpx.get(url, timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for key, v in samples.items() if key.startswith(name + "{") and all(w in key for w in want))


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float, what: str = "worker") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see its log")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready in time")


def start_worker(settings: Settings, env_overrides: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Launch ``fraudwatch worker`` as its own process with the given FW_* settings."""
    return _spawn("worker", env_overrides, log_path)


def start_dispatch(env_overrides: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Launch ``fraudwatch dispatch`` (console, responder app, ack watcher, label publisher) as its own process."""
    return _spawn("dispatch", env_overrides, log_path)


def _spawn(command: str, env_overrides: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_overrides}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "fraudwatch.cli", command], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after a grace period."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def caught_before_loss(tasks: list[dict[str, Any]], cases: list[dict[str, Any]], level: int = 3) -> dict[str, Any]:
    """How many cases with a loss got a task of ``level`` or more before (and by) the first loss."""
    first_task: dict[str, list[int]] = {}
    for task in tasks:
        if int(task["level"]) >= level:
            first_task.setdefault(task["subscriber"], []).append(int(task["created_ms"]))
    with_loss = [c for c in cases if c.get("first_loss_ms") is not None]
    before = by = 0
    leads = []
    for case in with_loss:
        times = [
            t for t in first_task.get(case["victim"], []) if case["first_contact_ms"] <= t <= case["first_loss_ms"]
        ]
        if times:
            by += 1
            if min(times) < case["first_loss_ms"]:
                before += 1
                leads.append((case["first_loss_ms"] - min(times)) / 1000)
    return {
        "cases": len(cases),
        "cases_with_loss": len(with_loss),
        "caught_before_money_left": before,
        "caught_by_first_transfer": by,
        "median_lead_time_min": round(statistics.median(leads) / 60, 1) if leads else None,
    }


async def _replay_and_wait(
    settings: Settings,
    events_path: Path,
    metrics_url: str,
    config: DemoConfig,
    receiver: Any,
    speedup: float | None,
    sent_before: int = 0,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Replay a file (``speedup`` None: as fast as the broker takes it) and wait until the worker drained it.

    ``sent_before``: events an earlier phase sent, which the worker's counters include; ``timeout_s`` (default
    the config's) is how long the worker may go without scoring anything before this gives up.
    """
    from alerting import Dispatcher
    from core.levels import level_numbers
    from streams import replay_events as replay

    started = time.monotonic()
    stats = await replay(events_path, settings, speedup=speedup)
    _say(f"replayed {stats.sent} events in {stats.seconds:.1f} s ({stats.rate:,.0f}/s); waiting for the worker")
    patience = timeout_s if timeout_s is not None else config.timeout_s
    deadline = time.monotonic() + patience
    redis = Redis.from_url(settings.redis_url or "")
    dispatcher = Dispatcher(redis, settings)
    samples: dict[str, float] = {}
    progress = -1.0
    try:
        while True:
            try:
                samples = await asyncio.to_thread(scrape, metrics_url)
            except httpx.HTTPError:  # a worker busy draining a backlog may answer /metrics late: ask again
                samples = {}
            consumed = total(samples, "fw_events_consumed_total")
            dead = total(samples, "fw_dead_letters_total")
            done = total(samples, "fw_events_scored_total") + total(samples, "fw_duplicate_events_total")
            alert_stats = await dispatcher.stats()
            # Every alert scored has been explained and acted on too (the explain hop runs behind scoring: an
            # unpaced history's alerts would otherwise spill into the judged days, tasks and outcomes with them).
            alerted = sum(total(samples, "fw_decisions_total", level=str(n)) for n in level_numbers())
            if (
                samples
                and consumed + dead >= sent_before + stats.sent
                and done >= consumed
                and total(samples, "fw_alerts_total") >= alerted
                and not alert_stats["outbox"]
            ):
                received = receiver.stats()
                if received["received"] >= alert_stats["tasks"]:
                    break
            if samples and done > progress:
                # The bound is on a stall, not on the whole drain: a slow machine may take long over a week.
                progress, deadline = done, time.monotonic() + patience
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker made no progress for {patience:.0f} s: consumed={consumed} dead={dead} done={done}"
                )
            await asyncio.sleep(0.5)
    finally:
        await redis.aclose()
    return {"replay": stats, "samples": samples, "alerting": alert_stats, "seconds": time.monotonic() - started}


def run_demo(settings: Settings, config: DemoConfig) -> dict[str, Any]:
    """Run the whole service once over a simulated city and return the summary."""
    from alerting import ResponderRegistry, resolve_open_tasks, write_demo_tokens
    from sandbox.receiver import ReceiverServer
    from streams import ensure_topics

    started = time.monotonic()
    data = settings.data_dir
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model_version = ensure_model(settings, config)
    _say(f"model {model_version}")
    city_config = CityConfig(
        subscribers=config.subscribers,
        days=config.history_days + config.days,
        seed=config.seed,
        victims_per_10k_per_day=config.victims_per_10k_per_day,
        signalling=config.signalling,
    )
    city = simulate(city_config)
    judged_from = city_config.start_ms + int(config.history_days * DAY_MS)
    paths = write_city(city, data / "city")
    history = [e for e in city.events if raw_event_ms(e) < judged_from]
    paths["history"] = paths["events"].with_name("history.jsonl")
    _write_jsonl(paths["history"], history)
    _write_jsonl(paths["events"], city.events[len(history) :])  # events are sorted by their own time
    with paths["events"].open("ab") as fh:
        fh.write(b"\n".join(BAD_LINES) + b"\n")
    _say(
        f"simulated {len(history)} events of history ({config.history_days:g} days) and "
        f"{len(city.events) - len(history)} judged ({config.days:g} days), {len(city.cases)} cases -> {paths['events']}"
    )

    # The embedded Redis is durable while it runs (append-only file: a Redis killed mid-run comes back with its
    # cases and outbox) but starts empty, as the embedded broker does: a run's cases are its own.
    redis_dir = data / "redis"
    shutil.rmtree(redis_dir, ignore_errors=True)
    if not settings.broker_url:
        # A local state store beside a fresh in-memory broker would hold the last run's states.
        shutil.rmtree(settings.state_path, ignore_errors=True)
    with ExitStack() as stack:
        broker = stack.enter_context(
            _service(None if settings.broker_url else start_tansu(log_path=logs / "tansu.log"))
        )
        redis_service = stack.enter_context(
            _service(None if settings.redis_url else start_redis(log_path=logs / "redis.log", data_dir=redis_dir))
        )
        overrides = {
            "broker_url": settings.broker_url or (broker.url if broker else None),
            "redis_url": settings.redis_url or (redis_service.url if redis_service else None),
        }
        _say(f"broker {overrides['broker_url']}, redis {overrides['redis_url']}")

        async def main() -> dict[str, Any]:
            server = ReceiverServer()
            receiver_url = await server.start()
            dispatch_url = settings.dispatch_url or server.tasks_url
            port = free_port()
            tokens = write_demo_tokens(data, [r["responder_id"] for r in city.responders])
            run_settings = settings.model_copy(
                update={
                    **overrides,
                    "dispatch_url": dispatch_url,
                    "worker_web_port": port,
                    "console_tokens_file": tokens.path,
                    # Simulated responders send no heartbeats; the roster load is their last sign of life.
                    "responder_stale_s": DEMO_STALE_S,
                    "budget_update_s": config.budget_update_s,
                }
            )
            await ensure_topics(run_settings)
            redis = Redis.from_url(run_settings.redis_url or "")
            await ResponderRegistry(redis).load(city.responders)
            await redis.aclose()
            console_port = config.console_port or free_port()
            console_url = f"http://127.0.0.1:{console_port}"
            env = {
                "FW_BROKER_URL": run_settings.broker_url or "",
                "FW_REDIS_URL": run_settings.redis_url or "",
                "FW_DISPATCH_URL": dispatch_url,
                "FW_DATA_DIR": str(data),
                "FW_WORKER_WEB_PORT": str(port),
                "FW_PARTITIONS": str(settings.partitions),
                "FW_RESPONDER_STALE_S": str(DEMO_STALE_S),
                # The budget is per resident: the simulated city's subscribers, not every number seen.
                "FW_RESIDENTS": str(settings.residents or config.subscribers),
                "FW_BUDGET_UPDATE_S": str(config.budget_update_s),
                "FW_CONSOLE_TOKENS_FILE": str(tokens.path),
            }
            # The stand-in responders resolve visits on the replay's clock, not the wall clock: the watcher
            # would escalate every one of them unless the console is held open for people to use.
            console = start_dispatch(
                {**env, "FW_CONSOLE_PORT": str(console_port), "FW_ACK_WATCH": "1" if config.hold else "0"},
                logs / "dispatch.log",
            )
            stack.callback(stop_worker, console)  # stopped before the broker and Redis it uses
            await asyncio.to_thread(_wait_ready, console_url, console, 60, "dispatch service")
            _say(f"dispatch service {console_url}/  (dispatcher token: {tokens.dispatcher}; logs {logs}/dispatch.log)")
            victims = victims_of(city.cases)  # whose visits the stand-in responders record as not false
            seeded: dict[str, Any] | None = None
            if config.history_mode == "seed" and paths["history"].stat().st_size:
                _say(f"building {config.history_days:g} days of history offline: state, thresholds, outcomes")
                seeded = await _seed_history(run_settings, paths["history"], city.cases, config)
                _say(
                    f"history seeded in {seeded['seconds']:.0f} s: {seeded['rows']} rows, {seeded['tasks']} visits, "
                    f"task threshold {seeded['task_threshold_at_end']:.4f}; now the judged days"
                )
            proc = start_worker(run_settings, env, logs / "worker.log")
            try:
                _say(f"worker pid {proc.pid}, metrics http://127.0.0.1:{port}/metrics; waiting until ready")
                await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{port}", proc, 180)
                metrics_url = f"http://127.0.0.1:{port}/metrics"
                history: dict[str, Any] | None = None
                if seeded is None and paths["history"].stat().st_size:
                    _say(f"replaying {config.history_days:g} days of history unpaced: the worker builds its state")
                    history_outcomes = asyncio.create_task(
                        _stand_in_responders(run_settings, victims, worker_clock, config)
                    )
                    try:
                        history = await _replay_and_wait(
                            run_settings,
                            paths["history"],
                            metrics_url,
                            config,
                            server.receiver,
                            speedup=None,
                        )
                    finally:
                        history_outcomes.cancel()
                        during = await asyncio.gather(history_outcomes, return_exceptions=True)
                    _say(f"history drained in {history['seconds']:.0f} s; now the judged days")
                    # The history's visits are over by the judged days: every responder is back as rostered, and
                    # has recorded each visit's outcome (from the cases: no case, a false alarm; most of them
                    # during the replay), which the worker's thresholds follow (models/feedback.py).
                    redis = Redis.from_url(run_settings.redis_url or "")
                    resolved = await resolve_open_tasks(redis, run_settings, victims.outcome, STAND_IN_RESPONDERS)
                    history["outcomes_recorded"] = _resolved_count(during[0]) + resolved
                    await ResponderRegistry(redis).load(city.responders)
                    await redis.aclose()
                    await asyncio.sleep(run_settings.budget_update_s + 1)  # one refit sees them
                speedup = config.days * 86_400 / max(config.replay_seconds, 1.0)
                stand_ins = asyncio.create_task(
                    _stand_in_responders(run_settings, victims, paced_clock(judged_from, speedup), config)
                )
                try:
                    result = await _replay_and_wait(
                        run_settings,
                        paths["events"],
                        metrics_url,
                        config,
                        server.receiver,
                        speedup,
                        sent_before=history["replay"].sent if history else 0,
                    )
                finally:
                    stand_ins.cancel()
                    outcomes = await asyncio.gather(stand_ins, return_exceptions=True)
                result["outcomes_recorded"] = _resolved_count(outcomes[0])
                result["history"] = history
                result["seeded_history"] = seeded
                result["judged_from_ms"] = judged_from
                result["tasks"] = list(server.receiver.tasks)
                result["receiver_url"] = receiver_url
                result["console_url"] = console_url + "/"
                if config.hold:
                    _say("summary below; the console stays up for the dispatchers until Ctrl-C")
                    print(
                        orjson.dumps(
                            summarise(result, paths["cases"], model_version, started), option=orjson.OPT_INDENT_2
                        ).decode(),
                        flush=True,
                    )
                    await _until_interrupted()
                return result
            finally:
                stop_worker(proc)
                await server.stop()

        result = asyncio.run(main())
    return summarise(result, paths["cases"], model_version, started)


STAND_IN_RESPONDERS = "demo-responders"


@dataclass(frozen=True)
class _Victims:
    """Who the simulated cases' victims are: a visit to one is not a false alarm."""

    people: frozenset[str]

    def outcome(self, subscriber: str) -> str:
        """The outcome a stand-in responder records for a visit to ``subscriber``."""
        return "dissuaded" if subscriber in self.people else "false_alarm"


def victims_of(cases: list[dict[str, Any]]) -> _Victims:
    """The cases' victims, for the stand-in responders."""
    return _Victims(frozenset(c["victim"] for c in cases))


async def _seed_history(
    settings: Settings, history: Path, cases: list[dict[str, Any]], config: DemoConfig
) -> dict[str, Any]:
    """Build the history's feature state offline into the empty changelogs, decide it as ``evaluate`` does
    (thresholds following simulated outcomes, ``config.outcome_delay_h`` after each visit) and write the
    follower's state and those outcomes into Redis; what it did, for the summary."""
    from alerting import record_history_labels
    from core.levels import levels
    from features import FeatureEngine
    from models import Dataset, FollowConfig, ModelRegistry, Scorer, count_tasks, followed_levels, load_events
    from streams import seed_follower, seed_tables

    started = time.monotonic()
    loaded = load_events(history)
    engine = FeatureEngine()
    rows = await asyncio.to_thread(lambda: list(engine.run(loaded.events)))
    await seed_tables(settings, engine.key_states(), engine.subscribers)
    scorer = Scorer(ModelRegistry(settings.models_path).live())
    X = np.asarray([r.values for r in rows], dtype=np.float64)
    scores = await asyncio.to_thread(scorer.score, X)
    delay_ms = int(config.outcome_delay_h * 3_600_000)
    data = Dataset(rows, X, np.zeros(len(rows), dtype=np.int8), np.asarray([r.avail_ms for r in rows], dtype=np.int64))
    followed = await asyncio.to_thread(
        followed_levels,
        data,
        cases,
        scorer,
        scores,
        settings.residents or config.subscribers,
        settings.budget_tasks_per_10k_per_day,
        settings.episode_ms,
        FollowConfig.from_settings(settings),
        delay_ms,
        settings.budget_holds_per_10k_per_day,
    )
    # The visits' outcomes that had come back by the history's end, oldest first, as responders record them.
    end = max((r.avail_ms for r in rows), default=0)
    top = len(levels())
    visits = count_tasks(
        [(r.subscriber, r.avail_ms) for r, level in zip(rows, followed.levels.tolist(), strict=True) if level >= top],
        settings.episode_ms,
    )
    victims = victims_of(cases)
    labels = [
        {"subscriber": sub, "outcome": victims.outcome(sub), "at_ms": at} for sub, at in visits if at + delay_ms <= end
    ]
    redis = Redis.from_url(settings.redis_url or "")
    try:
        outcomes = await record_history_labels(redis, labels)  # count_tasks lists them in time order
        candidates = await seed_follower(redis, settings, scorer, followed, rows, scores.tolist())
    finally:
        await redis.aclose()
    return {
        "mode": "seeded",
        "events": len(loaded.events),
        "rows": len(rows),
        "tasks": followed.tasks,
        "outcomes_recorded": outcomes,
        "threshold_candidates": candidates,
        "task_threshold_at_end": round(followed.history[-1][1][-1], 6),
        "hold_threshold_at_end": round(followed.hold_history[-1][1], 6) if followed.hold_history else None,
        "seconds": round(time.monotonic() - started, 1),
        "not_counted_above": True,
    }


EventNow = Callable[[Redis], Awaitable[int | None]]  # the stream's event time now (None: not known yet)


def paced_clock(start_ms: int, speedup: float) -> EventNow:
    """Event time read off a paced replay: it sends the event of time T at ``(T - start) / speedup`` seconds."""
    started = time.monotonic()

    async def now(_redis: Redis) -> int | None:
        return start_ms + int((time.monotonic() - started) * speedup * 1000)

    return now


async def worker_clock(redis: Redis) -> int | None:
    """Event time as the worker's last threshold refit saw it (an unpaced replay has no clock of its own)."""
    from streams import refit_event_ms

    return await refit_event_ms(redis)


async def _stand_in_responders(settings: Settings, victims: _Victims, event_now: EventNow, config: DemoConfig) -> int:
    """Until cancelled, resolve each task ``outcome_delay_h`` of event time after it was created; how many.

    So a visit's outcome comes back when the stream is about that many hours further on, in the history's
    unpaced replay as in the judged days (without outcomes all week, the thresholds would count every
    history task as half false and start the judged days pinned high).
    """
    from alerting import resolve_open_tasks

    delay_ms = int(config.outcome_delay_h * 3_600_000)
    redis = Redis.from_url(settings.redis_url or "")
    resolved = 0
    try:
        while True:
            await asyncio.sleep(1.0)
            try:
                now_ms = await event_now(redis)
                if now_ms is None:
                    continue
                resolved += await resolve_open_tasks(
                    redis, settings, victims.outcome, STAND_IN_RESPONDERS, created_before_ms=now_ms - delay_ms
                )
            except (OSError, RedisError) as exc:  # Redis away for a moment: the next pass catches up
                _say(f"stand-in responders could not record outcomes: {exc}")
    except asyncio.CancelledError:
        return resolved
    finally:
        await redis.aclose()


def _resolved_count(outcome: int | BaseException) -> int:
    if isinstance(outcome, BaseException):
        _say(f"stand-in responders stopped: {outcome!r}")
        return 0
    return outcome


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _task_threshold(samples: dict[str, float]) -> float | None:
    """The face-to-face level's followed threshold the worker reported (None before its first refit)."""
    from core.levels import levels

    key = f"fw_level_threshold{{level={len(levels())}}}"
    return round(samples[key], 6) if key in samples else None


def summarise(result: dict[str, Any], cases_path: Path, model_version: str, started: float) -> dict[str, Any]:
    """The human summary of a run: what flowed, what was alerted, who was reached before the money left.

    With a history phase (``result["history"]``), only the judged days count: the worker's counters as
    differences from the end of the history, the tasks created (event time) and the cases first contacted
    from ``result["judged_from_ms"]`` on (a case begun in the history is half-seen and left out).
    """
    samples = result["samples"]
    history = result.get("history")
    seeded = result.get("seeded_history")
    base: dict[str, float] = history["samples"] if history else {}
    judged_from = result.get("judged_from_ms") if history or seeded else None

    def counted(name: str, **labels: str) -> int:
        return int(total(samples, name, **labels) - total(base, name, **labels))

    cases = [orjson.loads(line) for line in cases_path.read_bytes().splitlines() if line.strip()]
    tasks = result["tasks"]
    if judged_from is not None:
        cases = [c for c in cases if c["first_contact_ms"] >= judged_from]
        tasks = [t for t in tasks if int(t["created_ms"]) >= judged_from]
    summary: dict[str, Any] = {
        "events_sent": result["replay"].sent,
        "events_processed": counted("fw_events_scored_total"),
        "call_starts_processed": counted("fw_events_scored_total", kind="call_start.v1"),
        "duplicates_ignored": counted("fw_duplicate_events_total"),
        "dead_letters": counted("fw_dead_letters_total"),
        "alerts_by_level": {str(level): counted("fw_decisions_total", level=str(level)) for level in (1, 2, 3)},
        # Alerts decided while the person was on a signalled call: the warnings that can interrupt the scam.
        "in_call_alerts_by_level": {
            str(level): counted("fw_in_call_alerts_total", level=str(level)) for level in (1, 2, 3)
        },
        # The warnings and calls those alerts made (an in-call one interrupts the call), and the actions a case
        # repeated for a new call or transfer of its episode.
        "in_call_actions_by_level": {
            str(level): counted("fw_in_call_actions_total", level=str(level)) for level in (1, 2, 3)
        },
        "repeated_actions": counted("fw_repeated_actions_total"),
        # Payment holds asked of the bank, and what became of them (released, cancelled, lapsed).
        "holds": {
            event: counted("fw_holds_total", event=event) for event in ("issued", "released", "cancelled", "lapsed")
        },
        "tasks_dispatched": len(tasks),
        "tasks_by_level": {str(lv): sum(1 for t in tasks if int(t["level"]) == lv) for lv in (2, 3)},
        "face_to_face": caught_before_loss(tasks, cases, level=3),
        "any_task": caught_before_loss(tasks, cases, level=2),
        "outcomes_recorded": int(result.get("outcomes_recorded", 0)),
        "task_threshold_at_end": _task_threshold(samples),
        "model_version": model_version,
        "console": result.get("console_url"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "logs": str(Path(cases_path).parent.parent / "logs"),
    }
    if seeded:
        summary["history"] = seeded
    if history:
        summary["history"] = {
            "events_sent": history["replay"].sent,
            "replay_s": round(history["replay"].seconds, 1),
            "replayed_and_drained_s": round(history["seconds"], 1),
            "tasks": len(result["tasks"]) - len(tasks),
            "outcomes_recorded": history.get("outcomes_recorded", 0),
            "task_threshold_at_end": _task_threshold(base),
            "not_counted_above": True,
        }
    return summary
