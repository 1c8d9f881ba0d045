"""``soak``: one real worker under a steady offered load for a long time, watched for leaks and drift.

It starts what the benchmark starts (Tansu, redis-server, a stand-in dispatch receiver, one worker
process), then offers simulated events at a fixed rate for the given minutes. The events come from
successive seeded cities (seed, seed + 1, ...), simulated while the previous one is being sent; each
city starts where the previous one ended in event time, so the worker's windows move forward and idle
keys expire as they would in production, and every event keeps a unique ``event_id`` (it carries the
city's seed).

Every ``sample_s`` seconds one JSON line goes to stdout: events sent and scored so far, the worker's
resident memory (VmRSS), p50/p99 event-to-decision latency of that interval (histogram deltas),
consumer lag and feature-state keys. At the end one ``{"summary": ...}`` line carries least-squares
slopes (RSS in MB per minute, p99 in ms per minute, keys per minute): a leak shows as an RSS slope that
does not flatten. Feature-state keys grow until event time has covered the longest window (7 days of
simulated time, one city per day), so compare the RSS slope with the keys slope before calling a leak.

Everything it starts is stopped again, also on Ctrl-C or SIGTERM (the first one ends the run early and
still prints the summary; a second one aborts).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import orjson

from core.settings import Settings
from sandbox.benchmark import _wait_ready, cpu_seconds, histogram_quantiles
from sandbox.demo import DemoConfig, ensure_model, scrape, start_worker, stop_worker, total
from sandbox.services import free_port, start_redis, start_tansu
from sandbox.simulate import CityConfig, simulate
from streams import Routed, load_lines

__all__ = [
    "EVENTS_PER_SUBSCRIBER_DAY",
    "LATENCY",
    "CityFeed",
    "SoakConfig",
    "run_soak",
    "slope_per_minute",
    "summarise",
    "vm_rss_mb",
]

DAY_MS = 86_400_000
EVENTS_PER_SUBSCRIBER_DAY = 5.8  # what the simulator produces on average (measured; only sizes the cities)
LATENCY = "fw_event_to_decision_seconds"

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SoakConfig:
    """How long and how hard to push; the tiny test run is ``SoakConfig(minutes=0.3, rate=200, sample_s=3)``."""

    minutes: float = 10.0
    rate: float = 300.0  # events offered per second
    sample_s: float = 10.0
    seed: int = 5000  # first city's seed; the next cities take seed + 1, seed + 2, ...
    city_s: float = 30.0  # each simulated city holds about this many seconds of events at ``rate``
    days_per_city: float = 1.0
    max_city_subscribers: int = 20_000
    model_subscribers: int = 1500  # size of the training city when the registry is empty
    drain_s: float = 30.0  # after the last event, how long to wait for the worker to catch up
    app_id: str = "soak"
    # City-scale mode: this many feature-state keys in the tables before the worker starts (sandbox.state_fill),
    # and, with ``recover``, the worker killed -9 at the end and timed back to ready with every key.
    keys: int = 0
    recover: bool = False
    # Where the worker keeps feature state (``state_store``): None = as the settings say.
    store: Literal["memory", "local"] | None = None

    def __post_init__(self) -> None:
        if self.minutes <= 0 or self.rate <= 0 or self.sample_s <= 0:
            raise ValueError("minutes, rate and sample_s must be positive")

    def city_subscribers(self) -> int:
        """Subscribers per city so that one city lasts about ``city_s`` at ``rate``."""
        wanted = self.rate * self.city_s / (EVENTS_PER_SUBSCRIBER_DAY * self.days_per_city)
        return int(min(self.max_city_subscribers, max(50, math.ceil(wanted))))


def slope_per_minute(points: list[tuple[float, float | None]]) -> float | None:
    """Least-squares slope of ``(elapsed_s, value)`` points in value per minute; None without two usable points."""
    usable = [(x / 60.0, y) for x, y in points if y is not None]
    if len(usable) < 2:
        return None
    mean_x = sum(x for x, _ in usable) / len(usable)
    mean_y = sum(y for _, y in usable) / len(usable)
    sxx = sum((x - mean_x) ** 2 for x, _ in usable)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in usable)
    return round(sxy / sxx, 4)


def vm_rss_mb(pid: int) -> float | None:
    """Current resident set size of a process in MB (``VmRSS``), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _print_line(obj: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


class CityFeed:
    """Successive seeded cities, each later in event time than the last, as routed lines ready to send."""

    def __init__(self, config: SoakConfig, settings: Settings, work: Path) -> None:
        self._config = config
        self._settings = settings
        self._work = work
        self._start_ms = CityConfig().start_ms
        self.cities = 0

    def next_city(self) -> list[Routed]:
        """Simulate the next city and return its events in arrival order (the scratch file is removed)."""
        i = self.cities
        self.cities += 1
        cfg = self._config
        city = simulate(
            CityConfig(
                subscribers=cfg.city_subscribers(),
                days=cfg.days_per_city,
                seed=cfg.seed + i,
                start_ms=self._start_ms + int(i * cfg.days_per_city * DAY_MS),
            )
        )
        path = self._work / f"city-{cfg.seed + i}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in city.events))
        try:
            return load_lines(path, self._settings)  # the replay's own routing: topic, key, arrival order
        finally:
            path.unlink(missing_ok=True)


@dataclass
class _Progress:
    sent: int = 0
    cities: int = 0


async def _offer(feed: CityFeed, run: Settings, config: SoakConfig, stop: asyncio.Event, progress: _Progress) -> None:
    """Send events at ``config.rate`` on one global schedule until the time is up (or ``stop``)."""
    from aiokafka import AIOKafkaProducer

    from streams import bootstrap

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(run.broker_url or ""), linger_ms=5, acks=1)
    await producer.start()
    upcoming: asyncio.Future[list[Routed]] | None = None
    pending: list[asyncio.Future[Any]] = []
    try:
        lines = await asyncio.to_thread(feed.next_city)
        started = time.monotonic()
        deadline = started + config.minutes * 60.0
        while not stop.is_set():
            progress.cities += 1
            upcoming = asyncio.ensure_future(asyncio.to_thread(feed.next_city))  # simulated while this one is sent
            for _arrival, topic, key, value in lines:
                due = started + progress.sent / config.rate
                if due >= deadline or stop.is_set():
                    return
                ahead = due - time.monotonic()
                if ahead > 0.001:
                    await asyncio.sleep(ahead)
                pending.append(await producer.send(topic, value=value, key=key))
                progress.sent += 1
                if len(pending) >= 1000:
                    await asyncio.gather(*pending)
                    pending.clear()
            lines = await upcoming
    finally:
        try:
            await asyncio.gather(*pending)
        finally:
            if upcoming is not None:
                upcoming.cancel()  # a city still being simulated finishes in its thread; its result is dropped
            await producer.stop()


class _Sampler:
    """Turns successive scrapes of the worker into sample lines."""

    def __init__(self, metrics_url: str, pid: int, started: float, broker_pid: int | None = None) -> None:
        self.metrics_url = metrics_url
        self.pid = pid
        self.broker_pid = broker_pid
        self.started = started
        self.previous: dict[str, float] = {}
        self.samples: list[dict[str, Any]] = []
        self._cpu = self._cpu_now()

    def _cpu_now(self) -> tuple[float, float | None, float | None]:
        broker = cpu_seconds(self.broker_pid) if self.broker_pid else None
        return time.monotonic(), cpu_seconds(self.pid), broker

    async def take(self, progress: _Progress, **extra: Any) -> dict[str, Any]:
        now = await asyncio.to_thread(scrape, self.metrics_url)
        latency = histogram_quantiles(self.previous, now, LATENCY)
        gc_full = histogram_quantiles(self.previous, now, "fw_gc_pause_seconds", generation="2")
        prev = self.previous

        def delta(name: str) -> float:
            return total(now, name) - total(prev, name)

        scored = delta("fw_events_scored_total")
        hits = total(now, "fw_state_reads_total", cache="hit") - total(prev, "fw_state_reads_total", cache="hit")
        reads = delta("fw_state_reads_total")
        self.previous = now
        (t0, worker0, broker0), (t1, worker1, broker1) = self._cpu, self._cpu_now()
        self._cpu = (t1, worker1, broker1)

        def share(a: float | None, b: float | None) -> float | None:
            return round((b - a) / (t1 - t0), 2) if a is not None and b is not None and t1 > t0 else None

        worker_share = share(worker0, worker1)
        sample = {
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "events_sent": progress.sent,
            "events_scored": int(total(now, "fw_events_scored_total")),
            "rss_mb": vm_rss_mb(self.pid),
            "p50_ms": latency["p50_ms"],
            "p99_ms": latency["p99_ms"],
            "consumer_lag": int(total(now, "fw_consumer_lag_messages")),
            "feature_state_keys": int(total(now, "fw_feature_state_keys")),
            # Where the time went: the worker's and the broker's CPU (share of one core), the worker's CPU per
            # scored event, and its full garbage collections (how many, the longest).
            "worker_cpu": worker_share,
            "broker_cpu": share(broker0, broker1),
            "worker_cpu_us_per_event": round(worker_share * (t1 - t0) / scored * 1e6, 1)
            if worker_share is not None and scored > 0
            else None,
            "state_changelog_bytes_per_event": round(delta("fw_state_changelog_bytes_total") / scored)
            if scored
            else None,
            "state_cache_hit_share": round(hits / reads, 3) if reads else None,
            "gc_full_collections": gc_full["count"],
            "gc_full_pause_p99_ms": gc_full["p99_ms"],
            **extra,
        }
        self.samples.append(sample)
        return sample


def summarise(samples: list[dict[str, Any]], config: SoakConfig, **extra: Any) -> dict[str, Any]:
    """The run's summary: totals, and the slopes that tell a leak (or creeping latency) from a plateau."""

    def series(name: str, since_s: float = 0.0) -> list[tuple[float, float | None]]:
        return [(s["elapsed_s"], s[name]) for s in samples if s["elapsed_s"] >= since_s]

    rss = [s["rss_mb"] for s in samples if s["rss_mb"] is not None]
    p99 = [s["p99_ms"] for s in samples if s["p99_ms"] is not None]
    half = samples[-1]["elapsed_s"] / 2 if samples else 0.0
    last = samples[-1] if samples else {}
    return {
        "minutes": config.minutes,
        "rate": config.rate,
        "samples": len(samples),
        "events_sent": last.get("events_sent", 0),
        "events_scored": last.get("events_scored", 0),
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        "rss_slope_mb_per_min": slope_per_minute(series("rss_mb")),
        # Warm-up (model load, first allocations) inflates the whole-run slope; a leak keeps its slope here too.
        "rss_slope_mb_per_min_second_half": slope_per_minute(series("rss_mb", half)),
        "p99_ms_max": max(p99) if p99 else None,
        "p99_slope_ms_per_min": slope_per_minute(series("p99_ms")),
        "feature_state_keys_slope_per_min": slope_per_minute(
            [(x, float(y) if y is not None else None) for x, y in series("feature_state_keys")]
        ),
        **extra,
    }


class _StopOnSignal:
    """While active, the first SIGINT/SIGTERM sets ``stop`` (and puts the old handlers back for a second one)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self._loop = loop
        self._stop = stop
        self._previous: dict[int, Any] = {}
        self.signalled = False

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(sig)
                self._previous[sig] = signal.SIG_DFL if previous is None else previous
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True
        self._restore()
        self._loop.call_soon_threadsafe(self._stop.set)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc: object) -> None:
        self._restore()


async def _soak(
    settings: Settings,
    config: SoakConfig,
    work: Path,
    broker_url: str,
    redis_url: str,
    emit: Emit,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    from sandbox.receiver import ReceiverServer
    from streams import ensure_topics

    stop = asyncio.Event()
    receiver = ReceiverServer()
    await receiver.start()
    port = free_port()
    run = settings.model_copy(
        update={
            "broker_url": broker_url,
            "redis_url": redis_url,
            "dispatch_url": receiver.tasks_url,
            "app_id": config.app_id,
            "worker_web_port": port,
        }
    )
    env = {
        "FW_BROKER_URL": broker_url,
        "FW_REDIS_URL": redis_url,
        "FW_DISPATCH_URL": receiver.tasks_url,
        "FW_DATA_DIR": str(settings.data_dir),
        "FW_WORKER_WEB_PORT": str(port),
        "FW_APP_ID": config.app_id,
        "FW_PARTITIONS": str(settings.partitions),
        "FW_LOG_LEVEL": "WARNING",
        "FW_STATE_STORE": config.store or settings.state_store,
        "FW_STATE_DIR": str(work / "state"),
    }
    proc = None
    scale: dict[str, Any] = {"state_store": env["FW_STATE_STORE"]}
    try:
        await ensure_topics(run)
        if config.keys:
            scale.update(await _fill(run, config))
            emit({"filled": scale})
        proc = start_worker(run, env, work / "worker.log")
        with _StopOnSignal(asyncio.get_running_loop(), stop) as signals:
            t_start = time.monotonic()
            await _wait_ready(port, proc, timeout_s=600.0)
            scale["ready_s"] = round(time.monotonic() - t_start, 1)
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            if config.keys:
                scale.update(await _keys_and_rss(metrics_url, proc.pid, config.keys))
            feed = CityFeed(config, run, work)
            progress = _Progress()
            sampler = _Sampler(metrics_url, proc.pid, time.monotonic(), broker_pid)
            sampler.previous = await asyncio.to_thread(scrape, metrics_url)
            sender = asyncio.create_task(_offer(feed, run, config, stop, progress), name="soak-offer")
            next_at = sampler.started + config.sample_s
            while not sender.done():
                # Wake at the next sample time or as soon as sending ends, whichever comes first.
                await asyncio.wait({sender}, timeout=max(0.0, next_at - time.monotonic()))
                if proc.poll() is not None:
                    raise RuntimeError(f"soak worker exited with {proc.returncode}; see {work / 'worker.log'}")
                if time.monotonic() >= next_at:
                    emit(await sampler.take(progress))
                    next_at += config.sample_s
            await sender  # re-raises a failed send
            drained = await _drain(metrics_url, progress.sent, config.drain_s, stop)
            final = await sampler.take(progress, final=True)
            emit(final)
            if config.recover and not stop.is_set():
                proc, recovery = await _kill_and_recover(proc, run, env, work, port, final["feature_state_keys"])
                scale.update(recovery)
        summary = summarise(
            sampler.samples,
            config,
            elapsed_s=round(time.monotonic() - sampler.started, 1),
            cities=progress.cities,
            drained=drained,
            interrupted=signals.signalled,
            tasks_received=receiver.receiver.stats()["received"],
            logs=str(work),
            **scale,
        )
        emit({"summary": summary})
        return {"samples": sampler.samples, "summary": summary}
    finally:
        if proc is not None:
            await asyncio.to_thread(stop_worker, proc)
        await receiver.stop()


async def _fill(run: Settings, config: SoakConfig) -> dict[str, Any]:
    """Seed the tables' changelogs with ``config.keys`` states ending where the first city starts."""
    from sandbox.state_fill import fill_states
    from streams import seed_tables

    t0 = time.monotonic()
    filled = await asyncio.to_thread(fill_states, config.keys, end_ms=CityConfig().start_ms, seed=config.seed - 1)
    stats = await seed_tables(run, filled.key_states, filled.subscriber_states)
    return {
        "keys_filled": stats.caller_records + stats.subscriber_records,
        "stored_bytes_per_key": round(
            (sum(map(len, filled.key_states.values())) + sum(map(len, filled.subscriber_states.values())))
            / max(filled.keys, 1)
        ),
        "fill_s": round(time.monotonic() - t0, 1),
    }


async def _keys_and_rss(metrics_url: str, pid: int, at_least: int, timeout_s: float = 30.0) -> dict[str, Any]:
    """Once the worker's key gauge has counted ``at_least`` keys: that count and its RSS per key."""
    deadline = time.monotonic() + timeout_s
    keys = 0
    while time.monotonic() < deadline:
        keys = int(total(await asyncio.to_thread(scrape, metrics_url), "fw_feature_state_keys"))
        if keys >= at_least:
            break
        await asyncio.sleep(0.5)
    rss = vm_rss_mb(pid)
    return {
        "keys_at_ready": keys,
        "rss_mb_at_ready": rss,
        "rss_kb_per_key_at_ready": round(rss * 1024 / keys, 2) if rss and keys else None,
    }


async def _kill_and_recover(
    proc: Any, run: Settings, env: dict[str, str], work: Path, port: int, keys_before: int
) -> tuple[Any, dict[str, Any]]:
    """Kill the worker -9, start another, and time it to ready; how many of its keys came back."""
    proc.kill()
    await asyncio.to_thread(proc.wait)
    t0 = time.monotonic()
    proc = start_worker(run, env, work / "worker-recovered.log")
    await _wait_ready(port, proc, timeout_s=600.0)
    recovery_s = round(time.monotonic() - t0, 1)
    seen = await _keys_and_rss(f"http://127.0.0.1:{port}/metrics", proc.pid, keys_before)
    return proc, {
        "keys_before_kill": keys_before,
        "recovery_s": recovery_s,
        "keys_recovered": seen["keys_at_ready"],
        "rss_mb_recovered": seen["rss_mb_at_ready"],
    }


async def _drain(metrics_url: str, sent: int, timeout_s: float, stop: asyncio.Event) -> bool:
    """Wait until the worker has accounted for every event sent (scored, duplicate or dead-lettered)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        samples = await asyncio.to_thread(scrape, metrics_url)
        done = sum(
            total(samples, name)
            for name in ("fw_events_scored_total", "fw_duplicate_events_total", "fw_dead_letters_total")
        )
        if done >= sent:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)
    return False


def run_soak(settings: Settings, config: SoakConfig, emit: Emit | None = None) -> dict[str, Any]:
    """Start broker and Redis, make sure a model exists, soak one worker, stop everything.

    Each sample (and at the end ``{"summary": ...}``) is passed to ``emit`` (default: one JSON line on
    stdout); the return value holds the samples and the summary.
    """
    work = settings.data_dir / "soak"
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "state", ignore_errors=True)  # the broker below starts empty; so must local state
    ensure_model(settings, DemoConfig(subscribers=config.model_subscribers))
    broker = start_tansu(log_path=work / "tansu.log")
    try:
        redis = start_redis(log_path=work / "redis.log")
        try:
            return asyncio.run(
                _soak(settings, config, work, broker.url, redis.url, emit or _print_line, broker.proc.pid)
            )
        finally:
            redis.stop()
    finally:
        broker.stop()
