"""Training-serving parity: the worker on the real broker computes exactly the offline feature rows."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from core.settings import Settings
from features.pipeline import FeatureEngine
from features.vector import FEATURE_NAMES
from models.dataset import load_events
from sandbox.demo import start_worker, stop_worker
from sandbox.receiver import ReceiverServer
from sandbox.services import RunningService, free_port
from sandbox.simulate import CityConfig, simulate, write_city
from streams.replay import replay
from streams.topics import bootstrap, ensure_topics, internal_topic

pytestmark = pytest.mark.integration


def _same(a: list[float | None], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all((x is None and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


async def test_stream_rows_equal_offline_rows(
    tansu: RunningService, redis_service: RunningService, trained_data_dir: Path, tmp_path: Path
) -> None:
    city = simulate(CityConfig(subscribers=300, days=0.5, seed=77, victims_per_10k_per_day=200))
    paths = write_city(city, tmp_path / "city")
    offline = {row.event_id: row for row in FeatureEngine().run(load_events(paths["events"]).events)}

    receiver = ReceiverServer()
    await receiver.start()
    port = free_port()
    settings = Settings(
        data_dir=trained_data_dir,
        broker_url=tansu.url,
        redis_url=redis_service.url,
        dispatch_url=receiver.tasks_url,
        app_id="parity",
        publish_features=True,
    )
    await ensure_topics(settings)
    env = {
        "FW_BROKER_URL": tansu.url,
        "FW_REDIS_URL": redis_service.url,
        "FW_DISPATCH_URL": receiver.tasks_url,
        "FW_DATA_DIR": str(trained_data_dir),
        "FW_WORKER_WEB_PORT": str(port),
        "FW_APP_ID": "parity",
        "FW_PUBLISH_FEATURES": "true",
    }
    proc = start_worker(settings, env, tmp_path / "worker.log")
    consumer = AIOKafkaConsumer(
        internal_topic(settings, "features"),
        bootstrap_servers=bootstrap(tansu.url),
        auto_offset_reset="earliest",
        group_id=None,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(240):
                assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        # Half a day in 40 s: a call and the transfer minutes after it stay seconds apart on the wire.
        # The comparison stays exact with the feedback edge (score -> callers/payee keys): feedback only counts
        # FEEDBACK_DELAY_MS (30 min) of event time after its transfer, i.e. about 1.7 s of wall time here,
        # far more than the hop takes, so every row is computed with the same feedback as offline. A hop
        # slower than that (a backlog) would make rows differ until the late feedback is counted.
        await replay(paths["events"], settings, speedup=43_200 / 40)
        await consumer.start()
        streamed: dict[str, dict] = {}  # type: ignore[type-arg]
        deadline = time.monotonic() + 90
        while len(streamed) < len(offline) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    row = orjson.loads(record.value)
                    streamed[row["event_id"]] = row
    finally:
        await consumer.stop()
        stop_worker(proc)
        await receiver.stop()

    assert set(streamed) == set(offline)
    different = [eid for eid, row in streamed.items() if not _same(row["values"], offline[eid].values)]
    detail = {
        eid: [
            n
            for n, x, y in zip(FEATURE_NAMES, streamed[eid]["values"], offline[eid].values, strict=True)
            if not _same([x], (y,))
        ]
        for eid in different[:5]
    }
    assert not different, f"{len(different)} of {len(offline)} rows differ, e.g. {detail}"
