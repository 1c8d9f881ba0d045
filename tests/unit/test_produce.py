"""Packing of internal-hop records: every value comes back, in order, within the size bound."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.produce import BatchSender, pack, partition_of, unpack

pytestmark = pytest.mark.unit

_values = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=12),
        st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=30), max_size=4),
    ),
    max_size=60,
)


@given(_values, st.integers(min_value=1, max_value=400))
def test_pack_round_trips_in_order_within_the_bound(items: list[tuple[bytes, dict[str, object]]], bound: int) -> None:
    pairs = [(key, orjson.dumps(obj)) for key, obj in items]
    records = pack(pairs, max_bytes=bound)
    assert [v for _, value in records for v in unpack(value)] == [obj for _, obj in items]
    for _, value in records:
        # A record exceeds the bound only when it holds a single value that is larger on its own.
        assert len(value) <= bound + 1 or len(unpack(value)) == 1
    # Each record is keyed by the first key it holds, so it goes where that key's partition is.
    assert [key for key, _ in records] == [pairs[i][0] for i in _starts(records)]


def _starts(records: list[tuple[bytes, bytes]]) -> list[int]:
    starts, at = [], 0
    for _, value in records:
        starts.append(at)
        at += len(unpack(value))
    return starts


def test_unpack_reads_a_record_written_one_value_per_record() -> None:
    """A worker still on the unpacked format can feed an upgraded one."""
    assert unpack(b'{"e": {"event_id": "x"}, "t": 1.5}') == [{"e": {"event_id": "x"}, "t": 1.5}]


def test_partition_of_matches_the_java_default_partitioner() -> None:
    # Kafka's own murmur2 test vectors (signed 32-bit in Java); the partition is the positive part mod n.
    for key, java in ((b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536)):
        assert partition_of(key, list(range(1000))) == (java & 0x7FFFFFFF) % 1000
    spread = {partition_of(f"+86138{i:08d}".encode(), list(range(8))) for i in range(200)}
    assert spread == set(range(8))


class _Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object:
        self.records.append((key, value))
        return object()


class _Producer:
    """The few aiokafka producer calls BatchSender makes; each batch's future fails with ``error`` if set."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.client = self
        self.cluster = self
        self.sent: list[tuple[str, int, _Batch]] = []

    async def _wait_on_metadata(self, topic: str) -> None:
        return None

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[object]:
        self.sent.append((topic, partition, batch))
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.error is None:
            fut.set_result(None)
        else:
            fut.set_exception(self.error)
        return fut


class _App:
    def __init__(self, producer: _Producer) -> None:
        self.producer = self
        self._producer = producer

    def _ensure_producer(self) -> _Producer:
        return self._producer


@pytest.mark.parametrize("error", [None, RuntimeError("KafkaTimeoutError: batch expired")])
async def test_a_failed_delivery_stops_the_process_before_a_commit(error: BaseException | None) -> None:
    failures: list[BaseException] = []
    producer = _Producer(error)
    sender = BatchSender(_App(producer), "t", on_failure=failures.append)  # type: ignore[arg-type]
    futures = await sender.send_many([(f"k{i}".encode(), b"{}") for i in range(20)])
    await asyncio.gather(*futures, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert sum(len(b.records) for _, _, b in producer.sent) == 20
    assert failures == ([] if error is None else [error] * len(futures))
