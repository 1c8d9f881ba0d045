"""``fraudwatch seed-state``: a history's feature state written into a new deployment's changelogs, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.settings import Settings
from sandbox.services import RunningService
from sandbox.simulate import CityConfig, simulate, write_city
from streams.topics import CALLER_TABLE, SUBSCRIBER_TABLE, bootstrap, changelog_topic

pytestmark = pytest.mark.integration


def _seed(events: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraudwatch.cli", "seed-state", str(events)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _records(settings: Settings, table: str) -> int:
    """Records on a changelog, read to the end (Tansu's end offset counts batches, see notes/broker.md)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(settings.broker_url or ""), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(changelog_topic(settings, table), p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        while batch := await consumer.getmany(timeout_ms=1500):
            count += sum(len(records) for records in batch.values())
        return count
    finally:
        await consumer.stop()


async def test_seed_state_writes_every_key_once_and_refuses_a_second_seed(
    tansu: RunningService, tmp_path: Path
) -> None:
    paths = write_city(simulate(CityConfig(subscribers=200, days=1.0, seed=5)), tmp_path / "city")
    with paths["events"].open("ab") as fh:
        fh.write(b"{not json\n")  # a bad line is counted, not seeded
    env = {"FW_BROKER_URL": tansu.url, "FW_APP_ID": "seedcli", "FW_DATA_DIR": str(tmp_path / "data")}
    first = _seed(paths["events"], env)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["rejected_lines"] == {"malformed_json": 1}
    assert out["caller_table_records"] > 0 and out["subscriber_table_records"] > 0
    settings = Settings(broker_url=tansu.url, app_id="seedcli")
    assert await _records(settings, CALLER_TABLE) == out["caller_table_records"]
    assert await _records(settings, SUBSCRIBER_TABLE) == out["subscriber_table_records"]

    again = _seed(paths["events"], env)
    assert again.returncode == 1
    assert "already hold feature state" in again.stderr and "Traceback" not in again.stderr
    assert await _records(settings, CALLER_TABLE) == out["caller_table_records"]  # nothing written twice
