"""Table recovery reads a changelog to its true end, even where the broker reports a shorter one.

Tansu 0.6 answers ListOffsets with the last record batch's base offset + 1; the worker writes each
changelog partition one record batch per agent batch, so after a burst the last batch of a partition
holds many keys. A worker killed then must come back with every key (``streams/faust_internals.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sandbox.services import RunningService, start_tansu
from sandbox.simulate import CityConfig, simulate, write_city
from streams.faust_internals import verified_end_offsets
from streams.topics import bootstrap
from tests.integration.cluster import (
    Cluster,
    Feed,
    PacedReplay,
    Record,
    Worker,
    read_records,
    start_receiver,
    wait_until,
)

pytestmark = pytest.mark.integration


async def _listed_and_true_ends(broker_url: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker_url), group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        listed = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    true = await verified_end_offsets(bootstrap(broker_url), listed)
    return {tp.partition: v for tp, v in listed.items()}, {tp.partition: v for tp, v in true.items()}


def _keys_written(records: list[Record]) -> set[bytes]:
    """The keys a changelog holds a state for (the last record of each is not a tombstone)."""
    last: dict[bytes, bytes | None] = {}
    for _partition, _offset, key, value in records:
        assert key is not None
        last[key] = value
    return {k for k, v in last.items() if v is not None}


async def _subscriber_keys_once_back(worker: Worker, expected: int, timeout_s: float = 20) -> float:
    """The worker's subscriber-key gauge once it reaches ``expected`` (or the timeout passes)."""

    async def recovered() -> bool:
        await worker.metrics()
        return worker.value("fw_feature_state_keys", table="subscriber") >= expected

    with contextlib.suppress(AssertionError):
        await wait_until(recovered, timeout_s, "every subscriber key back after the restart")
    return worker.value("fw_feature_state_keys", table="subscriber")


async def test_killed_worker_recovers_every_key_of_a_changelog_whose_last_batch_is_large(
    tansu: RunningService, redis_service: RunningService, trained_data_dir: Path, tmp_path: Path
) -> None:
    city = simulate(CityConfig(subscribers=600, days=0.25, seed=12, victims_per_10k_per_day=100))
    events = write_city(city, tmp_path / "city")["events"]
    feed = Feed("recovery", tansu.url)
    server, receiver = await start_receiver()
    cluster = Cluster(
        app_id="recovery",
        feed=feed,
        redis_url=f"redis://127.0.0.1:{redis_service.port}/7",
        dispatch_url=server.tasks_url,
        data_dir=trained_data_dir,
        workdir=tmp_path,
    )
    try:
        await cluster.prepare(city.responders)
        worker = cluster.start()
        await worker.wait_ready()
        replay = PacedReplay(events, feed, seconds=1.0)  # a burst: the agents take full batches
        replay.start()
        await replay.task  # type: ignore[misc]
        await cluster.settled(receiver, {e["event_id"] for e in city.events}, timeout_s=120)

        changelog = "recovery-subscriber-state-changelog"
        written = _keys_written(await read_records(tansu.url, changelog))
        listed, true = await _listed_and_true_ends(tansu.url, changelog)
        short = {p: (listed[p], true[p]) for p in true if listed[p] < true[p]}
        # The premise: the broker under-reports some partition's end, else this test proves nothing.
        assert short, f"no changelog partition ends in a multi-record batch: {listed}"

        await worker.kill()
        second = cluster.restart(worker)
        await second.wait_ready()
        got = await _subscriber_keys_once_back(second, len(written))
        print(f"\nkeys written {len(written)}, recovered {got:.0f}; short listed ends (listed, true): {short}")
        assert got == len(written)
    finally:
        cluster.kill_all()
        await server.stop()


async def test_a_worker_on_local_state_restarts_from_its_own_disk_and_drops_state_from_another_broker(
    tansu: RunningService, redis_service: RunningService, trained_data_dir: Path, tmp_path: Path
) -> None:
    """``state_store=local``: after a kill -9 the worker reopens its RocksDB tables and reads only the changelog
    after the offsets they hold (every key back, a fraction of the records read); pointed at a fresh broker,
    the same folder is thrown away rather than trusted."""
    city = simulate(CityConfig(subscribers=600, days=0.25, seed=13, victims_per_10k_per_day=100))
    events = write_city(city, tmp_path / "city")["events"]
    state_env = {"FW_STATE_STORE": "local", "FW_STATE_DIR": str(tmp_path / "state")}
    server, receiver = await start_receiver()

    def cluster_on(broker: RunningService) -> Cluster:
        return Cluster(
            app_id="local-state",
            feed=Feed("local-state", broker.url),
            redis_url=f"redis://127.0.0.1:{redis_service.port}/8",
            dispatch_url=server.tasks_url,
            data_dir=trained_data_dir,
            workdir=tmp_path,
            env=state_env,
        )

    cluster = cluster_on(tansu)
    other: RunningService | None = None
    try:
        await cluster.prepare(city.responders)
        worker = cluster.start()
        await worker.wait_ready()
        replay = PacedReplay(events, cluster.feed, seconds=8.0)
        replay.start()
        await replay.task  # type: ignore[misc]
        await cluster.settled(receiver, {e["event_id"] for e in city.events}, timeout_s=120)

        records = await read_records(tansu.url, "local-state-subscriber-state-changelog")
        written = _keys_written(records)
        assert (tmp_path / "state" / "local-state").is_dir()

        await worker.kill()
        second = cluster.restart(worker)
        await second.wait_ready()
        keys = await _subscriber_keys_once_back(second, len(written))
        restored = second.value("fw_state_restored_records_total", table="subscriber-state")
        print(
            f"\nchangelog records {len(records)}, keys {len(written)}; after kill -9: {keys:.0f} keys, "
            f"{restored:.0f} records read back"
        )
        assert keys == len(written)
        assert restored < len(records) / 2, "the restart read the changelog from the start, not from its disk"
        await second.kill()

        # A fresh broker (a demo restarted on its in-memory broker) beside the old folder: nothing carried over.
        other = start_tansu()
        fresh = cluster_on(other)
        await fresh.prepare(city.responders)
        third = fresh.start()
        await third.wait_ready()
        await asyncio.sleep(6)  # the key gauge is refreshed every 5 s
        await third.metrics()
        assert third.value("fw_feature_state_keys", table="subscriber") == 0
    finally:
        cluster.kill_all()
        if other is not None:
            fresh.kill_all()
            other.stop()
        await server.stop()
