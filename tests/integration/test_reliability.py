"""Reliability under faults: worker crash, scale-out and rebalance, Redis outage, dispatch endpoint down or
slow, broker restart. Real workers, broker, Redis and HTTP receiver (harness: ``tests/integration/cluster.py``).

Each fault run replays the same simulated city (event time compressed into ~40 s) and is compared with one
reference run of a single, undisturbed worker on the same events (own app id, own Redis database): every
task the reference created must reach the receiver exactly once (by idempotency key), no other task may,
and every valid event must have been scored (its feature row is on ``<app_id>.features``).

Why the feed pauses while a crashed worker restarts: the stream's outcome depends on processing order
across partitions, and a backlog is processed in whatever order the fetches return (a flat-out replay of
this city gives 11 tasks against 15, with 2684 of 5020 feature rows different). A paused feed keeps the
comparison with the reference about reliability (lost, doubled or re-created tasks), not about ordering.
The scale-out test does not pause: its rebalances hold the stream for a few seconds only.

Run with ``-s`` to see a table per fault (also part of every assertion message).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from fraudwatch.demo import BAD_LINES
from fraudwatch.services import RunningService, free_port, start_redis, start_tansu
from fraudwatch.simulate import CityConfig, simulate, write_city
from streams.topics import ensure_topics
from tests.integration.cluster import (
    Cluster,
    FaultReport,
    Feed,
    Outcome,
    PacedReplay,
    TaskReceiver,
    Worker,
    outcome,
    start_receiver,
    wait_until,
)

pytestmark = pytest.mark.integration

CITY = CityConfig(subscribers=800, days=1.0, seed=41, victims_per_10k_per_day=300)
REPLAY_S = 40.0
SETTLE_S = 120.0


@dataclass(frozen=True)
class Scenario:
    """The simulated city every run replays."""

    events: Path
    valid_ids: frozenset[str]
    sent: int  # lines on the wire: valid events and the bad lines
    responders: list[Any]

    def report(self, fault: str, run: Outcome, reference: Outcome, notes: dict[str, Any]) -> FaultReport:
        """The fault table of a run of this city against the reference run."""
        return FaultReport(fault, self.sent, set(self.valid_ids), run, reference, notes)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    city = simulate(CITY)
    paths = write_city(city, tmp_path_factory.mktemp("reliability-city"))
    with paths["events"].open("ab") as fh:
        fh.write(b"\n".join(BAD_LINES) + b"\n")
    return Scenario(
        events=paths["events"],
        valid_ids=frozenset(e["event_id"] for e in city.events),
        sent=len(city.events) + len(BAD_LINES),
        responders=list(city.responders),
    )


def _db(redis_service: RunningService, db: int) -> str:
    """A database of the session Redis of its own (the tests flush it)."""
    return f"redis://127.0.0.1:{redis_service.port}/{db}"


@contextlib.asynccontextmanager
async def running(
    name: str,
    feed: Feed,
    redis_url: str,
    data_dir: Path,
    workdir: Path,
    scenario: Scenario,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[Cluster, TaskReceiver]]:
    """A cluster (app id ``name``) with its own receiver; every worker is killed on the way out."""
    server, receiver = await start_receiver()
    cluster = Cluster(
        app_id=name,
        feed=feed,
        redis_url=redis_url,
        dispatch_url=server.tasks_url,
        data_dir=data_dir,
        workdir=workdir,
        env=env,
    )
    try:
        await cluster.prepare(scenario.responders)
        yield cluster, receiver
    finally:
        cluster.kill_all()
        await server.stop()


def _replay(scenario: Scenario, feed: Feed) -> PacedReplay:
    """The city's paced replay onto ``feed``, under way."""
    replay = PacedReplay(scenario.events, feed, REPLAY_S)
    replay.start()
    return replay


async def _worker_and_replay(cluster: Cluster, scenario: Scenario) -> tuple[Worker, PacedReplay]:
    """One ready worker of ``cluster``, then the city's paced replay under way."""
    worker = cluster.start()
    await worker.wait_ready()
    return worker, _replay(scenario, cluster.feed)


async def _finish(cluster: Cluster, receiver: TaskReceiver, replay: PacedReplay, scenario: Scenario) -> Outcome:
    await replay.task  # type: ignore[misc]
    await cluster.settled(receiver, set(scenario.valid_ids), timeout_s=SETTLE_S)
    return await outcome(cluster, receiver)


async def _dead_letters(feed: Feed) -> dict[str, Any]:
    """Distinct dead letters (by source offset: a reprocessed bad line is dead-lettered again)."""
    letters = await feed.dead_letters()
    distinct = {(d["topic"], d["partition"], d["offset"]): d["reason"] for d in letters}
    return {"dead letters": len(distinct), "dead-letter messages": len(letters)}


@pytest.fixture(scope="module")
def reference(
    scenario: Scenario,
    tansu: RunningService,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Outcome:
    """One undisturbed single-worker run of the city: the tasks every fault run must reproduce."""
    workdir = tmp_path_factory.mktemp("reliability-reference")

    async def run() -> Outcome:
        feed = Feed("rel-ref", tansu.url)
        async with running("rel-ref", feed, _db(redis_service, 9), trained_data_dir, workdir, scenario) as (
            cluster,
            receiver,
        ):
            _worker, replay = await _worker_and_replay(cluster, scenario)
            result = await _finish(cluster, receiver, replay, scenario)
        assert result.rows.keys() >= scenario.valid_ids, "the reference run itself lost events"
        assert result.keys, "the reference run created no task: the comparison would prove nothing"
        assert not result.doubled and result.dead_tasks == 0
        print(f"\nreference: {len(result.keys)} tasks, {result.scored} events scored", flush=True)
        return result

    return asyncio.run(run())


# ------------------------------------------------------------------------------------------------ crash


async def test_worker_killed_mid_replay_recovers_state_and_loses_nothing(
    scenario: Scenario,
    reference: Outcome,
    tansu: RunningService,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path: Path,
) -> None:
    feed = Feed("rel-crash", tansu.url)
    notes: dict[str, Any] = {}
    async with running("rel-crash", feed, _db(redis_service, 10), trained_data_dir, tmp_path, scenario) as (
        cluster,
        receiver,
    ):
        first, replay = await _worker_and_replay(cluster, scenario)
        await replay.reached(0.4)
        await first.kill()  # SIGKILL: no commit, no flush, no goodbye to the group
        replay.pause()  # the feed waits upstream (see the module docstring)
        await cluster.fence_changelogs()  # Tansu only: see Cluster.fence_changelogs
        scored = first.value("fw_events_scored_total")
        notes["killed after"] = f"{replay.sent} of {replay.total} lines sent, {scored:.0f} scored"
        second = cluster.restart(first)
        notes["ready again after s"] = round(await second.wait_ready(), 1)

        # State recovered from the changelogs, before any new event arrives: the key gauge (a 5 s timer)
        # is non-zero, and replayed uncommitted events are recognised as already seen.
        async def state_reported() -> bool:
            await second.metrics()
            return second.value("fw_feature_state_keys", table="subscriber") > 0

        await wait_until(state_reported, 15, "the feature-state gauge after the restart")
        notes["state keys after restart (subscriber, caller)"] = (
            second.value("fw_feature_state_keys", table="subscriber"),
            second.value("fw_feature_state_keys", table="caller"),
        )
        replay.resume()
        run = await _finish(cluster, receiver, replay, scenario)
        notes["replayed events skipped as seen (recovered dedup state)"] = second.value("fw_duplicate_events_total")
        notes.update(await _dead_letters(feed))

    report = scenario.report("crash: kill -9 at 40%", run, reference, notes)
    report.check()
    recognised = second.value("fw_duplicate_events_total")
    assert recognised > 0, f"no replayed event was recognised: state not recovered?{report.table()}"
    assert notes["dead letters"] == len(BAD_LINES), report.table()


# ------------------------------------------------------------------------------------- scale-out / leave


async def test_second_worker_joins_then_first_leaves_without_loss_or_doubles(
    scenario: Scenario,
    reference: Outcome,
    tansu: RunningService,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path: Path,
) -> None:
    feed = Feed("rel-scale", tansu.url)
    notes: dict[str, Any] = {}
    async with running("rel-scale", feed, _db(redis_service, 11), trained_data_dir, tmp_path, scenario) as (
        cluster,
        receiver,
    ):
        first, replay = await _worker_and_replay(cluster, scenario)
        await replay.reached(0.3)
        replay.pause()  # while the group rebalances (see the module docstring)
        notes["second joined at line"] = replay.sent
        await cluster.quiesce()
        await cluster.fence_changelogs()  # Tansu only: see Cluster.fence_changelogs
        second = cluster.start()  # same app id, its own web port
        notes["second ready (joined) after s"] = round(await second.wait_ready(), 1)
        await wait_until(lambda: first.ready(), 30, "the first worker ready after the rebalance")
        replay.resume()
        await replay.reached(0.65)
        replay.pause()
        notes["first left at line"] = replay.sent
        await cluster.quiesce()
        await cluster.fence_changelogs()
        started = time.monotonic()
        await first.terminate()  # SIGTERM: a graceful leave
        notes["first stopped in s"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(1)  # the leave starts a rebalance: readiness must come back after it, not before
        notes["second ready alone after s"] = round(await second.wait_ready() + 1, 1)
        replay.resume()
        run = await _finish(cluster, receiver, replay, scenario)
        notes["scored by first, second"] = tuple(w.value("fw_events_scored_total") for w in (first, second))

    report = scenario.report("scale-out 1->2->1 workers", run, reference, notes)
    report.check()
    assert first.value("fw_events_scored_total") > 0 and second.value("fw_events_scored_total") > 0, report.table()


# ------------------------------------------------------------------------------------------ Redis outage


@contextlib.contextmanager
def _redis_in(folder: Path, port: int) -> Iterator[RunningService]:
    """A redis-server of this test on ``port``, its dump file in ``folder`` (its working directory)."""
    with contextlib.chdir(folder):
        service = start_redis(port=port, log_path=folder / "redis.log")
    try:
        yield service
    finally:
        service.stop()


async def test_redis_outage_scoring_continues_and_every_task_arrives(
    scenario: Scenario, reference: Outcome, tansu: RunningService, trained_data_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    feed = Feed("rel-redis", tansu.url)
    notes: dict[str, Any] = {}
    outage_s = 30.0
    with contextlib.ExitStack() as stack:
        stack.enter_context(_redis_in(tmp_path, port))
        async with running("rel-redis", feed, url, trained_data_dir, tmp_path, scenario) as (cluster, receiver):
            worker, replay = await _worker_and_replay(cluster, scenario)
            await replay.reached(0.3)
            # A planned outage: SHUTDOWN SAVE writes the data set, the restart on the same port loads it
            # (a Redis that comes back empty is a different fault: cases and outbox would be gone).
            client = Redis.from_url(url)
            with contextlib.suppress(Exception):
                await client.shutdown(save=True)
            await client.aclose()
            await asyncio.sleep(0.5)
            await worker.metrics()
            scored_at_stop = worker.value("fw_events_scored_total")
            samples = []
            deadline = time.monotonic() + outage_s
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                await worker.metrics()
                samples.append(worker.value("fw_events_scored_total"))
            notes["scored while Redis was down"] = int(samples[-1] - scored_at_stop)
            notes["decisions waiting for Redis at its return"] = worker.value("fw_alerting_retry_queue")
            notes["alerting errors (decisions lost)"] = worker.value("fw_alerting_errors_total")
            stack.enter_context(_redis_in(tmp_path, port))  # back on the same port, with its data
            run = await _finish(cluster, receiver, replay, scenario)
            notes["dropped by alerting"] = worker.value("fw_alerting_dropped_total")

    report = scenario.report(f"redis down {outage_s:.0f} s", run, reference, notes)
    assert samples[-1] > samples[0] > scored_at_stop, f"scoring stalled while Redis was down: {samples}{report.table()}"
    report.check()
    assert worker.value("fw_alerting_errors_total") == 0, report.table()


# -------------------------------------------------------------------------------- dispatch down / slow


async def test_dispatch_endpoint_down_then_slow_tasks_arrive_once(
    scenario: Scenario,
    reference: Outcome,
    tansu: RunningService,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path: Path,
) -> None:
    feed = Feed("rel-dispatch", tansu.url)
    failing, slow, delay_s, timeout_s = 5, 2, 1.5, 1.0  # at most 7 failed attempts per task: under the 8 allowed
    notes: dict[str, Any] = {}
    env = {"FW_DELIVERY_TIMEOUT_S": str(timeout_s)}
    async with running("rel-dispatch", feed, _db(redis_service, 12), trained_data_dir, tmp_path, scenario, env=env) as (
        cluster,
        receiver,
    ):
        receiver.fail_next(failing, status=503)
        worker, replay = await _worker_and_replay(cluster, scenario)
        await wait_until(lambda: _true(receiver.failed >= failing), 60, "the 503 phase used up")
        receiver.slow_next(slow, delay_s)  # longer than the client's timeout: it retries what was stored
        await wait_until(lambda: _true(receiver.slowed >= slow), 60, "the slow phase used up")
        run = await _finish(cluster, receiver, replay, scenario)
        await worker.metrics()
        notes["503 answers, slow answers"] = (receiver.failed, receiver.slowed)
        notes["delivery retries"] = worker.value("fw_delivery_retries_total")
        notes["requests at the receiver"] = receiver.requests

    report = scenario.report("dispatch 503 then slow", run, reference, notes)
    report.check()
    assert run.duplicates >= 1, f"a timed-out POST that was stored must come again as a duplicate{report.table()}"


async def _true(value: bool) -> bool:
    return value


# ------------------------------------------------------------------------------------------ broker restart


async def test_worker_survives_broker_restart_and_then_processes_everything(
    scenario: Scenario,
    reference: Outcome,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path: Path,
) -> None:
    """Tansu's memory storage loses every topic, offset and changelog on a restart, so a restart *during*
    the replay cannot be compared with anything (events in flight are simply gone). What this proves: a
    ready worker whose broker goes away for ~5 s and comes back on the same port reconnects, becomes
    ready again (topics re-created) and then processes a full replay exactly like the reference.

    A mid-replay restart needs durable broker storage, and the bundled Tansu has none that is fast enough:
    it has no PostgreSQL engine (``FeatureNotEnabled { feature: "postgres" }``), and on its S3 engine (see
    ``test_broker_storage.py``, which proves records and offsets survive kill -9 there) the worker scores
    ~6 events/s, so this city would take ~14 minutes instead of 20 s. Tried: kill -9 at 40 % on S3
    storage; the worker reconnected by itself, but 4658 of 5020 events were still unscored after 120 s."""
    port = free_port()
    broker = start_tansu(port=port, log_path=tmp_path / "tansu.log")
    notes: dict[str, Any] = {}
    try:
        feed = Feed("rel-broker", broker.url)
        async with running("rel-broker", feed, _db(redis_service, 13), trained_data_dir, tmp_path, scenario) as (
            cluster,
            receiver,
        ):
            worker = cluster.start()
            await worker.wait_ready()
            broker.kill()
            await asyncio.sleep(5)
            notes["ready while the broker was away"] = await worker.ready()
            # A failed heartbeat marks the group coordinator dead, and readiness follows it.
            assert notes["ready while the broker was away"] is False, worker.log_tail()
            broker = start_tansu(port=port, log_path=tmp_path / "tansu.log")
            await ensure_topics(cluster.settings)  # the topics are gone: declare them again

            # Once the broker answers again the coordinator is found, and only the next heartbeat tells
            # the worker that the broker lost its group: /readyz can say ready for that moment. A replay
            # started in that gap once left one event without a feature row (probably: the consumer's
            # positions from before the restart pointed into the new, re-numbered logs, which a durable
            # Kafka never reuses). Wait for the re-join: not ready, then ready.
            async def noticed() -> bool:
                return not await worker.ready()

            with contextlib.suppress(AssertionError):
                await wait_until(noticed, 15, "the worker to notice the lost group", interval_s=0.1)
            notes["ready again after s"] = round(await worker.wait_ready(120), 1)
            assert worker.alive(), worker.log_tail()
            replay = _replay(scenario, feed)
            run = await _finish(cluster, receiver, replay, scenario)
            notes.update(await _dead_letters(feed))
    finally:
        broker.stop()

    name = "broker restart (before replay)"
    report = scenario.report(name, run, reference, notes)
    report.check()
