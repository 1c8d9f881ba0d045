"""Exact trailing sliding windows with running integer sums, distinct counts and a running maximum.

One sorted list of entries serves every window span; each span keeps a head index and its own running
sums, so an in-order event costs O(spans x channels) amortised. Sums are integers (seconds, cents,
counts) so that adding and later subtracting an entry is exact: a state rebuilt from its entries after a
restart is identical to the one that was never interrupted.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import KeysView
from typing import Any

Entry = tuple[int, tuple[int, ...], str | None]


class SlidingWindows:
    """Trailing windows ``(now - span, now]`` over timestamped integer vectors."""

    __slots__ = (
        "_entries",
        "_first",
        "_heads",
        "_key_counts",
        "_max_channel",
        "_maxq",
        "_sums",
        "max_entries",
        "n_channels",
        "now",
        "spans",
    )

    def __init__(
        self,
        spans_ms: tuple[int, ...],
        n_channels: int,
        *,
        max_channel: int | None = None,
        max_entries: int = 2000,
    ) -> None:
        self.spans = spans_ms
        self.n_channels = n_channels
        self.max_entries = max_entries
        self.now = -1
        self._max_channel = max_channel
        self._entries: list[Entry] = []
        self._first = 0  # entries before this index have left every window and await compaction
        self._heads = [0] * len(spans_ms)
        self._sums = [[0] * n_channels for _ in spans_ms]
        # Per window, how many entries each key has inside it: exact distinct counts, late entries included.
        self._key_counts: list[dict[str, int]] = [{} for _ in spans_ms]
        self._maxq: list[deque[tuple[int, int]]] = [deque() for _ in spans_ms]

    # -- reading ---------------------------------------------------------------------------------
    def sums(self, window: int) -> list[int]:
        """Running sums of every channel over window number ``window`` (index into ``spans``)."""
        return self._sums[window]

    def distinct(self, window: int) -> int:
        """How many distinct keys have an entry in the window."""
        return len(self._key_counts[window])

    def keys(self, window: int) -> KeysView[str]:
        """The distinct keys with an entry in the window (a live view: read it before the next change)."""
        return self._key_counts[window].keys()

    def maximum(self, window: int) -> int:
        """Largest value of the max channel in the window (0 when empty)."""
        q = self._maxq[window]
        return q[0][1] if q else 0

    def __len__(self) -> int:
        return len(self._entries) - self._first

    # -- writing ---------------------------------------------------------------------------------
    def add(self, ts: int, values: tuple[int, ...], key: str | None = None) -> bool:
        """Add an entry; a late one is placed where it belongs. False when older than every window."""
        if ts >= self.now:
            self._entries.append((ts, values, key))
            # Evict first, so a key's older entry has left (and been uncounted) before this one counts.
            self._advance(ts)
            self._count_in(len(self._entries) - 1, ts, values, key, late=False)
        else:
            if ts <= self.now - self.spans[-1]:
                return False
            pos = bisect_right(self._entries, ts, lo=self._first, key=lambda e: e[0])
            self._entries.insert(pos, (ts, values, key))
            for w, span in enumerate(self.spans):
                if ts <= self.now - span and pos <= self._heads[w]:
                    self._heads[w] += 1  # inserted before this window's start: not counted in it
            self._count_in(pos, ts, values, key, late=True)
        if len(self) > self.max_entries:
            self._evict_oldest()
        self._compact()
        return True

    def advance(self, now: int) -> None:
        """Move the clock forward without adding an entry (older entries leave their windows)."""
        if now > self.now:
            self._advance(now)
            self._compact()

    def _count_in(self, pos: int, ts: int, values: tuple[int, ...], key: str | None, late: bool) -> None:
        now = max(self.now, ts)
        for w, span in enumerate(self.spans):
            if ts <= now - span:
                continue
            sums = self._sums[w]
            for c, v in enumerate(values):
                if v:
                    sums[c] += v
            if key is not None:
                counts = self._key_counts[w]
                counts[key] = counts.get(key, 0) + 1
            if self._max_channel is not None:
                if late:
                    self._rebuild_max(w)
                else:
                    q = self._maxq[w]
                    v = values[self._max_channel]
                    while q and q[-1][1] <= v:
                        q.pop()
                    q.append((ts, v))

    def _advance(self, now: int) -> None:
        self.now = now
        entries = self._entries
        for w, span in enumerate(self.spans):
            cutoff = now - span
            head = self._heads[w]
            if head < len(entries) and entries[head][0] > cutoff:
                continue
            while head < len(entries) and entries[head][0] <= cutoff:
                self._leave(w, entries[head])
                head += 1
            self._heads[w] = head
            q = self._maxq[w]
            while q and q[0][0] <= cutoff:
                q.popleft()
        self._first = max(self._first, min(self._heads))

    def _leave(self, w: int, entry: Entry) -> None:
        _ts, values, key = entry
        sums = self._sums[w]
        for c, v in enumerate(values):
            if v:
                sums[c] -= v
        if key is not None:
            counts = self._key_counts[w]
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]

    def _evict_oldest(self) -> None:
        # Bounded memory per key: the oldest entry goes even if still inside the longest window.
        entry = self._entries[self._first]
        for w in range(len(self.spans)):
            if self._heads[w] == self._first:
                self._leave(w, entry)
                self._heads[w] += 1
                q = self._maxq[w]
                if q and q[0][0] <= entry[0]:
                    self._rebuild_max(w)
        self._first += 1

    def _rebuild_max(self, w: int) -> None:
        assert self._max_channel is not None
        q: deque[tuple[int, int]] = deque()
        mc = self._max_channel
        for ts, values, _ in self._entries[self._heads[w] :]:
            v = values[mc]
            while q and q[-1][1] <= v:
                q.pop()
            q.append((ts, v))
        self._maxq[w] = q

    def _compact(self) -> None:
        if self._first > 64 and self._first * 2 > len(self._entries):
            drop = self._first
            del self._entries[:drop]
            self._heads = [h - drop for h in self._heads]
            self._first = 0

    # -- persistence -----------------------------------------------------------------------------
    def to_obj(self) -> list[Any]:
        """A JSON-able snapshot: the clock and the live entries (sums are rebuilt from them)."""
        return [self.now, [[ts, list(vals), key] for ts, vals, key in self._entries[self._first :]]]

    @classmethod
    def from_obj(
        cls,
        obj: list[Any],
        spans_ms: tuple[int, ...],
        n_channels: int,
        *,
        max_channel: int | None = None,
        max_entries: int = 2000,
    ) -> SlidingWindows:
        """Rebuild a window set from :meth:`to_obj`; integer sums make the result exact.

        Built in one pass per window rather than by re-adding each entry: a state is decoded on every cache
        miss of the hot path, and the replay cost most of its decode.
        """
        win = cls(spans_ms, n_channels, max_channel=max_channel, max_entries=max_entries)
        now, stored = obj
        if not stored:
            win.now = now
            return win
        entries: list[Entry] = [(ts, tuple(vals), key) for ts, vals, key in stored]
        if any(entries[i][0] > entries[i + 1][0] for i in range(len(entries) - 1)):
            entries.sort(key=_entry_ts)  # never written so; kept exact should a stored list be out of order
        if len(entries) > max_entries:
            del entries[: len(entries) - max_entries]
        now = max(now, entries[-1][0])
        win.now = now
        win._entries = entries
        heads = [bisect_right(entries, now - span, key=_entry_ts) for span in spans_ms]
        win._heads = heads
        # Windows nest: walking them from the latest start back, each adds only the entries before the last.
        sums = [0] * n_channels
        counts: dict[str, int] = {}
        end = len(entries)
        for w in sorted(range(len(spans_ms)), key=heads.__getitem__, reverse=True):
            segment = entries[heads[w] : end]
            if segment:
                for c, column in enumerate(zip(*(e[1] for e in segment), strict=True)):
                    sums[c] += sum(column)
                for _ts, _vals, key in segment:
                    if key is not None:
                        counts[key] = counts.get(key, 0) + 1
                end = heads[w]
            win._sums[w] = list(sums)
            win._key_counts[w] = dict(counts)
            if max_channel is not None:
                win._rebuild_max(w)
        win._first = min(heads)
        return win


def _entry_ts(entry: Entry) -> int:
    return entry[0]
