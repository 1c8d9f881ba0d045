"""End to end on real parts: events produced to the broker come out as tasks POSTed to an HTTP receiver."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from alerting.responders import ResponderRegistry
from core.settings import Settings
from sandbox.demo import BAD_LINES, scrape, start_worker, stop_worker, total
from sandbox.receiver import ReceiverServer
from sandbox.services import RunningService, free_port
from sandbox.simulate import CityConfig, simulate, write_city
from streams.replay import replay
from streams.topics import bootstrap, ensure_topics, internal_topic
from tests.contract import SCHEMAS

pytestmark = pytest.mark.integration

TASK_FIELDS = set(orjson.loads((SCHEMAS / "task.v1.json").read_bytes())["required"])


async def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


async def _dead_letters(settings: Settings, expected: int) -> list[dict]:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=bootstrap(settings.broker_url or ""),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    out: list[dict] = []  # type: ignore[type-arg]
    try:
        deadline = time.monotonic() + 20
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


async def test_events_become_tasks_over_http(
    tansu: RunningService, redis_service: RunningService, trained_data_dir: Path, tmp_path: Path
) -> None:
    city = simulate(CityConfig(subscribers=2500, days=1.0, seed=41, victims_per_10k_per_day=60))
    paths = write_city(city, tmp_path / "city")
    with paths["events"].open("ab") as fh:
        fh.write(b"\n".join(BAD_LINES) + b"\n")
    receiver = ReceiverServer()
    await receiver.start()
    port = free_port()
    settings = Settings(
        data_dir=trained_data_dir,
        broker_url=tansu.url,
        redis_url=redis_service.url,
        dispatch_url=receiver.tasks_url,
        worker_web_port=port,
        app_id="e2e",
    )
    await ensure_topics(settings)
    redis = Redis.from_url(redis_service.url)
    await redis.flushdb()
    await ResponderRegistry(redis).load(city.responders)
    env = {
        "FW_BROKER_URL": tansu.url,
        "FW_REDIS_URL": redis_service.url,
        "FW_DISPATCH_URL": receiver.tasks_url,
        "FW_DATA_DIR": str(trained_data_dir),
        "FW_WORKER_WEB_PORT": str(port),
        "FW_APP_ID": "e2e",
    }
    proc = start_worker(settings, env, tmp_path / "worker.log")
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        import httpx

        async def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await _wait_for(ready, 120, "worker readiness")
        stats = await replay(paths["events"], settings, speedup=86_400 / 20)
        valid = len(city.events)
        assert stats.sent == valid + len(BAD_LINES)

        async def all_scored() -> bool:
            samples = await asyncio.to_thread(scrape, metrics_url)
            return total(samples, "fw_events_scored_total") >= valid

        await _wait_for(all_scored, 180, "every valid event scored")
        samples = await asyncio.to_thread(scrape, metrics_url)
        # Each valid event scored exactly once; each bad line dead-lettered, none of them scored.
        assert total(samples, "fw_events_scored_total") == valid
        assert total(samples, "fw_dead_letters_total") == len(BAD_LINES)

        # A record on the internal score -> explain hop that this code did not write is kept, not dropped.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(settings.broker_url or ""))
        await producer.start()
        try:
            pending_topic = internal_topic(settings, settings.pending_alerts_topic)
            await producer.send_and_wait(pending_topic, b'{"not": "a pending alert"}', key=b"+8613800009999")
        finally:
            await producer.stop()

        async def internal_dead_lettered() -> bool:
            samples = await asyncio.to_thread(scrape, metrics_url)
            return total(samples, "fw_dead_letters_total") == len(BAD_LINES) + 1

        await _wait_for(internal_dead_lettered, 30, "the foreign pending alert dead-lettered")
        dead = await _dead_letters(settings, len(BAD_LINES) + 1)
        reasons = sorted(d["reason"] for d in dead)
        expected = ["malformed_json", "missing_field", "bad_value", "unknown_schema", "malformed_json"]
        assert reasons == sorted([*expected, "malformed_pending_alert"])
        assert next(d for d in dead if d["reason"] == "malformed_pending_alert")["topic"] == pending_topic

        async def outbox_empty() -> bool:
            return int(await redis.xlen("fw:outbox")) == 0 or len(receiver.receiver.tasks) > 0

        await _wait_for(outbox_empty, 60, "tasks delivered")
        await asyncio.sleep(2)
        tasks = receiver.receiver.tasks
        assert tasks, "no task reached the receiver"
        keys = [t["idempotency_key"] for t in tasks]
        assert len(keys) == len(set(keys)), "a task was delivered twice"
        subscribers = {e.get("callee") or e.get("subscriber") for e in city.events}
        for task in tasks:
            assert task.keys() >= TASK_FIELDS
            assert task["subscriber"] in subscribers
            assert 0.0 <= task["score"] <= 1.0
            assert task["reasons"], "an alert must explain itself"
            assert int(task["level"]) >= 2
            # The threshold it was decided with rides along (the label carries it to training).
            assert 0.0 < task["threshold"] <= task["score"] + 1e-9
        face_to_face = [t for t in tasks if int(t["level"]) == 3 and t["responder_id"]]
        for task in face_to_face:
            status = await redis.hget(f"fw:responder:{task['responder_id']}", "status")
            assert status == b"busy"
    finally:
        stop_worker(proc)
        await receiver.stop()
        await redis.aclose()
