"""Per-key rolling state: one object per calling number and one per subscriber.

Both live as values of plain Faust tables (changelogged, so a restarted or rebalanced worker recovers
them); see ``streams.tables``. Their JSON snapshot is compact and exact, and every update is pure event
time, so the offline pipeline and the stream agents produce identical state from identical events.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from features.clock import DAY_MS, WINDOW_SPANS_MS
from features.windows import SlidingWindows
from streams.events import CallEvent, TransferEvent

SUSPICIOUS_KINDS = frozenset({"overseas", "virtual", "voip", "unknown"})
KIND_CODES = {"mobile": 0, "landline": 1, "overseas": 2, "virtual": 3, "voip": 4, "unknown": 5}
CHANNEL_CODES = {"mobile_app": 0, "online_bank": 1, "atm": 2, "counter": 3, "third_party": 4}
LONG_CALL_S = 600
SHORT_CALL_S = 30
SUSPICIOUS_TALK_S = 300
DEDUP_IDS = 512
MAX_CONTACTS = 512
MAX_PAYEES = 256


class _Dedup:
    """Remembers the last few event ids of a key, so a repeated event changes no feature twice."""

    __slots__ = ("_order", "_seen")

    def __init__(self, ids: list[str] | None = None) -> None:
        self._order: deque[str] = deque(ids or (), maxlen=DEDUP_IDS)
        self._seen = set(self._order)

    def first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        if len(self._order) == DEDUP_IDS:
            self._seen.discard(self._order[0])
        self._order.append(event_id)
        self._seen.add(event_id)
        return True

    def to_obj(self) -> list[str]:
        return list(self._order)


def _prune_oldest(table: dict[str, list[int]], limit: int, last_seen_index: int) -> None:
    # Drop the least recently seen quarter at once, so the cost is amortised O(1) per insert.
    if len(table) <= limit:
        return
    keep = sorted(table.items(), key=lambda kv: kv[1][last_seen_index], reverse=True)[: limit * 3 // 4]
    table.clear()
    table.update(keep)


# Caller-side channels: calls, answered, short-or-unanswered, talk seconds, long calls.
CALLER_CHANNELS = 5


@dataclass(frozen=True, slots=True)
class CallerSnapshot:
    """What the calling number looks like right after this call: the caller risk handed to the callee."""

    fanout_1h: int
    fanout_24h: int
    fanout_7d: int
    calls_24h: int
    short_ratio_24h: float
    unanswered_ratio_24h: float
    long_calls_24h: int
    age_s: float

    def to_list(self) -> list[float]:
        return [
            self.fanout_1h,
            self.fanout_24h,
            self.fanout_7d,
            self.calls_24h,
            self.short_ratio_24h,
            self.unanswered_ratio_24h,
            self.long_calls_24h,
            self.age_s,
        ]

    @classmethod
    def from_list(cls, values: list[float]) -> CallerSnapshot:
        f1, f24, f7, c24, sr, ur, lc, age = values
        return cls(int(f1), int(f24), int(f7), int(c24), float(sr), float(ur), int(lc), float(age))


class CallerState:
    """Rolling behaviour of one calling number across all its callees."""

    __slots__ = ("dedup", "first_seen_ms", "windows")

    def __init__(self) -> None:
        self.windows = SlidingWindows(WINDOW_SPANS_MS, CALLER_CHANNELS, max_entries=4000)
        self.first_seen_ms: int | None = None
        self.dedup = _Dedup()

    def update(self, call: CallEvent, avail_ms: int) -> bool:
        """Account one call; False for a duplicate event id."""
        if not self.dedup.first_time(call.event_id):
            return False
        if self.first_seen_ms is None or avail_ms < self.first_seen_ms:
            self.first_seen_ms = avail_ms
        dur = int(call.duration_s)
        short = 1 if (not call.answered or dur < SHORT_CALL_S) else 0
        values = (1, 1 if call.answered else 0, short, dur, 1 if dur >= LONG_CALL_S else 0)
        self.windows.add(avail_ms, values, call.callee)
        return True

    def snapshot(self) -> CallerSnapshot:
        """The caller's current risk profile."""
        w = self.windows
        calls, answered, short, _talk, long_calls = w.sums(2)
        now = w.now
        return CallerSnapshot(
            fanout_1h=w.distinct(1),
            fanout_24h=w.distinct(2),
            fanout_7d=w.distinct(3),
            calls_24h=calls,
            short_ratio_24h=short / calls if calls else 0.0,
            unanswered_ratio_24h=(calls - answered) / calls if calls else 0.0,
            long_calls_24h=long_calls,
            age_s=(now - self.first_seen_ms) / 1000 if self.first_seen_ms is not None else 0.0,
        )

    def idle(self, now_ms: int) -> bool:
        """True when nothing happened for longer than the longest window: the key can be expired."""
        return self.windows.now < now_ms - WINDOW_SPANS_MS[-1]

    def to_obj(self) -> dict[str, Any]:
        return {"w": self.windows.to_obj(), "f": self.first_seen_ms, "d": self.dedup.to_obj()}

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> CallerState:
        state = cls()
        state.windows = SlidingWindows.from_obj(obj["w"], WINDOW_SPANS_MS, CALLER_CHANNELS, max_entries=4000)
        state.first_seen_ms = obj["f"]
        state.dedup = _Dedup(obj["d"])
        return state


# Subscriber-side channels (index constants keep the feature code readable).
S_CALLS, S_SUSP_KIND, S_STRANGER, S_STRANGER_TALK, S_SUSP_TALK, S_LONG_STRANGER = range(6)
S_TRANSFERS, S_AMOUNT, S_NEW_PAYEE, S_NEW_PAYEE_AMOUNT, S_STRANGER_MAX_TALK, S_TALK = range(6, 12)
SUB_CHANNELS = 12


@dataclass(slots=True)
class SuspiciousContact:
    """The latest suspicious call the subscriber took, and what is known of its caller."""

    end_ms: int
    caller: str
    kind_code: int
    calls_with_sub: int
    talk_with_sub_s: int
    caller_fanout_24h: int

    def to_list(self) -> list[Any]:
        return [
            self.end_ms,
            self.caller,
            self.kind_code,
            self.calls_with_sub,
            self.talk_with_sub_s,
            self.caller_fanout_24h,
        ]


class SubscriberState:
    """Rolling behaviour of one subscriber (possible victim): calls received and transfers made."""

    __slots__ = ("amount_stats", "contacts", "dedup", "last_suspicious", "payees", "windows")

    def __init__(self) -> None:
        self.windows = SlidingWindows(WINDOW_SPANS_MS, SUB_CHANNELS, max_channel=S_STRANGER_MAX_TALK)
        # caller -> [first_seen_ms, last_seen_ms, calls, talk_s]
        self.contacts: dict[str, list[int]] = {}
        # payee account -> [first_seen_ms, last_seen_ms]
        self.payees: dict[str, list[int]] = {}
        # Welford running mean/variance of log(amount) over the subscriber's past transfers.
        self.amount_stats: list[float] = [0.0, 0.0, 0.0]
        self.last_suspicious: SuspiciousContact | None = None
        self.dedup = _Dedup()

    def is_stranger(self, caller: str, at_ms: int) -> bool:
        """A number first seen with this subscriber less than a day ago (or never)."""
        contact = self.contacts.get(caller)
        return contact is None or contact[0] > at_ms - DAY_MS

    def update_call(self, call: CallEvent, avail_ms: int, caller: CallerSnapshot) -> bool | None:
        """Account a received call; returns whether its caller was a stranger, None for a duplicate."""
        if not self.dedup.first_time(call.event_id):
            return None
        stranger = self.is_stranger(call.caller, avail_ms)
        dur = int(call.duration_s)
        contact = self.contacts.get(call.caller)
        if contact is None:
            contact = self.contacts[call.caller] = [avail_ms, avail_ms, 0, 0]
            _prune_oldest(self.contacts, MAX_CONTACTS, 1)
            self.contacts[call.caller] = contact  # a late call must not prune its own (just added) contact
        contact[0] = min(contact[0], avail_ms)  # a late call may be the earliest one: first seen is event time
        contact[1] = max(contact[1], avail_ms)
        contact[2] += 1
        contact[3] += dur
        susp_kind = call.caller_kind in SUSPICIOUS_KINDS
        values = (
            1,
            1 if susp_kind else 0,
            1 if stranger else 0,
            dur if stranger else 0,
            dur if susp_kind else 0,
            1 if stranger and dur >= LONG_CALL_S else 0,
            0,
            0,
            0,
            0,
            dur if stranger else 0,
            dur,
        )
        self.windows.add(avail_ms, values)
        suspicious = stranger and call.answered and (susp_kind or dur >= SUSPICIOUS_TALK_S or caller.fanout_24h >= 20)
        if suspicious and (self.last_suspicious is None or avail_ms >= self.last_suspicious.end_ms):
            self.last_suspicious = SuspiciousContact(
                end_ms=avail_ms,
                caller=call.caller,
                kind_code=KIND_CODES[call.caller_kind],
                calls_with_sub=contact[2],
                talk_with_sub_s=contact[3],
                caller_fanout_24h=caller.fanout_24h,
            )
        return stranger

    def update_transfer(self, transfer: TransferEvent) -> tuple[bool, bool, list[float]]:
        """Account a transfer; returns (first time seen, payee was new, amount stats before it)."""
        before = list(self.amount_stats)
        if not self.dedup.first_time(transfer.event_id):
            return False, False, before
        ts = transfer.ts_ms
        cents = round(transfer.amount * 100)
        payee = self.payees.get(transfer.payee_account)
        new_payee = payee is None or payee[0] > ts - DAY_MS
        if payee is None:
            self.payees[transfer.payee_account] = [ts, ts]
            _prune_oldest(self.payees, MAX_PAYEES, 1)
        else:
            payee[0] = min(payee[0], ts)  # a late transfer may be the earliest to this payee
            payee[1] = max(payee[1], ts)
        values = (0, 0, 0, 0, 0, 0, 1, cents, 1 if new_payee else 0, cents if new_payee else 0, 0, 0)
        self.windows.add(ts, values)
        n, mean, m2 = self.amount_stats
        x = math.log1p(transfer.amount)
        n += 1
        delta = x - mean
        mean += delta / n
        m2 += delta * (x - mean)
        self.amount_stats = [n, mean, m2]
        return True, new_payee, before

    def idle(self, now_ms: int) -> bool:
        """True when nothing happened for longer than the longest window: the key can be expired."""
        return self.windows.now < now_ms - WINDOW_SPANS_MS[-1]

    def to_obj(self) -> dict[str, Any]:
        return {
            "w": self.windows.to_obj(),
            "c": self.contacts,
            "p": self.payees,
            "a": self.amount_stats,
            "s": self.last_suspicious.to_list() if self.last_suspicious else None,
            "d": self.dedup.to_obj(),
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> SubscriberState:
        state = cls()
        state.windows = SlidingWindows.from_obj(
            obj["w"], WINDOW_SPANS_MS, SUB_CHANNELS, max_channel=S_STRANGER_MAX_TALK
        )
        state.contacts = obj["c"]
        state.payees = obj["p"]
        state.amount_stats = obj["a"]
        state.last_suspicious = SuspiciousContact(*obj["s"]) if obj["s"] else None
        state.dedup = _Dedup(obj["d"])
        return state
