"""Reliability under faults: worker crash, scale-out and rebalance, Redis outage, dispatch endpoint down or
slow, broker restart. Real workers, broker, Redis and HTTP receiver (harness: ``tests/integration/cluster.py``).

Each fault run replays the same simulated city (event time compressed into ~40 s). Every valid event must
have been scored (its feature row is on ``<app_id>.features``), and the tasks the run's own decisions call
for must reach the receiver exactly once (by idempotency key), and no other task. One undisturbed run of a
single worker on the same events is shown beside each fault run: where a backlog reorders the merge of
partitions at the ``callers`` and ``score`` hops, a few rows differ from it (see ``FaultReport``).

Run with ``-s`` to see a table per fault (also part of every assertion message).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from alerting import keys as redis_keys
from sandbox.demo import BAD_LINES
from sandbox.services import RunningService, free_port, start_redis, start_tansu
from sandbox.simulate import CityConfig, simulate, write_city
from streams.topics import ensure_topics
from tests.integration.cluster import (
    Cluster,
    FaultReport,
    Feed,
    Outcome,
    PacedReplay,
    TaskReceiver,
    TcpProxy,
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
    sent: int  # lines on the wire: valid events, their repeats and the bad lines
    responders: list[Any]
    bad: int  # lines that must be dead-lettered
    delays: dict[str, int]  # event id -> event-time ms it reaches the broker late (out of order)

    def report(self, fault: str, run: Outcome, reference: Outcome, notes: dict[str, Any]) -> FaultReport:
        """The fault table of a run of this city against the reference run."""
        return FaultReport(fault, self.sent, set(self.valid_ids), run, reference, notes)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The city's events with bad input mixed in along the stream: malformed lines, an oversized one, repeats
    of valid events (the same id sent again) and events that arrive out of order (minutes late)."""
    city = simulate(CITY)
    paths = write_city(city, tmp_path_factory.mktemp("reliability-city"))
    lines = paths["events"].read_bytes().splitlines()
    rng = random.Random(CITY.seed)
    oversized = b'{"schema": "call.v1", "event_id": "big-1", "pad": "' + b"x" * 20_000 + b'"}'
    bad = [*BAD_LINES, oversized]
    repeats = rng.sample(lines, 20)
    mixed: list[bytes] = []
    step = len(lines) // (len(bad) + len(repeats) + 1)
    extras = iter(bad + repeats)
    for i, line in enumerate(lines):
        mixed.append(line)
        if i and i % step == 0 and (extra := next(extras, None)) is not None:
            mixed.append(extra)  # a bad line keeps its place in the stream; a repeat comes later than its twin
    paths["events"].write_bytes(b"\n".join(mixed) + b"\n")
    late = rng.sample([e["event_id"] for e in city.events], 20)
    return Scenario(
        events=paths["events"],
        valid_ids=frozenset(e["event_id"] for e in city.events),
        sent=len(mixed),
        responders=list(city.responders),
        bad=len(bad),
        delays={eid: 10 * 60_000 for eid in late},
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
    replay = PacedReplay(scenario.events, feed, REPLAY_S, delays=scenario.delays)
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
        # The decision-boundary check must reproduce an undisturbed run's tasks exactly, or it proves nothing.
        assert result.keys == result.decided, (sorted(result.keys ^ result.decided)[:5], len(result.keys))
        assert not result.doubled and result.dead_tasks == 0
        print(f"\nreference: {len(result.keys)} tasks, {result.scored} events scored", flush=True)
        return result

    return asyncio.run(run())


# ------------------------------------------------------------------------------------------------ crash


KILL_POINTS = 10
# The kill points are drawn from this seed (FW_CRASH_SEED overrides it; the report prints the one used), so
# a failure can be replayed at the same points.
CRASH_SEED = int(os.environ.get("FW_CRASH_SEED", "20261201"))


async def _outbox_len(redis_url: str) -> int:
    client = Redis.from_url(redis_url)
    try:
        return int(await client.xlen(redis_keys.OUTBOX))
    finally:
        await client.aclose()


@pytest.mark.parametrize("store", ["memory", "local"])
async def test_worker_killed_at_many_points_loses_and_doubles_nothing(
    store: str,
    scenario: Scenario,
    reference: Outcome,
    tansu: RunningService,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path: Path,
) -> None:
    """kill -9 at ``KILL_POINTS`` points of one replay, by how far the worker has got (distinct events scored,
    seeded), every other one held until a task is in flight to the (slow) receiver; the feed never pauses.
    Every valid event scored, every decided task received once; with feature state in memory (rebuilt from
    the changelog at each start) and on local disk (reopened, the changelog read on from its offsets)."""
    rng = random.Random(CRASH_SEED)
    valid = len(scenario.valid_ids)
    span = 0.9 * valid / KILL_POINTS  # one point in each tenth of the middle 90 %: spread, not bunched
    points = [int(0.05 * valid + (i + rng.random()) * span) for i in range(KILL_POINTS)]
    redis_url = _db(redis_service, 14 if store == "memory" else 10)
    name = "rel-kills" if store == "memory" else "rel-kills-local"
    feed = Feed(name, tansu.url)
    notes: dict[str, Any] = {"seed": CRASH_SEED, "kill points (events scored)": points, "state store": store}
    at_kill: list[str] = []
    env = {"FW_STATE_STORE": store, "FW_STATE_DIR": str(tmp_path / "state")}
    async with running(name, feed, redis_url, trained_data_dir, tmp_path, scenario, env) as (cluster, receiver):
        receiver.set_delay(1.0)  # each delivery is in flight for a second (under the client's 5 s timeout)
        worker, replay = await _worker_and_replay(cluster, scenario)
        for i, point in enumerate(points):

            async def reached(point: int = point) -> bool:
                return len(await cluster.featured()) >= point

            await wait_until(reached, 180, f"{point} events scored", interval_s=0.2)
            in_flight = 0
            if i % 2:  # hold this kill until a task waits in the outbox (delivery under way or due)

                async def task_in_flight() -> bool:
                    return await _outbox_len(redis_url) > 0

                with contextlib.suppress(AssertionError):
                    await wait_until(task_in_flight, 20, "a task in flight", interval_s=0.05)
                in_flight = await _outbox_len(redis_url)
            await worker.kill()
            at_kill.append(f"{len(cluster.rows)} scored, {replay.sent} sent, outbox {in_flight}")
            worker = cluster.restart(worker)
            await worker.wait_ready()
        run = await _finish(cluster, receiver, replay, scenario)
        # Replayed uncommitted events were recognised as already seen: the dedup state came back with the rest.
        notes["replayed events skipped as seen"] = cluster.sum("fw_duplicate_events_total")
        notes["at each kill"] = at_kill
        notes["POSTs deduplicated by the receiver"] = receiver.duplicates
        notes.update(await _dead_letters(feed))

    report = scenario.report(f"crash: kill -9 at {KILL_POINTS} points ({store} state)", run, reference, notes)
    report.check()
    assert notes["dead letters"] == scenario.bad, report.table()
    assert notes["replayed events skipped as seen"] > 0, f"no replayed event recognised: state lost?{report.table()}"
    with_tasks_in_flight = sum(1 for k in at_kill if not k.endswith("outbox 0"))
    assert with_tasks_in_flight >= 2, f"too few kills with a task in flight{report.table()}"


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
        await replay.reached(0.3)  # the feed goes on through both rebalances
        notes["second joined at line"] = replay.sent
        second = cluster.start()  # same app id, its own web port
        notes["second ready (joined) after s"] = round(await second.wait_ready(), 1)
        await wait_until(lambda: first.ready(), 30, "the first worker ready after the rebalance")
        await replay.reached(0.65)
        notes["first left at line"] = replay.sent
        started = time.monotonic()
        await first.terminate()  # SIGTERM: a graceful leave
        notes["first stopped in s"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(1)  # the leave starts a rebalance: readiness must come back after it, not before
        notes["second ready alone after s"] = round(await second.wait_ready() + 1, 1)
        run = await _finish(cluster, receiver, replay, scenario)
        notes["scored by first, second"] = tuple(w.value("fw_events_scored_total") for w in (first, second))
        notes["acks refused mid-rebalance (read again)"] = cluster.sum("fw_rebalance_unacked_total")

    report = scenario.report("scale-out 1->2->1 workers", run, reference, notes)
    report.check()
    assert first.value("fw_events_scored_total") > 0 and second.value("fw_events_scored_total") > 0, report.table()


# ------------------------------------------------------------------------------------------ Redis outage


@contextlib.contextmanager
def _redis_in(folder: Path, port: int) -> Iterator[RunningService]:
    """A durable redis-server of this test on ``port`` (append-only file in ``folder``, as deployed)."""
    service = start_redis(port=port, log_path=folder / "redis.log", data_dir=folder)
    try:
        yield service
    finally:
        service.stop()


async def test_redis_killed_and_away_30s_with_a_worker_crash_meanwhile_loses_nothing(
    scenario: Scenario, reference: Outcome, tansu: RunningService, trained_data_dir: Path, tmp_path: Path
) -> None:
    """Redis kill -9 mid-stream, back after 30 s on the same append-only file; the worker is killed (-9) and
    restarted while Redis is away. Scoring goes on throughout; the decisions of the outage wait on the
    pending-alerts hop (not in a worker's memory) and every task arrives once Redis is back."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    feed = Feed("rel-redis", tansu.url)
    notes: dict[str, Any] = {}
    outage_s = 30.0
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(_redis_in(redis_dir, port))
        async with running("rel-redis", feed, url, trained_data_dir, tmp_path, scenario) as (cluster, receiver):
            worker, replay = await _worker_and_replay(cluster, scenario)
            await replay.reached(0.3)
            redis.kill()  # SIGKILL: what it acknowledged is in its append-only file (the OS has it)
            back_at = time.monotonic() + outage_s
            await asyncio.sleep(1)
            await worker.metrics()
            scored_at_stop = worker.value("fw_events_scored_total")
            await asyncio.sleep(8)
            await worker.kill()  # the last scrape is taken just before
            notes["scored by the first worker in 8 s without Redis"] = int(
                worker.value("fw_events_scored_total") - scored_at_stop
            )
            notes["it was retrying a decision when killed"] = worker.value("fw_alerting_retry_queue")
            worker = cluster.restart(worker)
            notes["restarted worker ready without Redis after s"] = round(await worker.wait_ready(), 1)
            samples = []
            while time.monotonic() < back_at:
                await asyncio.sleep(1)
                await worker.metrics()
                samples.append(worker.value("fw_events_scored_total"))
            notes["scored by the restarted worker without Redis"] = int(samples[-1])
            stack.enter_context(_redis_in(redis_dir, port))  # back on the same port and file
            run = await _finish(cluster, receiver, replay, scenario)
            notes["alerting errors"] = cluster.sum("fw_alerting_errors_total")

    report = scenario.report(f"redis kill -9, {outage_s:.0f} s away, worker -9", run, reference, notes)
    assert notes["scored by the first worker in 8 s without Redis"] > 0, f"scoring stalled{report.table()}"
    assert len(samples) > 2 and samples[-1] > samples[0], f"stalled after the restart: {samples}{report.table()}"
    report.check()
    assert notes["alerting errors"] == 0, report.table()


# -------------------------------------------------------------------------------- dispatch down / slow


async def test_dispatch_endpoint_failing_slow_then_down_60s_tasks_arrive_once(
    scenario: Scenario,
    reference: Outcome,
    tansu: RunningService,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path: Path,
) -> None:
    feed = Feed("rel-dispatch", tansu.url)
    failing, slow, delay_s, timeout_s, down_s = 5, 2, 1.5, 1.0, 60.0
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
        received_before = len(receiver.tasks)
        await receiver.down_for(down_s)  # connections refused; the feed and the tasks go on meanwhile
        run = await _finish(cluster, receiver, replay, scenario)
        await worker.metrics()
        notes[f"tasks that arrived after {down_s:.0f} s down"] = len(receiver.tasks) - received_before
        notes["503 answers, slow answers"] = (receiver.failed, receiver.slowed)
        notes["delivery retries"] = worker.value("fw_delivery_retries_total")
        notes["requests at the receiver"] = receiver.requests

    report = scenario.report(f"dispatch 503, slow, down {down_s:.0f} s", run, reference, notes)
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


# ------------------------------------------------------------------------------------- broker unreachable


async def test_broker_unreachable_30s_mid_stream_loses_nothing(
    scenario: Scenario,
    reference: Outcome,
    redis_service: RunningService,
    trained_data_dir: Path,
    tmp_path: Path,
) -> None:
    """Every connection to the broker cut for 30 s mid-stream (a proxy in front of a broker that advertises
    the proxy), workers and broker both running: the worker loses its group and its in-flight requests,
    the feed's producer waits, and once the network is back everything is scored and delivered once."""
    proxy = TcpProxy(upstream_port=free_port())
    broker = start_tansu(port=proxy.upstream_port, log_path=tmp_path / "tansu.log", advertised_port=proxy.port)
    await proxy.start()
    cut_s = 30.0
    notes: dict[str, Any] = {}
    try:
        feed = Feed("rel-net", f"kafka://127.0.0.1:{proxy.port}")
        async with running("rel-net", feed, _db(redis_service, 13), trained_data_dir, tmp_path, scenario) as (
            cluster,
            receiver,
        ):
            worker, replay = await _worker_and_replay(cluster, scenario)
            await replay.reached(0.4)
            await proxy.cut()
            notes["cut at line"] = replay.sent
            await asyncio.sleep(cut_s / 2)
            notes["ready half-way through the cut"] = await worker.ready()
            await asyncio.sleep(cut_s / 2)
            await proxy.start()
            notes["ready again after s"] = round(await worker.wait_ready(120), 1)  # the same process: it survived
            run = await _finish(cluster, receiver, replay, scenario)
    finally:
        await proxy.stop()
        broker.stop()

    report = scenario.report(f"broker unreachable {cut_s:.0f} s", run, reference, notes)
    report.check()
    assert notes["ready half-way through the cut"] is False, report.table()
