"""Alerting against a real redis-server and real HTTP: responders, cases, outbox and delivery."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonschema
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from alerting import keys
from alerting.decision import Decision
from alerting.delivery import Deliverer
from alerting.dispatcher import Dispatcher
from alerting.responders import ResponderRegistry
from alerting.tasks import TaskStore
from core.clock import ManualClock
from core.errors import InvalidResponder, NoResponderAvailable, UnknownResponder
from core.settings import Settings
from sandbox.receiver import ReceiverServer
from tests.contract import SCHEMAS

pytestmark = pytest.mark.integration

REDIS_SERVER = "/usr/bin/redis-server"
TASK_SCHEMA = SCHEMAS / "task.v1.json"
HOME = (31.2304, 121.4737)  # (lat, lon) of the subscribers in these tests
KM_LAT = 1 / 111.2  # degrees of latitude per km
EPISODE_MS = 24 * 3600 * 1000
T0 = 1_700_000_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        episode_ms=EPISODE_MS,
        delivery_timeout_s=1.0,
        delivery_max_attempts=5,
        delivery_backoff_base_s=0.01,
        delivery_backoff_max_s=0.05,
        responder_search_radii_km=(2.0, 5.0, 10.0),
    )


@pytest.fixture
async def receiver() -> AsyncIterator[ReceiverServer]:
    server = ReceiverServer()
    await server.start()
    yield server
    await server.stop()


def _responder(
    rid: str, km_north: float, *, kind: str = "police", unit: str = "U1", status: str = "available"
) -> dict[str, Any]:
    return {
        "responder_id": rid,
        "kind": kind,
        "unit": unit,
        "lat": HOME[0] + km_north * KM_LAT,
        "lon": HOME[1],
        "status": status,
    }


def _decision(subscriber: str, ts_ms: int, level: int, score: float = 0.9, **kw: Any) -> Decision:
    return Decision(
        subscriber=subscriber,
        event_id=f"e-{subscriber}-{ts_ms}-{level}",
        ts_ms=ts_ms,
        score=score,
        level=level,
        model_version="m-test-1",
        reasons=kw.pop("reasons", (f"level {level} evidence at {ts_ms}",)),
        lat=kw.pop("lat", HOME[0]),
        lon=kw.pop("lon", HOME[1]),
        **kw,
    )


# --- responders -------------------------------------------------------------------------------------------


async def test_claim_nearest_available_with_unit_preference(r: aioredis.Redis) -> None:
    reg = ResponderRegistry(r)
    await reg.load(
        [
            _responder("busy-0.3", 0.3, status="busy"),
            _responder("off-0.4", 0.4, status="off_duty"),
            _responder("grid-0.6", 0.6, kind="grid_worker", unit="G7"),
            _responder("pol-1.2", 1.2),
            _responder("pol-1.8-u9", 1.8, unit="U9"),
            _responder("pol-4", 4.0),
            _responder("pol-50", 50.0),
        ]
    )
    radii = (2.0, 5.0, 10.0)
    first = await reg.claim_nearest(*HOME, None, radii)
    assert first is not None and first["responder_id"] == "grid-0.6" and first["status"] == "busy"
    assert first["distance_km"] == pytest.approx(0.6, abs=0.01)
    # Same ring (2 km): the hinted unit wins over the nearer responder of another unit.
    assert (await reg.claim_nearest(*HOME, "U9", radii))["responder_id"] == "pol-1.8-u9"  # type: ignore[index]
    assert (await reg.claim_nearest(*HOME, "U9", radii))["responder_id"] == "pol-1.2"  # type: ignore[index]
    # Next ring only once the first is exhausted; the one 50 km away is beyond every radius.
    assert (await reg.claim_nearest(*HOME, None, radii))["responder_id"] == "pol-4"  # type: ignore[index]
    assert await reg.claim_nearest(*HOME, None, radii) is None

    assert await reg.release("grid-0.6") is True
    assert await reg.release("off-0.4") is False  # off duty stays off duty
    assert (await reg.get("off-0.4"))["status"] == "off_duty"  # type: ignore[index]
    await reg.set_status("busy-0.3", "available")
    assert (await reg.claim_nearest(*HOME, None, radii))["responder_id"] == "busy-0.3"  # type: ignore[index]

    # Moving a responder moves it in the search.
    await reg.update_location("pol-50", HOME[0] + 0.1 * KM_LAT, HOME[1])
    assert (await reg.claim_nearest(*HOME, None, radii))["responder_id"] == "pol-50"  # type: ignore[index]


async def test_concurrent_claims_never_take_one_responder_twice(r: aioredis.Redis) -> None:
    reg = ResponderRegistry(r)
    rng = random.Random(3)
    kinds = ("police", "grid_worker")
    await reg.load(_responder(f"r{i}", rng.uniform(0.1, 3.0), kind=kinds[i % 2]) for i in range(15))
    claims = await asyncio.gather(*(reg.claim_nearest(*HOME, None, (1.0, 2.0, 5.0)) for _ in range(20)))
    won = [c["responder_id"] for c in claims if c is not None]
    assert len(won) == 15 and len(set(won)) == 15
    assert claims.count(None) == 5
    for i in range(15):
        assert (await reg.get(f"r{i}"))["status"] == "busy"  # type: ignore[index]


# --- cases and tasks --------------------------------------------------------------------------------------


async def test_one_task_per_case_and_level(r: aioredis.Redis, settings: Settings) -> None:
    d = Dispatcher(r, settings)
    await d.registry.load([_responder(f"p{i}", 0.5 + i) for i in range(5)])
    phone = "+8613800001111"

    # Ten decisions of one episode, all at once: one case, one level-3 task, one responder taken.
    results = await asyncio.gather(*(d.handle(_decision(phone, T0 + i * 60_000, 3)) for i in range(10)))
    tasks = [t for t in results if t is not None]
    assert len(tasks) == 1
    task = tasks[0]
    assert task["responder_id"] is not None and task["subscriber"] == phone and task["level"] == 3
    assert task["idempotency_key"] == f"{task['case_key']}:L3"
    busy = [rid for i in range(5) if (await d.registry.get(rid := f"p{i}"))["status"] == "busy"]  # type: ignore[index]
    assert busy == [task["responder_id"]]  # losers of the race released what they claimed
    case = await d.cases.get(task["case_key"])
    assert case is not None and case.decisions == 10 and case.last_ts_ms == T0 + 9 * 60_000
    # Whichever concurrent decision committed first opened the episode; later-committed earlier ones joined it.
    assert case.start_ms in {T0 + i * 60_000 for i in range(10)} and task["case_key"].endswith(f"-{case.start_ms}")
    assert len(case.reasons) == 10
    assert phone not in task["case_key"]  # the case key carries the pseudonym, not the number
    assert await r.xlen(keys.OUTBOX) == 1

    # Another subscriber: level 2 (call centre), repeated, then raised to 3 later in the same episode.
    other = "+8613800002222"
    t2 = await d.handle(_decision(other, T0, 2, score=0.6))
    assert t2 is not None and t2["level"] == 2 and t2["responder_id"] is None
    assert await d.handle(_decision(other, T0 + 1000, 2, score=0.7)) is None
    t3 = await d.handle(_decision(other, T0 + 3_600_000, 3, score=0.95))
    assert t3 is not None and t3["level"] == 3 and t3["case_key"] == t2["case_key"]
    assert t3["responder_id"] not in (None, task["responder_id"]) and t3["score"] == 0.95
    assert t3["idempotency_key"] != t2["idempotency_key"]
    assert await d.handle(_decision(other, T0 + 3_700_000, 3)) is None
    assert await d.handle(_decision(other, T0 + 3_800_000, 2)) is None  # never a downgrade task
    # A late, out-of-order decision still belongs to the open episode.
    assert await d.handle(_decision(other, T0 - 5000, 3)) is None

    # After the episode: a new case and a new task.
    t_next = await d.handle(_decision(other, T0 + EPISODE_MS, 3))
    assert t_next is not None and t_next["case_key"] != t2["case_key"]
    assert t_next["case_key"].endswith(f"-{T0 + EPISODE_MS}")

    # Level 1: a warning record, no task.
    assert await d.handle(_decision("+8613800003333", T0, 1, score=0.3)) is None
    assert await r.xlen(keys.WARNINGS) == 1

    stats = await d.stats()
    assert stats["cases"] == 4 and stats["warnings"] == 1
    assert stats["tasks_by_level"] == {"2": 1, "3": 3} and stats["tasks"] == 4
    assert stats["outbox"] == 4
    events = await TaskStore(r).events(t3["task_id"])
    assert [e["state"] for e in events] == ["created"]


async def test_a_new_call_or_transfer_in_the_case_warns_again(r: aioredis.Redis, settings: Settings) -> None:
    d = Dispatcher(r, settings.model_copy(update={"repeats_per_case": 2}))
    await d.registry.load([_responder("p0", 0.5), _responder("p1", 1.5)])
    phone = "+8613800004444"

    first = await d.handle(_decision(phone, T0, 1, occasion="call-A"))
    assert first is None and await r.xlen(keys.WARNINGS) == 1
    # The same call again (a timer's re-score, a redelivery): nothing new.
    assert await d.handle(_decision(phone, T0 + 300_000, 1, occasion="call-A")) is None
    # A new call of the same episode: a second warning, with a key of its own; its redelivery adds nothing.
    for _ in range(2):
        assert await d.handle(_decision(phone, T0 + 600_000, 1, occasion="call-B")) is None
    warnings = [orjson.loads(fields[b"warning"]) for _, fields in await r.xrange(keys.WARNINGS)]
    case_key = warnings[0]["case_key"]
    assert [w["idempotency_key"] for w in warnings] == [f"{case_key}:L1", f"{case_key}:L1:call-B"]

    # The same call rises to the call centre while on the line: the task says to call now.
    call = await d.handle(_decision(phone, T0 + 700_000, 2, occasion="call-B", in_call=True))
    assert call is not None and call["idempotency_key"] == f"{case_key}:L2"
    assert call["reasons"][0] == "call this person now: they are on a call with a suspected fraud line"
    assert _metric("fw_in_call_actions_total", level="2") >= 1
    # A transfer of the same episode at the call-centre level: a second call-centre task, keyed by the transfer.
    again = await d.handle(_decision(phone, T0 + 800_000, 2, occasion="tr-1"))
    assert again is not None and again["idempotency_key"] == f"{case_key}:L2:tr-1"
    assert again["task_id"] != call["task_id"] and again["case_key"] == case_key
    assert await TaskStore(r).for_case(case_key) == {2: call["task_id"]}  # the level's first task stays found
    # The case's repeats are spent (2): a third new occasion acts no more.
    assert await d.handle(_decision(phone, T0 + 900_000, 2, occasion="tr-2")) is None
    assert await r.xlen(keys.WARNINGS) == 2 and await r.xlen(keys.OUTBOX) == 2

    # A visit is never repeated: one officer per case.
    other = "+8613800005555"
    visit = await d.handle(_decision(other, T0, 3, occasion="tr-9"))
    assert visit is not None and visit["idempotency_key"].endswith(":L3")
    assert await d.handle(_decision(other, T0 + 60_000, 3, occasion="tr-10")) is None

    # Concurrent deliveries of one new occasion repeat it once.
    third = "+8613800006666"
    assert await d.handle(_decision(third, T0, 2, occasion="call-X")) is not None
    made = await asyncio.gather(*(d.handle(_decision(third, T0 + 1000, 2, occasion="call-Y")) for _ in range(8)))
    assert len([t for t in made if t is not None]) == 1
    stored = [
        orjson.loads(raw)
        for raw in await r.mget([keys.task(keys.text(t) or "") for t in await r.zrange(keys.TASKS_OPEN, 0, -1)])
    ]
    idem = [t["idempotency_key"] for t in stored]
    assert len(idem) == len(set(idem)) == 5  # no key under two task ids


async def test_delivery_latency_starts_at_the_scoring_decision(r: aioredis.Redis, settings: Settings) -> None:
    # The decision crosses a topic (score -> explain) before alerting sees it: that hop belongs in the figure.
    clock = ManualClock()
    d = Dispatcher(r, settings, clock=clock)
    decided = clock.now_s() - 2.5
    assert await d.handle(_decision("+8613800005555", T0, 3, decided_at_s=decided)) is not None
    assert await d.handle(_decision("+8613800006666", T0, 3)) is not None
    entries = await r.xrange(keys.OUTBOX)
    stamps = [float(fields[b"enqueued_at"]) for _, fields in entries]
    assert stamps[0] == decided
    assert stamps[1] == clock.now_s()  # no decision time: the outbox write's own clock


async def test_replay_is_deterministic(r: aioredis.Redis, settings: Settings) -> None:
    decisions = [_decision("+8613800004444", T0 + i * 600_000, lvl) for i, lvl in enumerate((1, 2, 2, 3, 3))]
    keys_seen = []
    for _ in range(2):
        await r.flushdb()
        d = Dispatcher(r, settings)
        out = [await d.handle(x) for x in decisions]
        keys_seen.append([(t["idempotency_key"], t["created_ms"]) for t in out if t is not None])
    assert keys_seen[0] == keys_seen[1] and len(keys_seen[0]) == 2


# --- delivery ---------------------------------------------------------------------------------------------


async def test_end_to_end_over_http(r: aioredis.Redis, settings: Settings, receiver: ReceiverServer) -> None:
    d = Dispatcher(r, settings)
    await d.registry.load([_responder("p1", 0.7), _responder("g1", 1.1, kind="grid_worker")])
    delivered_before = _metric("fw_tasks_delivered_total")
    made = [
        await d.handle(_decision("+8613800005555", T0, 3)),
        await d.handle(_decision("+8613800006666", T0 + 5, 2)),
        await d.handle(_decision("+8613800007777", T0 + 9, 1)),
        await d.handle(_decision("+8613800008888", T0 + 7, 3, lat=None, lon=None)),
    ]
    created = [t for t in made if t is not None]
    assert len(created) == 3

    async with Deliverer(r, settings, url=receiver.tasks_url) as deliverer:
        assert await deliverer.drain_once() == 3
        assert await deliverer.drain_once() == 0

    got = {t["task_id"]: t for t in receiver.receiver.tasks}
    assert got == {t["task_id"]: t for t in created}
    schema = json.loads(TASK_SCHEMA.read_text())
    for t in got.values():
        jsonschema.validate(t, schema)
    no_place = next(t for t in got.values() if t["subscriber"] == "+8613800008888")
    assert "lat" not in no_place and no_place["responder_id"] is None
    assert receiver.receiver.duplicates == 0
    assert _metric("fw_tasks_delivered_total") - delivered_before == 3
    store = TaskStore(r)
    for t in created:
        assert await store.state(t["task_id"]) == "delivered"
    stats = await d.stats()
    assert stats["delivered"] == 3 and stats["outbox"] == 0 and stats["dead"] == 0


async def test_decoded_responses_client_works_too(redis_url: str, settings: Settings, receiver: ReceiverServer) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.flushdb()
        d = Dispatcher(client, settings)
        await d.registry.load([_responder("p1", 0.7)])
        task = await d.handle(_decision("+8613800009999", T0, 3))
        assert task is not None and task["responder_id"] == "p1"
        async with Deliverer(client, settings, url=receiver.tasks_url) as deliverer:
            assert await deliverer.drain_once() == 1
        assert receiver.receiver.tasks == [task]
        assert (await d.stats())["delivered"] == 1
    finally:
        await client.aclose()


async def test_503_is_retried_and_delivered_once(
    r: aioredis.Redis, settings: Settings, receiver: ReceiverServer
) -> None:
    d = Dispatcher(r, settings)
    task = await d.handle(_decision("+8613800001212", T0, 2))
    assert task is not None
    retries_before = _metric("fw_delivery_retries_total")
    receiver.receiver.fail_next(2)
    clock = ManualClock()
    async with Deliverer(r, settings, url=receiver.tasks_url, clock=clock) as deliverer:
        drain = asyncio.create_task(deliverer.drain_once())
        # Each 503 is followed by a pause on the deliverer's clock, within the full-jitter ceiling of
        # base * 2**(failures - 1), and nothing is sent again until the clock has moved past it.
        for failures, ceiling in ((1, 0.01), (2, 0.02)):
            await asyncio.wait_for(clock.sleeping(), 10)
            (pause,) = clock.sleepers
            assert 0.0 <= pause <= ceiling and receiver.receiver.requests == failures
            clock.advance(ceiling)
        assert await asyncio.wait_for(drain, 10) == 1
    assert receiver.receiver.requests == 3 and receiver.receiver.tasks == [task]
    assert _metric("fw_delivery_retries_total") - retries_before == 2
    events = await TaskStore(r).events(task["task_id"])
    assert [e["state"] for e in events] == ["created", "delivered"] and events[1]["attempts"] == 3


async def test_crashed_deliverer_entries_are_redelivered_exactly_once(
    r: aioredis.Redis, settings: Settings, receiver: ReceiverServer
) -> None:
    d = Dispatcher(r, settings)
    quiet = await d.handle(_decision("+8613800001313", T0, 3))
    posted = await d.handle(_decision("+8613800001414", T0, 2))
    assert quiet is not None and posted is not None

    # Deliverer A takes both entries, POSTs one, and dies before acknowledging either.
    crashed = Deliverer(r, settings, url=receiver.tasks_url, consumer="crashed")
    await crashed.outbox.ensure_group()
    taken = await crashed.outbox.read_new(count=10)
    assert len(taken) == 2
    await crashed._attempt(next(e for e in taken if e.task_id == posted["task_id"]))
    await crashed.aclose()
    assert await crashed.outbox.pending_count() == 2

    await asyncio.sleep(0.06)
    async with Deliverer(r, settings, url=receiver.tasks_url, claim_idle_ms=50) as survivor:
        assert await survivor.drain_once() == 2
        assert await survivor.drain_once() == 0
    assert sorted(t["task_id"] for t in receiver.receiver.tasks) == sorted([quiet["task_id"], posted["task_id"]])
    assert receiver.receiver.duplicates == 1  # the re-POST of the unacknowledged one, deduplicated by key
    assert await survivor.outbox.pending_count() == 0
    store = TaskStore(r)
    for t in (quiet, posted):
        assert [e["state"] for e in await store.events(t["task_id"])] == ["created", "delivered"]


async def test_receiver_down_then_up(r: aioredis.Redis, receiver: ReceiverServer) -> None:
    settings = Settings(delivery_max_attempts=40, delivery_backoff_base_s=0.02, delivery_backoff_max_s=0.1)
    port = _free_port()
    d = Dispatcher(r, settings)
    task = await d.handle(_decision("+8613800001515", T0, 2))
    assert task is not None
    retries_before = _metric("fw_delivery_retries_total")
    stop = asyncio.Event()
    late = ReceiverServer()
    clock = ManualClock()
    async with Deliverer(r, settings, url=f"http://127.0.0.1:{port}/tasks", block_ms=50, clock=clock) as deliverer:
        runner = asyncio.create_task(deliverer.run(stop))
        try:
            for _ in range(3):  # connection refused, three times: each failure pauses on the clock
                await asyncio.wait_for(clock.sleeping(), 10)
                clock.advance(settings.delivery_backoff_max_s)
            await asyncio.wait_for(clock.sleeping(), 10)
            assert _metric("fw_delivery_retries_total") - retries_before == 4
            assert await TaskStore(r).state(task["task_id"]) == "created"
            await late.start(port=port)
            clock.advance(settings.delivery_backoff_max_s)
            deadline = time.monotonic() + 5
            while not late.receiver.tasks and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(runner, 5)
            await late.stop()
    assert late.receiver.tasks == [task]
    assert await TaskStore(r).state(task["task_id"]) == "delivered"


async def test_new_task_is_delivered_by_a_running_deliverer(
    r: aioredis.Redis, settings: Settings, receiver: ReceiverServer
) -> None:
    stop = asyncio.Event()
    async with Deliverer(r, settings, url=receiver.tasks_url, block_ms=50) as deliverer:
        runner = asyncio.create_task(deliverer.run(stop))
        try:
            await asyncio.sleep(0.1)
            task = await Dispatcher(r, settings).handle(_decision("+8613800001616", T0, 2))
            deadline = time.monotonic() + 5
            while not receiver.receiver.tasks and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.wait_for(runner, 5)
    assert receiver.receiver.tasks == [task]


async def test_rejected_and_exhausted_go_to_dead_letters(
    r: aioredis.Redis, settings: Settings, receiver: ReceiverServer
) -> None:
    d = Dispatcher(r, settings)
    rejected_before = _metric("fw_delivery_failures_total", reason="rejected")
    exhausted_before = _metric("fw_delivery_failures_total", reason="retries_exhausted")
    bad = await d.handle(_decision("+8613800001717", T0, 2))
    assert bad is not None
    receiver.receiver.fail_next(1, status=400)
    clock = ManualClock()
    async with Deliverer(r, settings, url=receiver.tasks_url, clock=clock) as deliverer:
        assert await deliverer.drain_once() == 0
        assert receiver.receiver.requests == 1  # a 4xx is not retried
        assert _metric("fw_delivery_failures_total", reason="rejected") - rejected_before == 1

        flaky = await d.handle(_decision("+8613800001818", T0, 2))
        assert flaky is not None
        receiver.receiver.fail_next(settings.delivery_max_attempts, status=429)
        before_s = clock.monotonic()
        assert await asyncio.wait_for(clock.drive(deliverer.drain_once()), 10) == 0
        # Four pauses between five attempts, none longer than the backoff cap.
        assert 0.0 < clock.monotonic() - before_s <= 4 * settings.delivery_backoff_max_s
        assert receiver.receiver.requests == 1 + settings.delivery_max_attempts
        assert _metric("fw_delivery_failures_total", reason="retries_exhausted") - exhausted_before == 1

        assert await r.xlen(keys.OUTBOX_DEAD) == 2 and await r.xlen(keys.OUTBOX) == 0
        store = TaskStore(r)
        assert await store.state(bad["task_id"]) == "delivery_failed"
        assert (await d.stats())["delivery_failed"] == 2

        # Once the endpoint is fixed, an operator re-drives the dead letters.
        assert await deliverer.outbox.redrive_dead() == 2
        assert await deliverer.drain_once() == 2
    assert sorted(t["task_id"] for t in receiver.receiver.tasks) == sorted([bad["task_id"], flaky["task_id"]])
    assert await store.state(flaky["task_id"]) == "delivered"


async def test_timeouts_are_retried_and_deduplicated(r: aioredis.Redis, receiver: ReceiverServer) -> None:
    settings = Settings(
        delivery_timeout_s=0.1, delivery_max_attempts=30, delivery_backoff_base_s=0.02, delivery_backoff_max_s=0.05
    )
    task = await Dispatcher(r, settings).handle(_decision("+8613800001919", T0, 2))
    receiver.receiver.set_delay(0.3)  # slower than the client's timeout: every attempt times out
    async with Deliverer(r, settings, url=receiver.tasks_url) as deliverer:
        drain = asyncio.create_task(deliverer.drain_once())
        await asyncio.sleep(0.35)
        receiver.receiver.set_delay(0.0)
        assert await asyncio.wait_for(drain, 5) == 1
    await asyncio.sleep(0.35)  # let the requests the client gave up on finish on the server side
    # The server stored the first copy it finished; later copies carried the same key and were not stored.
    assert receiver.receiver.tasks == [task]
    assert receiver.receiver.requests >= 2
    assert receiver.receiver.duplicates == receiver.receiver.requests - 1


async def test_registry_rejects_bad_input(r: aioredis.Redis) -> None:
    reg = ResponderRegistry(r)
    with pytest.raises(InvalidResponder):
        await reg.load([_responder("ok", 1.0), {**_responder("bad", 1.0), "kind": "fireman"}])
    assert await reg.get("ok") is None  # a bad roster loads nothing
    with pytest.raises(InvalidResponder):
        await reg.load([{**_responder("far-north", 0.0), "lat": 89.0}])
    with pytest.raises(UnknownResponder):
        await reg.update_location("ghost", *HOME)
    with pytest.raises(UnknownResponder):
        await reg.set_status("ghost", "busy")
    await reg.load([_responder("p", 1.0, status="busy")])
    with pytest.raises(NoResponderAvailable):
        await reg.claim("p")
    await reg.release("p")
    assert (await reg.claim("p"))["status"] == "busy"


async def test_dispatch_prefers_the_victims_own_grid(r: aioredis.Redis, settings: Settings) -> None:
    """Within a search ring, a free worker of the grid the victim lives in beats a nearer one of another."""
    reg = ResponderRegistry(r)
    await reg.load(
        [
            _responder("home-grid-busy", 0.2, kind="grid_worker", unit="G1", status="busy"),
            _responder("other-grid", 0.8, kind="grid_worker", unit="G2"),
            _responder("home-grid-free", 1.5, kind="grid_worker", unit="G1"),
        ]
    )
    assert await reg.home_unit(*HOME) == "G1"
    task = await Dispatcher(r, settings, registry=reg).handle(_decision("+8613800000777", 1_000_000, 3))
    assert task is not None and task["responder_id"] == "home-grid-free"


async def test_level_actions_come_from_settings(r: aioredis.Redis, settings: Settings) -> None:
    """A deployment can turn level 2 into no action and level 1 into a call-centre task by settings alone."""
    custom = settings.model_copy(update={"level_actions": {1: "call_centre", 2: "none", 3: "face_to_face"}})
    d = Dispatcher(r, custom)
    assert await d.handle(_decision("+8613800000888", 1_000_000, 2)) is None
    task = await d.handle(_decision("+8613800000889", 1_000_000, 1))
    assert task is not None and task["responder_id"] is None and int(task["level"]) == 1


# --- Redis away -------------------------------------------------------------------------------------------


async def test_runtime_waits_for_redis_instead_of_queueing_and_stops_cleanly(tmp_path: Any) -> None:
    from alerting.runtime import RETRY_BACKOFF_MAX_S, AlertingRuntime
    from core.errors import AlertingStopped
    from sandbox.services import start_redis

    port = _free_port()
    service = start_redis(port=port, data_dir=tmp_path)
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0", dispatch_url="http://127.0.0.1:9/tasks", episode_ms=EPISODE_MS
    )
    clock = ManualClock()
    runtime = AlertingRuntime(settings, clock=clock)
    try:
        service.kill()
        handled = asyncio.create_task(runtime.handle(_decision("+8613800004444", T0, 2)))
        for _ in range(3):  # three failed attempts, each followed by a backoff pause on the runtime's clock
            await asyncio.wait_for(clock.sleeping(), 15)
            assert not handled.done() and runtime.retrying == 1  # in hand, retried; nothing queued behind it
            clock.advance(RETRY_BACKOFF_MAX_S)
        service = start_redis(port=port, data_dir=tmp_path)  # back, same file
        task = await asyncio.wait_for(clock.drive(handled), 15)
        assert task is not None and task["level"] == 2 and runtime.retrying == 0
        assert await runtime.redis.xlen(keys.OUTBOX) == 1

        service.kill()
        waiting = asyncio.create_task(runtime.handle(_decision("+8613800005555", T0, 3)))
        await asyncio.wait_for(clock.sleeping(), 15)  # failed once, pausing: only a stop ends this pause
        await runtime.stop()  # the caller learns it was not handled, so it can leave it on the broker
        with pytest.raises(AlertingStopped):
            await asyncio.wait_for(waiting, 10)
    finally:
        service.stop()
