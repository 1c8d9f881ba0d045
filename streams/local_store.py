"""Feature state on local disk (RocksDB through rocksdict) that a restarted worker reopens instead of re-reading.

Why: the in-memory store is rebuilt from the changelog at every start, and at a million keys that read is
the restart (105 s measured on the embedded broker). Here each table partition is a RocksDB database under
``state_dir`` holding each key's changelog record and the offset of the last changelog batch known to be
on the broker; a restarted worker opens the databases and reads only the changelog after that offset.

Departures from Faust's own RocksDB store, each for a reason:

- **The key's partition is its murmur2**, as ``use_partitioner`` tables send their changelog records
  (``streams.produce.partition_of``); Faust's store files a write under the partition of the event being
  processed, which is wrong for a key written from a timer or another partition's event, and fails with no
  event at all.
- **An exact key count** per partition, kept as keys come and go and counted once when a database opens:
  Faust counts a RocksDB table by iterating every key, which would stall the loop each time the gauge is read.
- **Local state newer than the broker is thrown away.** A database whose stored offset lies past its
  changelog partition's end belongs to another broker (a demo's in-memory broker started afresh beside an
  old data folder); reading on from there would keep states the changelog never had.
- **Small, shared memory**: one block cache for every database of the process and small memtables, both
  settings, so memory is bounded by settings rather than by keys.

A worker on a different machine recovers the same partitions from the changelog as before; this makes
only the restart of the same worker (same ``state_dir``) fast. Two workers must not share a ``state_dir``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP

from streams.metrics import STATE_RESTORED
from streams.produce import partition_of

__all__ = ["LocalStateStore", "StoreMemory", "stable_items"]


class StoreMemory:
    """The process's RocksDB memory: one block cache shared by all databases, and each one's memtable size."""

    block_cache_mb = 64
    write_buffer_mb = 4
    _cache: rocksdict.Cache | None = None

    @classmethod
    def configure(cls, *, block_cache_mb: int, write_buffer_mb: int) -> None:
        """Set the sizes for databases opened from now on (call before the worker starts)."""
        cls.block_cache_mb, cls.write_buffer_mb, cls._cache = block_cache_mb, write_buffer_mb, None

    @classmethod
    def options(cls) -> rocksdict.Options:
        if cls._cache is None:
            cls._cache = rocksdict.Cache(cls.block_cache_mb << 20)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(cls.write_buffer_mb << 20)
        options.set_max_write_buffer_number(2)
        options.set_max_open_files(256)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, True)
        table.set_block_cache(cls._cache)
        options.set_block_based_table_factory(table)
        return options


class LocalStateStore(faust_rocksdb.Store):
    """Faust's RocksDB table store, addressed by key partition, counted exactly, checked against the broker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counts: dict[int, int] = {}
        self._partitions = list(range(int(self.table.partitions or self.app.conf.topic_partitions)))

    # Where and how each partition's database lives.

    @property
    def path(self) -> Path:
        """Per app id: tables of different apps sharing a data folder must not share files."""
        return Path(self.app.conf.tabledir) / str(self.app.conf.id)

    def _open_for_partition(self, partition: int) -> Any:
        path = self.partition_path(partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = rocksdict.Rdict(str(path), options=StoreMemory.options())
        self._counts[partition] = sum(1 for key in db.keys() if key != self.offset_key)  # noqa: SIM118 (an Rdict)
        return db

    def _close(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()
        self._counts.pop(partition, None)

    def _partition(self, key: bytes) -> int:
        return partition_of(key, self._partitions)

    # Reads and writes by the key's own partition.

    def _get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db_for_partition(self._partition(key)).get(key)
        return value

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = self._partition(key)
        db = self._db_for_partition(partition)
        if value is None:
            self._del(key)
            return
        if not _present(db, key):
            self._counts[partition] += 1
        db.put(key, value)

    def _del(self, key: bytes) -> None:
        partition = self._partition(key)
        db = self._db_for_partition(partition)
        if _present(db, key):
            self._counts[partition] -= 1
            db.delete(key)

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Write recovered (or standby) changelog records, keeping the counts, then their offsets."""
        writes: dict[int, rocksdict.WriteBatch] = {}
        after: dict[tuple[int, bytes], bool] = {}  # key present once this batch is applied
        offsets: dict[TP, int] = {}
        records = 0
        for event in batch:
            records += 1
            message = event.message
            partition, key = message.partition, message.key
            db = self._db_for_partition(partition)
            was = after.get((partition, key))
            if was is None:
                was = _present(db, key)
            now = message.value is not None
            self._counts[partition] += int(now) - int(was)
            after[(partition, key)] = now
            write = writes.setdefault(partition, rocksdict.WriteBatch(raw_mode=True))
            if now:
                write.put(key, message.value)
            else:
                write.delete(key)
            offsets[message.tp] = max(message.offset, offsets.get(message.tp, -1))
        for partition, write in writes.items():
            self._db_for_partition(partition).write(write)
        STATE_RESTORED.labels(str(self.table.name)).inc(records)
        for tp, offset in offsets.items():
            self.set_persisted_offset(tp, offset)

    def _size(self) -> int:
        actives = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self._changelog()}
        return sum(n for partition, n in self._counts.items() if partition in actives)

    def _changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    # Partitions coming and going.

    def revoke_partitions(self, table: Any, tps: set[TP]) -> None:
        """Close the databases of partitions taken away (their files stay for a later return)."""
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._close(tp.partition)

    async def assign_partitions(self, table: Any, tps: set[TP], generation_id: int = 0) -> None:
        """Open the databases of the active partitions given, dropping any that is ahead of its changelog."""
        await super().assign_partitions(table, tps, generation_id)
        mine = [tp for tp in tps if tp.topic in table.changelog_topic.topics and tp.partition in self._dbs]
        stored = {tp: self.persisted_offset(tp) for tp in mine}
        known = [tp for tp, offset in stored.items() if offset is not None]
        if not known:
            return
        ends = await self.app.consumer.highwaters(*known)
        for tp in known:
            offset, end = stored[tp], ends.get(tp)
            if end is not None and offset is not None and offset >= end:
                self.log.warning(
                    "local state of %s is ahead of its changelog (offset %s, end %s): starting it afresh",
                    tp,
                    offset,
                    end,
                )
                self.wipe(tp.partition)

    def wipe(self, partition: int) -> None:
        """Delete one partition's local database; the changelog will fill it again."""
        self._close(partition)
        shutil.rmtree(self.partition_path(partition), ignore_errors=True)
        self._db_for_partition(partition)

    def reset_state(self) -> None:
        """Remove every local database of this table."""
        for partition in list(self._dbs):
            self._close(partition)
        shutil.rmtree(self.path, ignore_errors=True)
        os.makedirs(self.path, exist_ok=True)

    def raw_items(self, partition: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Keys (as text) and stored bytes of one partition, or of every active one, without Faust's decoding."""
        if partition is None:
            actives = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self._changelog()}
            partitions = sorted(actives & set(self._dbs))
        else:
            partitions = [partition] if partition in self._dbs else []
        for p in partitions:
            for key, value in self._dbs[p].items():
                if key != self.offset_key:
                    yield key.decode(), value


def _present(db: Any, key: bytes) -> bool:
    # The bloom filter answers most absent keys without a read.
    return bool(db.key_may_exist(key)) and db.get(key) is not None


def stable_items(
    data: Any, partition: int | None = None, partitions: Sequence[int] = ()
) -> Iterator[tuple[str, bytes]]:
    """A table's keys and stored bytes (of one partition, given the topic's ``partitions``), safe to walk while
    the loop writes to the table: a RocksDB iterator reads a snapshot; a dict would raise, so it is copied."""
    if isinstance(data, LocalStateStore):
        return data.raw_items(partition)
    if partition is None:
        return iter(list(data.items()))
    return iter([(k, v) for k, v in data.items() if partition_of(k.encode(), list(partitions)) == partition])
