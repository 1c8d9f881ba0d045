"""The one module that touches Faust and aiokafka internals: five corrections to the consumer, and accessors.

1. **Shorter fetch waits** than Faust's hard-coded 1.5 s. Faust builds its aiokafka consumer with
   ``fetch_max_wait_ms=1500`` and no setting to change it. On a broker that answers an empty fetch only when
   that wait expires (Tansu does), every idle hop then costs up to 1.5 s of latency; three hops put p50 near
   a second at low rates. We wrap the factory and set the consumer's wait before it starts.
2. **True end offsets for table recovery.** Faust ends a changelog's recovery at the end offset that
   ListOffsets reports. Tansu 0.6 reports the last record batch's base offset + 1, short of the end whenever
   that batch holds more than one record (our changelog batches hold many), so a restarted worker would
   drop the newest state of every key in it. A fetch response's high watermark is right on Tansu and equal
   to ListOffsets on Kafka, so each listed end is checked against one fetch just inside it: on Kafka this
   changes nothing, on Tansu it is the difference between recovering every key and losing some.
3. **No acknowledgement for a message skipped at a rebalance.** When partitions are being taken away, Faust
   suspends flow control, and its stream loop *skips* every message it takes from then on (and every message
   fetched under an older generation) but still acknowledges it; the commit made while the partitions are
   revoked then covers offsets that no agent ever processed, and the new owner starts after them. That lost
   whole runs of events whenever a worker joined or left mid-stream (found by the fault suite once its feed
   stopped pausing around rebalances). An acknowledgement that arrives in that state is not recorded: the
   message is read again from the committed offset (an event processed just before is then seen twice, which
   every stage already recognises by its event id).
4. **Stream queues kept when flow resumes** (the kill -9 loss). Flow control empties every stream queue
   whenever it resumes, and it resumes at the end of each recovery, just after the stream partitions were
   resumed and sought to their committed offsets. Whatever the fetcher had queued in between was thrown away
   unprocessed. A partition with a committed offset is read again from it, but one with none yet (often on
   the sparse pending-alerts hop) is not sought, so its thrown-away messages were skipped for good, and once a
   later message was acknowledged the commit passed them (Faust checks the head of the acknowledged offsets
   only against a committed offset it knows). Measured: 12 pending alerts of one partition never handled
   after a restart, every time, in the Redis-outage run; a run of events now and then in the crash test.
   Queues are now emptied only where Faust empties them on purpose (partitions revoked); what was queued when
   flow resumes is processed, and a message read twice is recognised by its event id at every stage.
5. **No message dropped as "already read".** Faust's fetcher drops a fetched message whose offset is below the
   partition's read offset, which it advances as it fetches, not as streams process; a message thrown away
   from a queue could then never be read again in that generation. The fetcher now delivers every message.

Beside the corrections, every other read of a private attribute lives here too, as a small accessor: the
table changelog topic rebuilt with the table's own serializers, a partition's read offset (the lag gauge),
group membership (readiness), and the aiokafka producer behind Faust's with a topic's partitions (batch
sends). All read private attributes of the versions named in ``WRITTEN_FOR``; :func:`install` refuses others.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiokafka
import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust import stores as faust_stores
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode.utils.queues import FlowControlEvent

from core.errors import PatchVersionError
from streams.metrics import SKIPPED_ACKS

__all__ = [
    "LOCAL_STORE_URL",
    "WRITTEN_FOR",
    "aiokafka_producer",
    "in_group",
    "install",
    "read_offset",
    "rebuild_changelog_topic",
    "topic_partitions",
    "verified_end_offsets",
]

WRITTEN_FOR = {"faust-streaming": ("0.15.",), "aiokafka": ("0.11.", "0.12.", "0.13.", "0.14.")}

# Faust picks a table store by URL scheme; this one names streams.local_store's (registered by install()).
LOCAL_STORE_URL = "fwlocal://"

_originals: dict[str, Any] = {}
_wait_ms = {"value": 1500}


def _check_versions() -> None:
    installed = {"faust-streaming": faust.__version__, "aiokafka": aiokafka.__version__}
    for package, version in installed.items():
        if not version.startswith(WRITTEN_FOR[package]):
            raise PatchVersionError(
                f"{package} {version} is installed, but streams/faust_internals.py was written for "
                f"{' or '.join(v + 'x' for v in WRITTEN_FOR[package])}: re-check the private attributes it "
                "reads, then extend WRITTEN_FOR"
            )


async def verified_end_offsets(
    bootstrap_servers: Any, listed: Mapping[TopicPartition, int], timeout_s: float = 5.0
) -> dict[TopicPartition, int]:
    """Each partition's end offset: the listed one, raised to the high watermark of a fetch just inside it."""
    wanted = [tp for tp, end in listed.items() if end and end > 0]
    out = {tp: int(end) for tp, end in listed.items()}
    if not wanted:
        return out
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, out[tp] - 1)
        deadline = time.monotonic() + timeout_s
        while any(consumer.highwater(tp) is None for tp in wanted):
            if time.monotonic() > deadline:
                missing = [tp for tp in wanted if consumer.highwater(tp) is None]
                raise TimeoutError(f"no fetch answered for {missing} in {timeout_s} s")
            await consumer.getmany(*wanted, timeout_ms=200)
        for tp in wanted:
            out[tp] = max(out[tp], consumer.highwater(tp) or 0)
    finally:
        await consumer.stop()
    return out


def _resume_keeping_queues(self: Any) -> None:
    self._suspend.clear()
    self._resume.set()


def _ack(self: Any, message: Any) -> bool:
    app = self.app
    if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        with ack_lock:
            message.acked = True  # nothing waits for it any more (wait_empty), and its offset stays uncommitted
        SKIPPED_ACKS.inc()
        return False
    return bool(_originals["ack"](self, message))


class _ReadOffsets(dict):
    """The consumer's read offsets, which its fetcher loop never sees (so it never drops a message as read).

    The fetcher loop reads them with ``__getitem__`` only (bound once per run); everything else (seeks, the
    lag gauge) uses ``get``/``__setitem__``/``pop``, which see the real values.
    """

    def __getitem__(self, tp: Any) -> None:
        return None


def _consumer_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _originals["init"](self, *args, **kwargs)
    self._read_offset = _ReadOffsets()


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _originals["create"](self, transport)
    consumer._fetch_max_wait_ms = _wait_ms["value"]  # read by aiokafka when the consumer starts
    return consumer


async def _highwaters(self: Any, partitions: Iterable[TopicPartition]) -> Mapping[TopicPartition, int]:
    listed = await _originals["highwaters"](self, partitions)
    if self.consumer.in_transaction:  # last stable offsets, not ListOffsets: nothing to verify
        return listed
    servers = self._ensure_consumer()._client._bootstrap_servers
    return await verified_end_offsets(servers, listed)


def install(fetch_max_wait_ms: int) -> None:
    """Patch every Faust worker consumer created from now on (idempotent)."""
    _check_versions()
    thread = faust_aiokafka.AIOKafkaConsumerThread
    _wait_ms["value"] = fetch_max_wait_ms
    if not _originals:
        _originals["create"] = thread._create_worker_consumer
        _originals["highwaters"] = thread._highwaters
        _originals["ack"] = FaustConsumer.ack
        _originals["init"] = FaustConsumer.__init__
        _originals["resume"] = FlowControlEvent.resume
    faust_stores.STORES.aliases.setdefault(LOCAL_STORE_URL.split(":", 1)[0], "streams.local_store:LocalStateStore")
    thread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    thread._highwaters = _highwaters  # type: ignore[method-assign]
    FaustConsumer.ack = _ack  # type: ignore[method-assign]
    FaustConsumer.__init__ = _consumer_init  # type: ignore[method-assign]
    FlowControlEvent.resume = _resume_keeping_queues  # type: ignore[method-assign]


def rebuild_changelog_topic(table: Any, key_serializer: str, value_serializer: str) -> None:
    """Give a table (and its changelog topic) these serializers.

    Faust derives serializers from key/value types (json for anything but bytes) and builds the changelog
    topic with them as the table is created; writes pass the table's serializers explicitly, but recovery and
    standbys decode with the topic's, so the topic is rebuilt from the corrected attributes (else no restart
    could recover the state).
    """
    table.key_serializer = key_serializer
    table.value_serializer = value_serializer
    table.changelog_topic = table._new_changelog_topic()


def read_offset(consumer: Any, tp: Any) -> int | None:
    """The last offset the consumer has read on a partition (None before the first)."""
    value = consumer._read_offset.get(tp)
    return None if value is None else int(value)


def in_group(app: Any) -> bool:
    """The consumer holds its assignment from a group coordinator it can reach (False while it re-joins).

    Why: Faust's ``rebalancing`` turns true only once a re-join starts, but a lost coordinator (a broker
    restart) is known earlier, at the failed heartbeat; events taken in between are the ones at risk.
    """
    try:
        consumer = app.consumer._thread._ensure_consumer()
    except Exception:  # not started yet, or the consumer is being rebuilt
        return False
    coordinator = getattr(consumer, "_coordinator", None)
    subscription = consumer._subscription.subscription
    if coordinator is None or subscription is None:
        return False
    return bool(coordinator.coordinator_id is not None and not coordinator.need_rejoin(subscription))


def aiokafka_producer(app: Any) -> Any:
    """The aiokafka producer behind Faust's (started with the app)."""
    return app.producer._ensure_producer()


async def topic_partitions(producer: Any, topic: str) -> list[int]:
    """A topic's partition numbers, sorted, once the producer's metadata knows the topic."""
    await producer.client._wait_on_metadata(topic)
    return sorted(producer.client.cluster.partitions_for_topic(topic))
