"""``benchmark``: throughput and latency of a real worker on the real broker, against baselines.

One run measures, on the same events:
- a worker scoring in micro-batches (the service as deployed) and the same worker with batch size 1
  (a naive per-message agent: one ``predict`` per event), each draining a backlog -> events/s;
- event-to-decision latency of the batched worker at fixed offered rates -> p50/p95/p99, and the last
  rate again on ``scale_out_workers`` processes of one consumer group (``latency_scaled_out``);
- in-process: raw batched ``Booster.predict`` on precomputed feature rows, the service's scoring path
  (calibrated batch score) on the same rows, and the feature path per event;
- the worker's peak resident memory, and its CPU per event while draining;
- payment holds: transfer-on-the-broker to the bank's 2xx (``hold_latency``) at ``hold_rate`` offered, by the
  live model's own thresholds on a fraud-heavy city (``hold_victims_per_10k_per_day``: a city at the usual rate
  gives too few holds in a benchmark's seconds for a p99), beside event-to-decision in the same phase;
- where the worker's time goes while draining (``worker_profile``: a py-spy profile summarised by
  function and package, when py-spy is installed) and a one-line ``limits``;
- the backlog drained again by fresh workers whose tables were filled with ``state_keys`` states first, on
  each of ``state_stores`` (``drain_at_state_keys[store][keys]``: ready time, events/s, peak memory).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from core.settings import Settings
from sandbox.demo import DemoConfig, ensure_model, scrape, start_worker, stop_worker, total
from sandbox.services import free_port, start_redis, start_tansu
from sandbox.simulate import CityConfig, simulate, write_city

__all__ = [
    "BenchConfig",
    "cpu_seconds",
    "histogram_quantiles",
    "limits",
    "run_benchmark",
    "scrape_sum",
    "summarize_profile",
]


@dataclass(frozen=True)
class BenchConfig:
    """How much to run: ``tiny`` proves the machinery in seconds; the full run gives the figures."""

    backlog_subscribers: int = 8_000
    rates: tuple[int, ...] = (1000, 5000)
    seconds_per_rate: float = 20.0
    model_subscribers: int = 3000
    # The last offered rate again, on this many worker processes of one consumer group (0: skip): how far
    # scaling out by partitions carries on this machine, beside the one-process figures.
    scale_out_workers: int = 2
    # Payment holds' latency at this offered rate (0: skip) for ``hold_seconds``, on a city with this many victims
    # per 10k residents a day, so that there are holds enough for a p99. The model keeps its own thresholds, so
    # the worker explains and acts on about 0.5 % of events (each alert's SHAP costs ~18 ms of CPU: lowering
    # level 1, or 1,000 victims, put 2-3 % or more of events through it and drowned the worker). Only when the
    # trained hold threshold would hold fewer than ``hold_min`` transfers does it come down to level 1.
    hold_rate: int = 1000
    hold_victims_per_10k_per_day: float = 200.0
    hold_seconds: float = 60.0  # longer than the plain phases: holds are rare events and the p99 needs ~100
    hold_min: int = 30
    # The backlog drained again by a fresh worker whose tables already hold this many feature-state keys
    # (sandbox.state_fill): how the drain rate, readiness and memory follow the state's size.
    state_keys: tuple[int, ...] = (10_000, 1_000_000)
    # Each of those on these feature-state stores (FW_STATE_STORE): the heap, and RocksDB on local disk.
    state_stores: tuple[str, ...] = ("memory", "local")

    @classmethod
    def tiny(cls) -> BenchConfig:
        """A run of a few seconds per phase."""
        return cls(
            backlog_subscribers=600,
            rates=(200, 500),
            seconds_per_rate=2.0,
            model_subscribers=1500,
            hold_rate=200,
            hold_seconds=2.0,
            state_keys=(2000,),
        )


def histogram_quantiles(
    before: dict[str, float], after: dict[str, float], name: str, **labels: str
) -> dict[str, float | None]:
    """p50/p95/p99 of the observations a histogram (with ``labels``) gained between two scrapes.

    Linear within buckets.
    """
    want = [f"{k}={v}" for k, v in labels.items()]
    buckets: list[tuple[float, float]] = []
    for key, cumulative_now in after.items():
        if key.startswith(name + "_bucket{") and all(w in key for w in want):
            le = key.split("le=")[1].split(",")[0].rstrip("}")
            bound = float("inf") if le in ("+Inf", "inf") else float(le)
            buckets.append((bound, cumulative_now - before.get(key, 0.0)))
    buckets.sort()
    count = buckets[-1][1] if buckets else 0.0
    out: dict[str, float | None] = {}
    for q in (0.5, 0.95, 0.99):
        if count <= 0:
            out[f"p{int(q * 100)}_ms"] = None
            continue
        rank, lower, prev = q * count, 0.0, 0.0
        value: float | None = None
        for bound, cumulative in buckets:
            if cumulative >= rank:
                if bound == float("inf"):
                    value = lower
                else:
                    share = (rank - prev) / (cumulative - prev) if cumulative > prev else 1.0
                    value = lower + (bound - lower) * share
                break
            lower, prev = bound, cumulative
        out[f"p{int(q * 100)}_ms"] = round(value * 1000, 2) if value is not None else None
    out["count"] = count
    return out


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_FRAMEWORK = ("faust", "mode", "aiokafka", "asyncio", "uvloop", "selectors.py", "kafka")
_FEATURES = ("core", "features", "streams")  # core: decoding at ingest
_MODEL = ("lightgbm", "lleaves", "models", "numpy")


def limits(result: dict[str, Any]) -> str:
    """One sentence on what bounds the worker, from its CPU use and profile."""
    worker = result.get("worker", {})
    cpu = worker.get("cpu_share_of_one_core")
    prof = result.get("worker_profile") or {}
    pkgs: dict[str, float] = prof.get("by_package_pct", {})
    if not pkgs:
        return f"worker used {cpu} of one core while draining; no profile (install py-spy for one)"

    def share(names: tuple[str, ...]) -> float:
        return round(sum(v for k, v in pkgs.items() if k in names), 1)

    return (
        f"worker used {cpu} of one core while draining ({worker.get('cpu_us_per_event')} us CPU per event); "
        f"of its samples ~{share(_FRAMEWORK)}% framework (Faust/mode/aiokafka/event loop and socket writes "
        f"for three hops and two changelogs), ~{share(_FEATURES)}% feature and agent code, ~{share(_MODEL)}% "
        f"model and explanations (top packages only). One process holds the GIL: the ceiling is one core."
    )


async def _wait_ready(port: int, proc: Any, timeout_s: float = 100.0) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout_s / 0.25)):
            if proc.poll() is not None:
                raise RuntimeError("benchmark worker exited; see its log")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise TimeoutError("benchmark worker not ready")


def _frame_name(frame: str) -> tuple[str, str]:
    """(``function file``, package) of one py-spy raw frame such as ``f (pkg/mod.py:12)``."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{name} {path.rsplit('/', 1)[-1]}", path.split("/", 1)[0] if "/" in path else path


def summarize_profile(raw_text: str, top: int = 12) -> dict[str, Any]:
    """Shares of a py-spy ``--format raw`` profile: top functions by own time, by inclusive time
    (the agents and other landmarks), and by package (where the time goes: framework or our code)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    packages: dict[str, int] = {}
    n = 0
    for line in raw_text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        n += count
        frames = [_frame_name(f) for f in stack.split(";")]
        fn, pkg = frames[-1]
        own[fn] = own.get(fn, 0) + count
        packages[pkg] = packages.get(pkg, 0) + count
        for name in {f for f, _ in frames}:
            inclusive[name] = inclusive.get(name, 0) + count

    def shares(counts: dict[str, int], k: int, keep: Any = None) -> dict[str, float]:
        items = [(name, c) for name, c in counts.items() if keep is None or keep(name)]
        items.sort(key=lambda kv: -kv[1])
        return {name: round(100 * c / n, 1) for name, c in items[:k]}

    landmarks = ("ingest ", "callers ", "score ", "_alert ", "send_changelog ", "BatchSender.send_many ")
    return {
        "samples": n,
        "top_own_time_pct": shares(own, top) if n else {},
        "by_package_pct": shares(packages, top) if n else {},
        "agents_and_landmarks_pct": shares(inclusive, 20, lambda f: f.startswith(landmarks)) if n else {},
    }


def _profile_worker(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Start py-spy on the worker (when installed); stopped and summarised by :func:`_profile_result`."""
    binary = shutil.which("py-spy")
    if binary is None:
        return None
    cmd = [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _profile_result(spy: subprocess.Popen[bytes] | None, out: Path) -> dict[str, Any] | None:
    if spy is None:
        return None
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        return None
    return summarize_profile(out.read_text()) if out.exists() else None


def _pack_arrival(before: dict[str, float], after: dict[str, float]) -> dict[str, list[float | None]]:
    """[p50, p99] ms of packs' age since ingest on reaching ``callers`` and ``score``."""
    return {stage: _p50_p99(before, after, "fw_pack_arrival_seconds", stage=stage) for stage in ("callers", "score")}


def scrape_sum(urls: list[str]) -> dict[str, float]:
    """Samples of several workers' /metrics added up (counters and histogram buckets of one group)."""
    out: dict[str, float] = {}
    for url in urls:
        for key, value in scrape(url).items():
            out[key] = out.get(key, 0.0) + value
    return out


def _paced_city(
    config: BenchConfig,
    rate: int,
    seed: int,
    folder: Path,
    victims_per_10k_per_day: float | None = None,
    seconds: float | None = None,
) -> Path:
    """Events of a simulated day sized so that ``rate`` events/s last about ``seconds`` (``seconds_per_rate``)."""
    n_subs = max(200, int(rate * (seconds or config.seconds_per_rate) / 6))
    city = CityConfig(subscribers=n_subs, days=1.0, seed=seed)
    if victims_per_10k_per_day is not None:
        city = replace(city, victims_per_10k_per_day=victims_per_10k_per_day)
    return write_city(simulate(city), folder)["events"]


def _latency_figures(before: dict[str, float], after: dict[str, float], rate: int, achieved: float) -> dict[str, Any]:
    """Event-to-decision quantiles at one offered rate, where the latency builds up, and full-GC pauses."""
    return {
        "offered_events_per_s": rate,
        "achieved_send_rate": round(achieved, 1),
        **histogram_quantiles(before, after, "fw_event_to_decision_seconds"),
        # Where that latency builds up: age of the packs reaching each later hop.
        "pack_arrival_p50_p99_ms": _pack_arrival(before, after),
        # A full collection over the feature state stops every agent at once.
        "gc_pauses": _gc_pauses(before, after),
        # Off the score path since the explain agent, but still CPU the worker spends per alert batch.
        "explain_per_alert_batch_p50_p99_ms": _p50_p99(before, after, "fw_explain_seconds"),
        "alert_handoff_per_batch_p50_p99_ms": _p50_p99(before, after, "fw_alert_handoff_seconds"),
    }


def _p50_p99(before: dict[str, float], after: dict[str, float], name: str, **labels: str) -> list[float | None]:
    q = histogram_quantiles(before, after, name, **labels)
    return [q["p50_ms"], q["p99_ms"]]


def _gc_pauses(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Full (generation 2) collections between two scrapes: how many, and p99 of their pause in ms."""
    q = histogram_quantiles(before, after, "fw_gc_pause_seconds", generation="2")
    return {"full_collections": q["count"], "full_pause_p99_ms": q["p99_ms"]}


async def _drain_rate(
    metrics_urls: list[str], target: float, timeout_s: float = 900, ready_at: float | None = None
) -> dict[str, float]:
    """Scored events/s while a worker works through a backlog, from its own counters (middle 80 %).

    ``ready_at`` (monotonic time the worker turned ready, nothing scored yet) is the fallback start when
    the backlog drains within one scrape interval, as in tiny runs.
    """
    points: list[tuple[float, float]] = [] if ready_at is None else [(ready_at, 0.0)]
    deadline = time.monotonic() + timeout_s
    unanswered, answered_at, longest_silence = 0, time.monotonic(), 0.0
    while time.monotonic() < deadline:
        try:
            samples = await asyncio.to_thread(scrape_sum, metrics_urls)
        except httpx.TimeoutException:
            # A worker whose event loop is stalled answers nothing: that is a figure (how long), not the end.
            unanswered += 1
            continue
        now = time.monotonic()
        longest_silence, answered_at = max(longest_silence, now - answered_at), now
        scored = total(samples, "fw_events_scored_total") + total(samples, "fw_duplicate_events_total")
        points.append((now, scored))
        if scored >= target:
            break
        await asyncio.sleep(0.25)
    lo = next((p for p in points if p[1] >= 0.1 * target), points[0])
    hi = next((p for p in points if p[1] >= 0.9 * target), points[-1])
    if hi[0] <= lo[0]:
        # A backlog drained within one scrape interval (tiny runs): widen to the sample before it started.
        lo, hi = points[max(points.index(lo) - 1, 0)], points[-1]
    rate = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else 0.0
    out: dict[str, float] = {"events": points[-1][1], "events_per_s": round(rate, 1)}
    if unanswered:
        out |= {"unanswered_scrapes": unanswered, "longest_silence_s": round(longest_silence, 1)}
    return out


def _in_process(settings: Settings, events_path: Path, limit: int) -> dict[str, Any]:
    """Feature path, scoring path and raw predict on the same events, in this process."""
    from features import FeatureEngine, in_arrival_order
    from models import ModelRegistry, Scorer, load_events

    scorer = Scorer(ModelRegistry(settings.models_path).live())
    events = in_arrival_order(load_events(events_path).events)[:limit]
    engine = FeatureEngine()
    started = time.perf_counter()
    rows = [r for r in (engine.process(e) for e in events) if r is not None]
    feature_s = time.perf_counter() - started
    X = np.asarray([r.values for r in rows])

    def best_of(fn: Any, repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    raw_s = best_of(lambda: [scorer.booster.predict(X[i : i + 200], num_threads=1) for i in range(0, len(X), 200)])
    path_s = best_of(lambda: [scorer.score(X[i : i + 200]) for i in range(0, len(X), 200)])
    sample = X[: min(len(X), 2000)]
    single_s = best_of(lambda: [scorer.score(sample[i : i + 1]) for i in range(len(sample))], repeat=3)
    lgb_scores = scorer.calibrate(np.asarray(scorer.booster.predict(X, num_threads=1)))
    return {
        "rows": len(rows),
        "scoring_uses_compiled_model": scorer.is_compiled,
        "max_abs_diff_scoring_path_vs_lightgbm": float(np.max(np.abs(scorer.score(X) - lgb_scores))) if len(X) else 0.0,
        "feature_path_events_per_s": round(len(events) / feature_s, 1),
        "raw_batched_predict_rows_per_s": round(len(X) / raw_s, 1),
        "scoring_path_batched_rows_per_s": round(len(X) / path_s, 1),
        "scoring_path_single_row_rows_per_s": round(len(sample) / single_s, 1),
        "scoring_path_vs_raw_predict_time_ratio": round(path_s / raw_s, 3),
    }


class _CpuWatch:
    """CPU shares of one core per named process over a phase: is the machine, or only the worker, saturated?"""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float | None] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._t0 = time.monotonic()

    def shares(self) -> dict[str, float | None]:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            c0, c1 = self._start.get(name), cpu_seconds(pid)
            out[name] = round((c1 - c0) / elapsed, 2) if c0 is not None and c1 is not None else None
        out["all"] = round(sum(v for v in out.values() if v is not None), 2)
        return out


async def _bench(
    settings: Settings, config: BenchConfig, work: Path, broker_url: str, redis_url: str, pids: dict[str, int]
) -> dict[str, Any]:
    from sandbox.receiver import ReceiverServer
    from streams import ensure_topics
    from streams import replay_events as replay

    receiver = ReceiverServer()
    await receiver.start()
    run = settings.model_copy(
        update={"broker_url": broker_url, "redis_url": redis_url, "dispatch_url": receiver.tasks_url}
    )
    await ensure_topics(run)
    backlog = write_city(
        simulate(CityConfig(subscribers=config.backlog_subscribers, days=1.0, seed=901)), work / "backlog"
    )
    sent = await replay(backlog["events"], run)
    result: dict[str, Any] = {"backlog_events": sent.sent}

    def env(app_id: str, port: int, batch: int) -> dict[str, str]:
        return {
            "FW_BROKER_URL": broker_url,
            "FW_REDIS_URL": redis_url,
            "FW_DISPATCH_URL": receiver.tasks_url,
            "FW_DATA_DIR": str(settings.data_dir),
            "FW_WORKER_WEB_PORT": str(port),
            "FW_APP_ID": app_id,
            "FW_SCORE_BATCH_MAX": str(batch),
            "FW_LOG_LEVEL": "WARNING",
            # Each process its own local state folder (FW_STATE_STORE=local), fresh as the broker is.
            "FW_STATE_DIR": str(work / "state" / str(port)),
        }

    try:
        for label, batch in (("naive_agent", 1), ("worker", settings.score_batch_max)):
            await ensure_topics(run.model_copy(update={"app_id": f"bench-{label}"}))
            port = free_port()
            proc = start_worker(run, env(f"bench-{label}", port, batch), work / f"{label}.log")
            try:
                await _wait_ready(port, proc)
                ready_at = time.monotonic()
                spy = _profile_worker(proc.pid, work / f"{label}.pyspy.txt") if label == "worker" else None
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                result[label] = await _drain_rate([f"http://127.0.0.1:{port}/metrics"], sent.sent, ready_at=ready_at)
                cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
                if cpu0 is not None and cpu1 is not None:
                    result[label]["cpu_share_of_one_core"] = round((cpu1 - cpu0) / (t1 - t0), 2)
                    result[label]["cpu_us_per_event"] = round((cpu1 - cpu0) / max(sent.sent, 1) * 1e6, 1)
                if label == "worker":
                    result["worker_profile"] = _profile_result(spy, work / f"{label}.pyspy.txt")
                    latency: dict[str, Any] = {}
                    for i, rate in enumerate(config.rates):
                        path = _paced_city(config, rate, 910 + i, work / f"rate-{rate}")
                        before = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
                        watch = _CpuWatch({**pids, "worker": proc.pid})
                        watch.start()
                        stats = await replay(path, run, rate=rate)
                        cpu = watch.shares()  # while offered; the drain after it is not the paced load
                        await _drain_rate(
                            [f"http://127.0.0.1:{port}/metrics"],
                            total(before, "fw_events_scored_total") + stats.sent,
                            timeout_s=120,
                        )
                        after = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
                        latency[str(rate)] = _latency_figures(before, after, rate, stats.rate)
                        latency[str(rate)]["cpu_share_of_one_core"] = cpu
                    result["latency_event_to_decision"] = latency
                result[label]["peak_rss_mb"] = _peak_rss_mb(proc.pid)
            finally:
                stop_worker(proc)
        if config.scale_out_workers > 1:
            result["latency_scaled_out"] = await _scaled_out(
                run, config, work, lambda port: env("bench-worker", port, settings.score_batch_max)
            )
        if config.hold_rate > 0:
            result["hold_latency"] = await _hold_latency(
                run,
                config,
                work,
                receiver,
                lambda port, models: {
                    **env("bench-worker", port, settings.score_batch_max),
                    "FW_BANK_URL": receiver.holds_url,
                    "FW_MODEL_DIR": str(models),
                },
            )
        if config.state_keys:
            batched = settings.score_batch_max
            at_keys: dict[str, dict[str, Any]] = {}
            for store in config.state_stores:

                def store_env(port: int, app_id: str, store: str = store) -> dict[str, str]:
                    return {**env(app_id, port, batched), "FW_STATE_STORE": store}

                at_keys[store] = {
                    str(n): await _drain_at_keys(run, n, sent.sent, work, store_env, f"bench-keys-{store}-{n}")
                    for n in config.state_keys
                }
            result["drain_at_state_keys"] = at_keys
    finally:
        await receiver.stop()
    result["in_process"] = await asyncio.to_thread(_in_process, run, backlog["events"], 50_000)
    w, n = result["worker"]["events_per_s"], result["naive_agent"]["events_per_s"]
    result["limits"] = limits(result)
    result["ratios"] = {
        "worker_vs_naive_agent": round(w / n, 2) if n else None,
        "scoring_path_vs_raw_predict": result["in_process"]["scoring_path_vs_raw_predict_time_ratio"],
    }
    return result


async def _drain_at_keys(
    run: Settings, n_keys: int, backlog: int, work: Path, env: Callable[[int, str], dict[str, str]], app_id: str
) -> dict[str, Any]:
    """The backlog drained by a worker of a new group whose tables were filled with ``n_keys`` states first."""
    from sandbox.state_fill import fill_states
    from streams import ensure_topics, seed_tables

    group = run.model_copy(update={"app_id": app_id})
    await ensure_topics(group)
    filled = await asyncio.to_thread(fill_states, n_keys, end_ms=CityConfig().start_ms)
    await seed_tables(group, filled.key_states, filled.subscriber_states)
    del filled
    port = free_port()
    started = time.monotonic()
    proc = start_worker(group, env(port, app_id), work / f"{app_id}.log")
    try:
        await _wait_ready(port, proc, timeout_s=600.0)
        ready_at = time.monotonic()
        out: dict[str, Any] = {"ready_s": round(ready_at - started, 1)}
        out.update(await _drain_rate([f"http://127.0.0.1:{port}/metrics"], backlog, ready_at=ready_at))
        out["peak_rss_mb"] = _peak_rss_mb(proc.pid)
        return out
    finally:
        stop_worker(proc)


async def _scaled_out(
    run: Settings, config: BenchConfig, work: Path, env: Callable[[int], dict[str, str]]
) -> dict[str, Any]:
    """The last offered rate on ``scale_out_workers`` processes of the one-process phase's group.

    They take over its committed offsets and recover its tables from the changelogs; the events are a
    new city, so none is skipped as a duplicate. Latency is read from all workers' metrics together.
    """
    from streams import replay_events as replay

    rate, n = config.rates[-1], config.scale_out_workers
    ports = [free_port() for _ in range(n)]
    procs = [start_worker(run, env(port), work / f"scaled-{i}.log") for i, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    try:
        # All ready, and still all ready a moment later: a late joiner's rebalance takes readiness away.
        for _ in range(2):
            for port, proc in zip(ports, procs, strict=True):
                await _wait_ready(port, proc)
            await asyncio.sleep(2.0)
        path = _paced_city(config, rate, 930, work / f"scaled-{rate}")
        before = await asyncio.to_thread(scrape_sum, urls)
        watch = _CpuWatch({str(i): proc.pid for i, proc in enumerate(procs)})
        watch.start()
        stats = await replay(path, run, rate=rate)
        await _drain_rate(urls, total(before, "fw_events_scored_total") + stats.sent, timeout_s=120)
        shares = watch.shares()
        after = await asyncio.to_thread(scrape_sum, urls)
        return {
            "workers": n,
            **_latency_figures(before, after, rate, stats.rate),
            "cpu_share_of_one_core_per_worker": [shares[str(i)] for i in range(len(procs))],
        }
    finally:
        for proc in procs:
            stop_worker(proc)


def _hold_model(settings: Settings, events_path: Path, hold_min: int, root: Path) -> dict[str, Any]:
    """Register a copy of the live model at ``root``: its thresholds, and its hold threshold unless that would hold
    fewer than ``hold_min`` of these events' transfers (scored offline on fresh state), then its level 1's."""
    from features import FeatureEngine, in_arrival_order
    from models import ModelRegistry, Scorer, load_events

    live = ModelRegistry(settings.models_path).live()
    engine = FeatureEngine()
    rows = [engine.process(e) for e in in_arrival_order(load_events(events_path).events)]
    X = np.asarray([r.values for r in rows if r is not None and r.schema == "transfer.v1"])
    scores = Scorer(live).score(X) if len(X) else np.zeros(0)
    level_1 = float(live.meta["thresholds"][0])
    trained = live.meta.get("hold_threshold")
    hold_at = max(level_1, float(trained)) if trained is not None else level_1
    floored = int((scores >= hold_at).sum()) < hold_min
    if floored:
        hold_at = level_1
    registry = ModelRegistry(root)
    copy = registry.register((live.path / "model.txt").read_text(), {**live.meta, "hold_threshold": hold_at})
    for compiled in live.path.glob("*.so"):  # the compiled model, so that scoring costs what it does live
        shutil.copy2(compiled, copy.path / compiled.name)
    registry.promote(copy.version)
    return {
        "hold_threshold": round(hold_at, 4),
        "hold_threshold_floored_at_level_1": floored,
        "transfers_scored_offline": len(X),
        "holds_expected_offline": int((scores >= hold_at).sum()),
    }


async def _hold_latency(
    run: Settings,
    config: BenchConfig,
    work: Path,
    receiver: Any,
    env: Callable[[int, Path], dict[str, str]],
) -> dict[str, Any]:
    """Holds delivered to a local bank at ``hold_rate`` offered: p50/p99 from the transfer's arrival on the
    broker to the bank's 2xx, against event-to-decision in the same phase and the 250 ms objective."""
    from alerting import HOLD_LATENCY_OBJECTIVE_S
    from streams import replay_events as replay

    rate = config.hold_rate
    path = _paced_city(
        config, rate, 940, work / f"holds-{rate}", config.hold_victims_per_10k_per_day, config.hold_seconds
    )
    models = work / "hold-models"
    shutil.rmtree(models, ignore_errors=True)
    model = await asyncio.to_thread(_hold_model, run, path, config.hold_min, models)
    port = free_port()
    proc = start_worker(run, env(port, models), work / "holds.log")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        # It joins the benchmark worker's group, so it first recovers that group's tables (every earlier phase's
        # keys): minutes on a full run, not the 100 s a fresh worker gets.
        started = time.monotonic()
        await _wait_ready(port, proc, timeout_s=600.0)
        recovered_s = round(time.monotonic() - started, 1)
        before = await asyncio.to_thread(scrape, url)
        stats = await replay(path, run, rate=rate)
        await _drain_rate([url], total(before, "fw_events_scored_total") + stats.sent, timeout_s=120)
        # Holds trail their decisions by the Redis write and the POST (some by the explain hop too): wait for them all.
        after = before
        for _ in range(120):
            after = await asyncio.to_thread(scrape, url)
            issued = total(after, "fw_holds_total", event="issued") - total(before, "fw_holds_total", event="issued")
            delivered = total(after, "fw_hold_messages_delivered_total", action="hold") - total(
                before, "fw_hold_messages_delivered_total", action="hold"
            )
            if issued > 0 and delivered >= issued:
                break
            await asyncio.sleep(0.5)
    finally:
        stop_worker(proc)
    hold = histogram_quantiles(before, after, "fw_hold_latency_seconds")
    decision = histogram_quantiles(before, after, "fw_event_to_decision_seconds")
    objective_ms = HOLD_LATENCY_OBJECTIVE_S * 1000
    scored = total(after, "fw_decisions_total") - total(before, "fw_decisions_total")
    quiet = total(after, "fw_decisions_total", level="0") - total(before, "fw_decisions_total", level="0")
    return {
        "offered_events_per_s": rate,
        "achieved_send_rate": round(stats.rate, 1),
        "worker_ready_after_s": recovered_s,
        **model,
        "holds_issued": issued,
        "holds_delivered": delivered,
        "bank_received": len(receiver.receiver.holds),
        "transfer_to_bank_2xx": hold,
        "event_to_decision_same_phase": decision,
        # Alerts are the worker's costly path (explain, case, task): their share says how loaded this phase was.
        "alert_share_of_events": round((scored - quiet) / scored, 4) if scored else None,
        # Where a hold's time goes: [p50, p99] ms of the packs reaching ``score`` (before its decision). The alert
        # batches' SHAP call and hand-off to alerting (case, task) no longer delay a hold, which is issued before
        # them (from ``score``, else first thing in ``explain``); they stay as the explain agent's own cost.
        "stages_p50_p99_ms": {
            "pack_arrival_at_score": _pack_arrival(before, after)["score"],
            "explain_batch": _p50_p99(before, after, "fw_explain_seconds"),
            "alert_handoff_batch": _p50_p99(before, after, "fw_alert_handoff_seconds"),
        },
        "objective_p99_ms": objective_ms,
        "p99_vs_objective": round(hold["p99_ms"] / objective_ms, 2) if hold["p99_ms"] is not None else None,
        "p99_vs_event_to_decision_p99": (
            round(hold["p99_ms"] / decision["p99_ms"], 2) if hold["p99_ms"] and decision["p99_ms"] else None
        ),
    }


def run_benchmark(settings: Settings, config: BenchConfig) -> dict[str, Any]:
    """Start broker and Redis, make sure a model exists, run every phase, stop everything."""
    work = settings.data_dir / "bench"
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "state", ignore_errors=True)  # local state of an earlier run's (gone) broker
    ensure_model(settings, DemoConfig(subscribers=config.model_subscribers))
    broker = start_tansu(log_path=work / "tansu.log")
    redis = start_redis(log_path=work / "redis.log")
    try:
        started = time.monotonic()
        # The load generator (replay) runs in this process; the machine's cores are shared by all four.
        pids = {"broker": broker.proc.pid, "redis": redis.proc.pid, "load_generator": os.getpid()}
        result = asyncio.run(_bench(settings, config, work, broker.url, redis.url, pids))
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        broker.stop()
        redis.stop()
