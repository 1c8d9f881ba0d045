"""A Faust table of feature states kept as bytes, with a bounded cache of decoded states in front of it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from streams.codecs import encode_state, has_open_calls, idle_after_ms
from streams.local_store import stable_items
from streams.metrics import STATE_BYTES, STATE_CACHE, STATE_RECORDS, STATE_WRITE_WAIT
from streams.produce import BatchSender

__all__ = ["StateTable"]

Decode = Callable[[bytes], Any]


class StateTable:
    """Reads states from a table's store; writes a batch's changed states with one changelog batch per partition.

    The store holds each state as the bytes of its changelog record (``streams.codecs``), so recovery copies
    records without decoding them and memory per key is that of the bytes. The ``cache_keys`` most recently
    used states are kept decoded: a hot key is not decoded per event. A cached state is used only while the
    store still holds the bytes it was decoded from, so a partition recovered or rewritten under the cache (a
    rebalance) can never be read stale. The store is Faust's in-memory one or ``streams.local_store``'s
    RocksDB one; for the latter each delivered changelog batch's offset is stored beside the states, so a
    restart reads only the changelog after it.

    Why not ``table[key] = state``: Faust sends each changelog record on its own (``send_soon`` with a
    callback per key), which cost as much per event as the hops themselves. The records are the same
    (key bytes, the stored bytes, the partition of the key's murmur2 as ``use_partitioner`` picks it),
    they go through the same producer (so Faust's commit still flushes them first).
    """

    def __init__(self, table: Any, decode: Decode, sender: BatchSender, *, cache_keys: int = 5_000) -> None:
        self.table = table
        self.decode = decode
        self.sender = sender
        self.cache_keys = cache_keys
        self._cache: OrderedDict[str, tuple[bytes, Any]] = OrderedDict()
        name = str(getattr(table, "name", "table"))
        self._hits, self._misses = STATE_CACHE.labels(name, "hit"), STATE_CACHE.labels(name, "miss")
        self._bytes, self._records = STATE_BYTES.labels(name), STATE_RECORDS.labels(name)
        self._write_wait = STATE_WRITE_WAIT.labels(name)

    def __len__(self) -> int:
        return len(self.table.data)

    def stored(self, key: str) -> Any | None:
        """The key's stored state, decoded (or cached); None for a key not stored."""
        raw = self.table.data.get(key)
        if raw is None:
            return None
        cache = self._cache
        hit = cache.get(key)
        if hit is not None and (hit[0] is raw or hit[0] == raw):
            cache.move_to_end(key)
            self._hits.inc()
            return hit[1]
        self._misses.inc()
        state = self.decode(raw)
        self._remember(key, raw, state)
        return state

    def current(self, key: str, touched: dict[str, Any], new: Callable[[], Any]) -> Any:
        """The key's newest state: changed earlier in this batch, else stored, else ``new()``."""
        state = touched.get(key)
        if state is None:
            state = self.stored(key)
        return new() if state is None else state

    def _remember(self, key: str, raw: bytes, state: Any) -> None:
        if self.cache_keys <= 0:
            return
        cache = self._cache
        cache[key] = (raw, state)
        cache.move_to_end(key)
        while len(cache) > self.cache_keys:
            cache.popitem(last=False)

    async def write(self, states: dict[str, Any], after: Sequence[Awaitable[Any]] = ()) -> None:
        """Store each state under its key and queue its changelog record, once ``after`` has been delivered.

        ``after``: the delivery futures of the messages that carry the events these states now hold as seen.
        A replay after a crash skips those events as duplicates, so a state written before them was on the
        broker would lose them for good after a kill -9 (seen in the reliability tests, in both agents).
        """
        if after:
            waited = time.monotonic()
            await asyncio.gather(*after)
            self._write_wait.observe(time.monotonic() - waited)
        if not states:
            return
        data = self.table.data
        records: list[tuple[bytes, bytes]] = []
        for key, state in states.items():
            raw = encode_state(state)
            data[key] = raw
            self._remember(key, raw, state)
            records.append((key.encode(), raw))
        self._records.inc(len(records))
        self._bytes.inc(sum(len(raw) for _, raw in records))
        for delivery in await self.sender.send_many(records):
            delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        # The store's note of how far the changelog is known to hold its states (a no-op in memory).
        if not delivery.cancelled() and delivery.exception() is None:
            sent = delivery.result()
            self.table.data.set_persisted_offset(sent.topic_partition, sent.offset)

    def with_open_calls(
        self, partition: int | None = None, partitions: Sequence[int] = ()
    ) -> Iterator[tuple[str, Any]]:
        """Every stored subscriber (of one partition of ``partitions``) with a call on the line, decoded (the
        others are not)."""
        for key, raw in stable_items(self.table.data, partition, partitions):
            if has_open_calls(raw, self.decode):
                yield key, self.stored(key)

    async def expire_idle(self, now_ms: int, *, chunk: int = 20_000) -> int:
        """Delete every key idle at ``now_ms`` (a tombstone on the changelog each); how many.

        Reads each key's header only, and gives the event loop a turn every ``chunk`` keys, so a sweep over a
        million keys does not stall the agents.
        """
        items = stable_items(self.table.data)
        idle: list[str] = []
        while batch := list(itertools.islice(items, chunk)):
            idle += [key for key, raw in batch if now_ms > idle_after_ms(raw, self.decode)]
            await asyncio.sleep(0)
        table, cache = self.table, self._cache
        for n, key in enumerate(idle, 1):
            raw = table.data.get(key)
            # Checked again: the key may have been written or deleted while the sweep gave the loop a turn.
            if raw is not None and now_ms > idle_after_ms(raw, self.decode):
                del table[key]
            cache.pop(key, None)
            if n % chunk == 0:
                await asyncio.sleep(0)
        return len(idle)
