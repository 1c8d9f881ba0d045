"""Per-key rolling state: one object per calling number and one per subscriber.

Both live as values of plain Faust tables (changelogged, so a restarted or rebalanced worker recovers
them); see ``streams.tables``. Their JSON snapshot is compact and exact, and every update is pure event
time, so the offline pipeline and the stream agents produce identical state from identical events.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, fields, replace
from operator import attrgetter
from typing import Any

from core.events import CallEvent, CallStartEvent, TransferEvent, call_join_key
from features.params import (
    CALLER_MAX_ENTRIES,
    CHANNEL_CODES,
    DEDUP_IDS,
    ENDED_CALL_IDS,
    FEEDBACK_DELAY_MS,
    FLAG_MAX_ENTRIES,
    FLAG_SPANS_MS,
    KIND_CODES,
    LONG_CALL_S,
    MAX_CONTACTS,
    MAX_OPEN_CALLS,
    MAX_PAYEES,
    MAX_PAYERS,
    MAX_PENDING,
    NEW_PAYEE_MS,
    OPEN_CALL_TIMEOUT_MS,
    PAYEE_AGE_CAP_S,
    PAYEE_MAX_ENTRIES,
    REPORT_KEEP_MS,
    SHORT_CALL_S,
    STRANGER_MS,
    STRANGER_TALK_MIN_S,
    SUBSCRIBER_MAX_ENTRIES,
    SUSPICIOUS_FANOUT_24H,
    SUSPICIOUS_TALK_S,
    SWEEP_SHORT_SHARE,
    WINDOW_SPANS_MS,
)
from features.windows import SlidingWindows

# The parameters below are re-exported from ``features.params`` (their one definition) for existing importers.
__all__ = [
    "CALLER_CHANNELS",
    "CALLER_SNAPSHOT_FIELDS",
    "CHANNEL_CODES",
    "FEEDBACK_DELAY_MS",
    "KIND_CODES",
    "LONG_CALL_S",
    "NEVER",
    "PAYEE_AGE_CAP_S",
    "PAYEE_CHANNELS",
    "PAYEE_PREFIX",
    "PAYEE_SNAPSHOT_FIELDS",
    "SHORT_CALL_S",
    "SUB_CHANNELS",
    "SUSPICIOUS_TALK_S",
    "S_AMOUNT",
    "S_CALLS",
    "S_LONG_STRANGER",
    "S_NEW_PAYEE",
    "S_NEW_PAYEE_AMOUNT",
    "S_STRANGER",
    "S_STRANGER_MAX_TALK",
    "S_STRANGER_TALK",
    "S_STRANGER_TALKS",
    "S_SWEEPER_TALK",
    "S_TALK",
    "S_TRANSFERS",
    "CallerSnapshot",
    "CallerState",
    "DelayedFlags",
    "Feedback",
    "OpenCall",
    "PayeeSnapshot",
    "PayeeState",
    "SubscriberState",
    "SuspiciousContact",
    "pair_key",
    "payee_key",
    "state_from_obj",
]

PAYEE_PREFIX = "payee:"
NEVER = 2**62  # an idle time that never comes: the key keeps a pending flag


class _Dedup:
    """Remembers the last few event ids of a key, so a repeated event changes no feature twice."""

    __slots__ = ("_order", "_seen")

    def __init__(self, ids: list[str] | None = None, size: int = DEDUP_IDS) -> None:
        self._order: deque[str] = deque(ids or (), maxlen=size)
        self._seen = set(self._order)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._seen

    def first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        if len(self._order) == self._order.maxlen:
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


class DelayedFlags:
    """Distinct keys flagged by feedback from other partitions, counted from a fixed event-time delay on.

    ``add`` (feedback arrival, whenever the broker delivers it) only queues the flag; ``advance`` (driven by
    the owner's own events, i.e. by event time) moves due flags into the windows in effective-time order. So
    what a feature reads at event time T depends only on flags effective at or before T, never on when the
    feedback message happened to arrive. Flags are idempotent by the id of the transfer that raised them.
    """

    __slots__ = ("_adds", "_shared", "dedup", "pending", "windows")

    def __init__(self, dedup: bool = True) -> None:
        self.windows = SlidingWindows(FLAG_SPANS_MS, 1, max_entries=FLAG_MAX_ENTRIES)
        self.pending: list[tuple[int, str]] = []  # (effective_ms, flagged key)
        # Off for flags queued only beside another set's (same ids): that set's ids already drop the repeats.
        self.dedup = _Dedup() if dedup else None
        self._adds = 0  # entries moved into the windows: with their length, tells when a cached count is stale
        self._shared: tuple[tuple[int, int], int] | None = None

    def add(self, flag_id: str, effective_ms: int, who: str) -> bool:
        """Queue a flag; False when this flag id was seen before."""
        if self.dedup is not None and not self.dedup.first_time(flag_id):
            return False
        self.pending.append((effective_ms, who))
        if len(self.pending) > MAX_PENDING:
            self.pending.sort()
            del self.pending[: len(self.pending) - MAX_PENDING]
        return True

    def advance(self, now_ms: int) -> None:
        """Count every queued flag due at ``now_ms``, oldest first; move the windows' clock to ``now_ms``."""
        if self.pending:
            due = sorted(p for p in self.pending if p[0] <= now_ms)
            if due:
                self.pending = [p for p in self.pending if p[0] > now_ms]
                for eff, who in due:
                    self.windows.add(eff, (1,), who)
                self._adds += len(due)
        self.windows.advance(now_ms)

    def distinct(self, window: int) -> int:
        """Distinct flagged keys in window ``window`` of ``FLAG_SPANS_MS`` (as of the last ``advance``)."""
        return self.windows.distinct(window)

    def shared_members(self) -> int:
        """Of flags keyed by :func:`pair_key`, the members sharing a group with another member (longest window).

        Cached: the longest window changes only when an entry is added or leaves it (its length changes).
        """
        stamp = (self._adds, len(self.windows))
        if self._shared is None or self._shared[0] != stamp:
            self._shared = (stamp, _shared_members(self.windows.keys(len(FLAG_SPANS_MS) - 1)))
        return self._shared[1]

    def to_obj(self) -> list[Any]:
        ids = self.dedup.to_obj() if self.dedup is not None else []
        return [self.windows.to_obj(), [list(p) for p in self.pending], ids]

    @classmethod
    def from_obj(cls, obj: list[Any] | None, dedup: bool = True) -> DelayedFlags:
        """Rebuild from :meth:`to_obj`; None (a state stored before these flags existed) gives empty flags."""
        if not obj:
            return cls(dedup)
        flags = cls.__new__(cls)  # not ``cls()``: a decode on the hot path builds no defaults to throw away
        flags.windows = SlidingWindows.from_obj(obj[0], FLAG_SPANS_MS, 1, max_entries=FLAG_MAX_ENTRIES)
        flags.pending = [(int(e), str(w)) for e, w in obj[1]]
        flags.dedup = _Dedup(obj[2]) if dedup else None
        flags._adds = 0
        flags._shared = None
        return flags


# Joins a member (a calling number or a subscriber: no control characters) to its group in one window key.
_PAIR_SEP = "\x1f"


def pair_key(member: str, group: str) -> str:
    """One window key for "``member`` went through ``group``", so distinct pairs are counted exactly."""
    return f"{member}{_PAIR_SEP}{group}"


def _shared_members(pairs: Iterable[str]) -> int:
    """Distinct members found in a group with at least one other member (``pairs`` are distinct pair keys)."""
    groups: dict[str, list[str]] = {}
    for pair in pairs:
        member, _, group = pair.partition(_PAIR_SEP)
        groups.setdefault(group, []).append(member)
    return len({m for members in groups.values() if len(members) > 1 for m in members})


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a subscriber's transfer tells another key's state: ``key`` is a caller number or a payee key.

    ``flag_id`` (the transfer's event id) makes it idempotent; ``who`` is the subscriber; ``effective_ms`` is
    when it starts to count (the transfer time plus ``FEEDBACK_DELAY_MS``). ``via`` is what links the two: to
    a caller, the payee account its callee paid; to a payee, the stranger number that called the payer ("" when
    unknown, or from an older worker).
    """

    key: str
    flag_id: str
    who: str
    effective_ms: int
    via: str = ""
    # A police report naming ``key`` (a calling number) as a fraud line, rather than a callee who paid.
    reported: bool = False

    def to_list(self) -> list[Any]:
        """The four values every worker reads (``via`` travels beside them, see :meth:`to_envelope`)."""
        return [self.key, self.flag_id, self.who, self.effective_ms]

    @classmethod
    def from_list(cls, values: list[Any], via: str = "") -> Feedback:
        """Read the four values; more (a newer worker's) are ignored."""
        key, flag_id, who, eff = values[:4]
        return cls(str(key), str(flag_id), str(who), int(eff), via)

    def to_envelope(self) -> dict[str, Any]:
        """The hop record: ``f`` the four values, ``v`` the link when known.

        Beside the list rather than in it: an older worker unpacks exactly four values from ``f`` and ignores
        other envelope keys, so it keeps reading this worker's feedback during a rolling upgrade.
        """
        envelope: dict[str, Any] = {"f": self.to_list()}
        if self.via:
            envelope["v"] = self.via
        if self.reported:
            envelope["r"] = 1
        return envelope

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> Feedback:
        """Read a hop record; an older worker's (no ``v``) leaves ``via`` empty."""
        fb = cls.from_list(envelope["f"], str(envelope.get("v") or ""))
        return replace(fb, reported=True) if envelope.get("r") else fb


def payee_key(account: str) -> str:
    """The table/partition key of a payee account (beside calling numbers in the caller table)."""
    return PAYEE_PREFIX + account


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
    # Callees who, after talking with this number as a stranger, paid a new payee within a day (feedback).
    paid_callees_24h: int = 0
    paid_callees_7d: int = 0
    paid_share_7d: float = 0.0
    # The week's habits: a line that sweeps with short calls all week and now talks for 20 minutes is acting
    # out of character, which a bank or an agent (long calls every day) is not. The 24 h figures miss it on
    # the days a ring line has not swept yet.
    calls_7d: int = 0
    short_ratio_7d: float = 0.0
    answered_7d: int = 0
    mean_talk_7d_s: float = 0.0
    # Of the answered calls, the share under SHORT_CALL_S: a ring line's sweep (most who pick up hang up at
    # once) against an office's (people who pick up talk). Unlike ``short_ratio`` it ignores the answer rate.
    answered_short_share_7d: float = 0.0
    answered_short_share_24h: float = 0.0
    # Shares rather than counts: a line's fan-out grows with the city it dials, but a sweep's "almost every
    # call to someone new" and "few answer, fewer talk long" do not. They let the model weigh the line's
    # habits without learning this simulator's city size.
    callee_share_24h: float = 0.0  # distinct callees per call today
    callee_share_7d: float = 0.0
    answered_share_7d: float = 0.0
    long_share_7d: float = 0.0  # of the answered calls this week, those of LONG_CALL_S or more
    paid_share_24h: float = 0.0  # of today's callees, those who paid someone new after its call (feedback)
    # Paid callees (feedback, 7 d) who paid an account another paid callee of this number also paid: a ring's
    # mule fed by several victims of one line, whatever script it ran. Known before the next victim pays.
    shared_payee_callees_7d: int = 0
    # 1 when a police report known by now names this number (``REPORT_KEEP_MS``): a confirmed fraud line,
    # whatever script it runs.
    reported: int = 0

    def to_list(self) -> list[float]:
        """The fields in declaration order: the wire form, and the ``caller`` block of the feature vector."""
        return list(map(float, _caller_values(self)))

    @classmethod
    def from_list(cls, values: list[float]) -> CallerSnapshot:
        """Read a snapshot from the wire; a shorter list (an older worker's) leaves the newer fields at 0."""
        return cls(*[t(v) for t, v in zip(_CALLER_TYPES, values, strict=False)])

    def usual_talk_ratio(self, duration_s: float) -> float:
        """This call's length over the mean of the caller's other answered calls this week (NaN without any)."""
        others = self.answered_7d - 1
        if others <= 0:
            return math.nan
        other_mean = (self.mean_talk_7d_s * self.answered_7d - duration_s) / others
        return duration_s / other_mean if other_mean > 0 else math.nan


def _field_types(cls: type) -> tuple[type, ...]:
    # With postponed annotations a field's type is its source text.
    return tuple(int if f.type == "int" else float for f in fields(cls))


# The field order is the feature order: ``features.registry`` names the caller block after these fields.
CALLER_SNAPSHOT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CallerSnapshot))
_CALLER_TYPES = _field_types(CallerSnapshot)
_caller_values = attrgetter(*CALLER_SNAPSHOT_FIELDS)  # one C call for all fields, built once


class CallerState:
    """Rolling behaviour of one calling number across all its callees."""

    __slots__ = ("dedup", "first_seen_ms", "paid", "paid_payees", "reported", "windows")

    def __init__(self) -> None:
        self.windows = SlidingWindows(WINDOW_SPANS_MS, CALLER_CHANNELS, max_entries=CALLER_MAX_ENTRIES)
        self.first_seen_ms: int | None = None
        self.dedup = _Dedup()
        self.paid = DelayedFlags()  # callees who paid a new payee within a day of talking with this number
        # The same flags as (callee, payee account) pairs; ``paid``'s ids drop the repeats of both.
        self.paid_payees = DelayedFlags(dedup=False)
        # [first, last]: when the earliest and the latest police report naming this number count from; it counts
        # as reported from the first until REPORT_KEEP_MS after the last (a ring's line reported again stays so).
        self.reported: list[int] | None = None

    def feedback(self, fb: Feedback) -> bool:
        """Queue a callee's "paid a new payee after our call", or a police report naming this number; False for
        a repeat (the same transfer, or a report no earlier than one already known)."""
        if fb.reported:
            at = fb.effective_ms
            if self.reported is None:
                self.reported = [at, at]
                return True
            first, last = self.reported
            if first <= at <= last:
                return False
            self.reported = [min(first, at), max(last, at)]
            return True
        if not self.paid.add(fb.flag_id, fb.effective_ms, fb.who):
            return False
        if fb.via:
            self.paid_payees.add(fb.flag_id, fb.effective_ms, pair_key(fb.who, fb.via))
        return True

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
        self.paid.advance(avail_ms)
        self.paid_payees.advance(avail_ms)
        return True

    def snapshot(self, at_ms: int | None = None) -> CallerSnapshot:
        """The caller's current risk profile (at ``at_ms`` when that is after its last call: a connect)."""
        w = self.windows
        calls, answered, short, _talk, long_calls = w.sums(2)
        calls_7d, answered_7d, short_7d, talk_7d, long_7d = w.sums(3)
        now = w.now
        fanout_24h = w.distinct(2)
        fanout_7d = w.distinct(3)
        paid_24h = self.paid.distinct(0)
        paid_7d = self.paid.distinct(1)
        return CallerSnapshot(
            fanout_1h=w.distinct(1),
            fanout_24h=fanout_24h,
            fanout_7d=fanout_7d,
            calls_24h=calls,
            short_ratio_24h=short / calls if calls else 0.0,
            unanswered_ratio_24h=(calls - answered) / calls if calls else 0.0,
            long_calls_24h=long_calls,
            age_s=(now - self.first_seen_ms) / 1000 if self.first_seen_ms is not None else 0.0,
            paid_callees_24h=paid_24h,
            paid_callees_7d=paid_7d,
            paid_share_7d=min(1.0, paid_7d / fanout_7d) if fanout_7d else 0.0,
            calls_7d=calls_7d,
            short_ratio_7d=short_7d / calls_7d if calls_7d else 0.0,
            answered_7d=answered_7d,
            mean_talk_7d_s=talk_7d / answered_7d if answered_7d else 0.0,
            answered_short_share_7d=(short_7d - (calls_7d - answered_7d)) / answered_7d if answered_7d else 0.0,
            answered_short_share_24h=(short - (calls - answered)) / answered if answered else 0.0,
            callee_share_24h=fanout_24h / calls if calls else 0.0,
            callee_share_7d=fanout_7d / calls_7d if calls_7d else 0.0,
            answered_share_7d=answered_7d / calls_7d if calls_7d else 0.0,
            long_share_7d=long_7d / answered_7d if answered_7d else 0.0,
            paid_share_24h=min(1.0, paid_24h / fanout_24h) if fanout_24h else 0.0,
            shared_payee_callees_7d=self.paid_payees.shared_members(),
            reported=int(self.reported_at(now if at_ms is None else max(now, at_ms))),
        )

    def reported_at(self, at_ms: int) -> bool:
        """Whether a police report naming this number counts at ``at_ms``."""
        return self.reported is not None and self.reported[0] <= at_ms < self.reported[1] + REPORT_KEEP_MS

    def idle_after_ms(self) -> int:
        """From when the key may be expired (``NEVER`` while a flag is pending): its windows are all empty."""
        if self.paid.pending or self.paid_payees.pending:
            return NEVER
        idle_from = self.windows.now + WINDOW_SPANS_MS[-1]
        return idle_from if self.reported is None else max(idle_from, self.reported[1] + REPORT_KEEP_MS)

    def idle(self, now_ms: int) -> bool:
        """True when nothing happened for longer than the longest window: the key can be expired."""
        return now_ms > self.idle_after_ms()

    def to_obj(self) -> dict[str, Any]:
        obj = {
            "w": self.windows.to_obj(),
            "f": self.first_seen_ms,
            "d": self.dedup.to_obj(),
            "q": self.paid.to_obj(),
            "v": self.paid_payees.to_obj(),
        }
        if self.reported is not None:
            obj["r"] = self.reported
        return obj

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> CallerState:
        state = cls.__new__(cls)  # every slot is set below: no defaults built to be thrown away
        state.windows = SlidingWindows.from_obj(
            obj["w"], WINDOW_SPANS_MS, CALLER_CHANNELS, max_entries=CALLER_MAX_ENTRIES
        )
        state.first_seen_ms = obj["f"]
        state.dedup = _Dedup(obj["d"])
        state.paid = DelayedFlags.from_obj(obj.get("q"))
        state.paid_payees = DelayedFlags.from_obj(obj.get("v"), dedup=False)  # absent in older stored states
        state.reported = obj.get("r")  # absent unless reported (and in states stored before reports)
        return state


@dataclass(frozen=True, slots=True)
class PayeeSnapshot:
    """The receiving account as seen across every payer, right after this transfer."""

    payers_24h: int
    payers_7d: int
    new_payers_24h: int
    new_payers_7d: int
    amount_24h: float
    age_s: float
    flagged_payers_7d: int
    flagged_share_7d: float
    # Shares rather than counts: a popular shop's payers grow with the city it serves, a mule's "every payer
    # is new and each pays thousands" does not.
    new_payer_share_7d: float = 0.0
    amount_per_payer_24h: float = 0.0
    # Flagged payers (feedback, 7 d) talked into paying by the same stranger number as another flagged payer:
    # one line steering several victims to this account.
    shared_caller_payers_7d: int = 0

    def to_list(self) -> list[float]:
        """The fields in declaration order: the wire form, and the ``payee`` block of the feature vector."""
        # Values as they are (counts stay ints), as this snapshot always sent them.
        return list(_payee_values(self))

    @classmethod
    def from_list(cls, values: list[float]) -> PayeeSnapshot:
        """Read a snapshot from the wire; a shorter list (an older worker's) leaves the newer fields at 0."""
        if len(values) < _PAYEE_REQUIRED:
            raise ValueError(f"a payee snapshot needs at least {_PAYEE_REQUIRED} values, got {len(values)}")
        return cls(*[t(v) for t, v in zip(_PAYEE_TYPES, values, strict=False)])


PAYEE_SNAPSHOT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PayeeSnapshot))
_PAYEE_TYPES = _field_types(PayeeSnapshot)
_PAYEE_REQUIRED = sum(1 for f in fields(PayeeSnapshot) if f.default is MISSING)
_payee_values = attrgetter(*PAYEE_SNAPSHOT_FIELDS)


# Payee-side channels: transfers in, cents in.
PAYEE_CHANNELS = 2


class PayeeState:
    """Rolling behaviour of one receiving account across all payers (mule accounts reused by a ring).

    Lives in the caller table under ``payee_key(account)``: transfers take the caller-keyed hop keyed by payee.
    """

    __slots__ = ("dedup", "first_seen_ms", "flagged", "flagged_callers", "new_windows", "payers", "windows")

    def __init__(self) -> None:
        self.windows = SlidingWindows(FLAG_SPANS_MS, PAYEE_CHANNELS, max_entries=PAYEE_MAX_ENTRIES)
        self.new_windows = SlidingWindows(FLAG_SPANS_MS, 1, max_entries=FLAG_MAX_ENTRIES)  # payers new to this payee
        # payer subscriber -> [first_seen_ms, last_seen_ms]
        self.payers: dict[str, list[int]] = {}
        self.first_seen_ms: int | None = None
        self.flagged = DelayedFlags()  # payers who paid it right after a suspicious or long stranger call
        # The same flags as (payer, stranger who called the payer) pairs; ``flagged``'s ids drop the repeats.
        self.flagged_callers = DelayedFlags(dedup=False)
        self.dedup = _Dedup()

    def update(self, transfer: TransferEvent) -> bool:
        """Account one incoming transfer; False for a duplicate event id."""
        if not self.dedup.first_time(transfer.event_id):
            return False
        ts = transfer.ts_ms
        if self.first_seen_ms is None or ts < self.first_seen_ms:
            self.first_seen_ms = ts
        payer = self.payers.get(transfer.subscriber)
        new_payer = payer is None or payer[0] > ts - NEW_PAYEE_MS
        if payer is None:
            payer = self.payers[transfer.subscriber] = [ts, ts]
            _prune_oldest(self.payers, MAX_PAYERS, 1)
            self.payers[transfer.subscriber] = payer
        payer[0] = min(payer[0], ts)
        payer[1] = max(payer[1], ts)
        self.windows.add(ts, (1, round(transfer.amount * 100)), transfer.subscriber)
        if new_payer:
            self.new_windows.add(ts, (1,), transfer.subscriber)
        else:
            self.new_windows.advance(ts)
        self.flagged.advance(ts)
        self.flagged_callers.advance(ts)
        return True

    def feedback(self, fb: Feedback) -> bool:
        """Queue a payer's "paid right after a suspicious call"; False for a repeat of the same transfer."""
        if not self.flagged.add(fb.flag_id, fb.effective_ms, fb.who):
            return False
        if fb.via:
            self.flagged_callers.add(fb.flag_id, fb.effective_ms, pair_key(fb.who, fb.via))
        return True

    def snapshot(self) -> PayeeSnapshot:
        w = self.windows
        payers_24h = w.distinct(0)
        payers_7d = w.distinct(1)
        new_7d = self.new_windows.distinct(1)
        amount_24h = w.sums(0)[1] / 100
        flagged = self.flagged.distinct(1)
        age_ms = w.now - self.first_seen_ms if self.first_seen_ms is not None else 0
        return PayeeSnapshot(
            payers_24h=payers_24h,
            payers_7d=payers_7d,
            new_payers_24h=self.new_windows.distinct(0),
            new_payers_7d=new_7d,
            amount_24h=amount_24h,
            # Capped: a history shorter than the cap cannot tell a week-old account from a year-old one.
            age_s=min(age_ms / 1000, PAYEE_AGE_CAP_S),
            flagged_payers_7d=flagged,
            flagged_share_7d=min(1.0, flagged / payers_7d) if payers_7d else 0.0,
            new_payer_share_7d=min(1.0, new_7d / payers_7d) if payers_7d else 0.0,
            amount_per_payer_24h=amount_24h / payers_24h if payers_24h else 0.0,
            shared_caller_payers_7d=self.flagged_callers.shared_members(),
        )

    def idle_after_ms(self) -> int:
        """From when the key may be expired (``NEVER`` while a flag is pending)."""
        if self.flagged.pending or self.flagged_callers.pending:
            return NEVER
        return self.windows.now + FLAG_SPANS_MS[-1]

    def idle(self, now_ms: int) -> bool:
        return now_ms > self.idle_after_ms()

    def to_obj(self) -> dict[str, Any]:
        return {
            "k": "payee",
            "w": self.windows.to_obj(),
            "n": self.new_windows.to_obj(),
            "p": self.payers,
            "f": self.first_seen_ms,
            "q": self.flagged.to_obj(),
            "v": self.flagged_callers.to_obj(),
            "d": self.dedup.to_obj(),
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> PayeeState:
        state = cls.__new__(cls)  # every slot is set below: no defaults built to be thrown away
        state.windows = SlidingWindows.from_obj(obj["w"], FLAG_SPANS_MS, PAYEE_CHANNELS, max_entries=PAYEE_MAX_ENTRIES)
        state.new_windows = SlidingWindows.from_obj(obj["n"], FLAG_SPANS_MS, 1, max_entries=FLAG_MAX_ENTRIES)
        state.payers = obj["p"]
        state.first_seen_ms = obj["f"]
        state.flagged = DelayedFlags.from_obj(obj["q"])
        state.flagged_callers = DelayedFlags.from_obj(obj.get("v"), dedup=False)  # absent in older stored states
        state.dedup = _Dedup(obj["d"])
        return state


def state_from_obj(obj: dict[str, Any]) -> CallerState | PayeeState:
    """A caller-table value from its snapshot: calling numbers and payee accounts share that table."""
    return PayeeState.from_obj(obj) if obj.get("k") == "payee" else CallerState.from_obj(obj)


# Subscriber-side channels (index constants keep the feature code readable).
S_CALLS, S_STRANGER_TALKS, S_STRANGER, S_STRANGER_TALK, S_SWEEPER_TALK, S_LONG_STRANGER = range(6)
S_TRANSFERS, S_AMOUNT, S_NEW_PAYEE, S_NEW_PAYEE_AMOUNT, S_STRANGER_MAX_TALK, S_TALK = range(6, 12)
SUB_CHANNELS = 12


@dataclass(slots=True)
class SuspiciousContact:
    """The latest suspicious call the subscriber took, and what is known of its caller."""

    end_ms: int
    caller: str
    kind_code: int  # kept in the stored state's form; no feature reads it (see STRANGER_TALK_MIN_S)
    calls_with_sub: int
    talk_with_sub_s: int
    caller_fanout_24h: int
    caller_paid_callees_7d: int = 0
    caller_short_share_24h: float = 0.0  # the caller's answered calls that day under SHORT_CALL_S
    caller_reported: int = 0  # a police report named the caller by then

    def to_list(self) -> list[Any]:
        return [
            self.end_ms,
            self.caller,
            self.kind_code,
            self.calls_with_sub,
            self.talk_with_sub_s,
            self.caller_fanout_24h,
            self.caller_paid_callees_7d,
            self.caller_short_share_24h,
            self.caller_reported,
        ]


@dataclass(slots=True)
class OpenCall:
    """A call on the line now (its ``call_start.v1`` came, its ``call.v1`` not yet) and its caller then."""

    start_ms: int
    caller: str
    stranger: bool  # the number was first seen with this person less than a day before it connected
    caller_fanout_24h: int
    caller_short_share_24h: float  # of the caller's answered calls that day, those under SHORT_CALL_S
    caller_paid_callees_7d: int
    caller_age_s: float
    # Appended and defaulted, so lists stored before them decode: the marks of CALL_TICK_MARKS_S already fired.
    ticks: int = 0
    lat: float | None = None  # where the callee was when it connected, for a re-scored call's alert
    lon: float | None = None
    caller_reported: int = 0  # a police report named the caller when it connected

    def to_list(self) -> list[Any]:
        return [
            self.start_ms,
            self.caller,
            self.stranger,
            self.caller_fanout_24h,
            self.caller_short_share_24h,
            self.caller_paid_callees_7d,
            self.caller_age_s,
            self.ticks,
            self.lat,
            self.lon,
            self.caller_reported,
        ]


def _fallback_join(caller: str, ts_ms: int) -> str:
    # The contract's last resort when a call record carries neither the call id nor the start's event id.
    return f"{caller}@{ts_ms}"


class SubscriberState:
    """Rolling behaviour of one subscriber (possible victim): calls received and transfers made."""

    __slots__ = ("amount_stats", "contacts", "dedup", "ended", "last_suspicious", "open_calls", "payees", "windows")

    def __init__(self) -> None:
        self.windows = SlidingWindows(
            WINDOW_SPANS_MS, SUB_CHANNELS, max_channel=S_STRANGER_MAX_TALK, max_entries=SUBSCRIBER_MAX_ENTRIES
        )
        # caller -> [first_seen_ms, last_seen_ms, calls, talk_s]
        self.contacts: dict[str, list[int]] = {}
        # payee account -> [first_seen_ms, last_seen_ms]
        self.payees: dict[str, list[int]] = {}
        # Welford running mean/variance of log(amount) over the subscriber's past transfers.
        self.amount_stats: list[float] = [0.0, 0.0, 0.0]
        self.last_suspicious: SuspiciousContact | None = None
        self.dedup = _Dedup()
        # Calls on the line now, by the id that joins them to their record (``call_join_key``), oldest first.
        self.open_calls: dict[str, OpenCall] = {}
        self.ended = _Dedup(size=ENDED_CALL_IDS)  # join ids of calls whose record came

    def is_stranger(self, caller: str, at_ms: int) -> bool:
        """A number first seen with this subscriber less than a day ago (or never)."""
        contact = self.contacts.get(caller)
        return contact is None or contact[0] > at_ms - STRANGER_MS

    def expire_open_calls(self, at_ms: int) -> None:
        """Close the calls whose record is overdue: connected more than OPEN_CALL_TIMEOUT_MS before ``at_ms``."""
        if self.open_calls:
            cutoff = at_ms - OPEN_CALL_TIMEOUT_MS
            for key in [k for k, c in self.open_calls.items() if c.start_ms < cutoff]:
                del self.open_calls[key]

    def open_call(self, start: CallStartEvent, caller: CallerSnapshot) -> bool | None:
        """Put a connected call on the line; whether its caller is a stranger, None for a duplicate.

        A start whose call record already came (signalling later than the record) opens nothing.
        """
        if not self.dedup.first_time(start.event_id):
            return None
        self.expire_open_calls(start.ts_ms)
        stranger = self.is_stranger(start.caller, start.ts_ms)
        if start.call_id not in self.ended and _fallback_join(start.caller, start.ts_ms) not in self.ended:
            self.open_calls[start.call_id] = OpenCall(
                start.ts_ms,
                start.caller,
                stranger,
                caller.fanout_24h,
                caller.answered_short_share_24h,
                caller.paid_callees_7d,
                caller.age_s,
                lat=start.callee_lat,
                lon=start.callee_lon,
                caller_reported=caller.reported,
            )
            while len(self.open_calls) > MAX_OPEN_CALLS:
                del self.open_calls[next(iter(self.open_calls))]
        return stranger

    def _close_call(self, call: CallEvent) -> None:
        key = call_join_key(call)
        if self.open_calls.pop(key, None) is None:
            for open_key, open_call in self.open_calls.items():
                if open_call.caller == call.caller and open_call.start_ms == call.ts_ms:
                    del self.open_calls[open_key]
                    break
        self.ended.first_time(key)
        self.ended.first_time(_fallback_join(call.caller, call.ts_ms))

    def update_call(self, call: CallEvent, avail_ms: int, caller: CallerSnapshot) -> bool | None:
        """Account a received call; returns whether its caller was a stranger, None for a duplicate."""
        if not self.dedup.first_time(call.event_id):
            return None
        self._close_call(call)
        self.expire_open_calls(avail_ms)
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
        talked = stranger and call.answered and dur >= STRANGER_TALK_MIN_S
        sweeper = stranger and call.answered and caller.answered_short_share_24h >= SWEEP_SHORT_SHARE
        values = (
            1,
            1 if talked else 0,
            1 if stranger else 0,
            dur if stranger else 0,
            dur if sweeper else 0,
            1 if stranger and dur >= LONG_CALL_S else 0,
            0,
            0,
            0,
            0,
            dur if stranger else 0,
            dur,
        )
        self.windows.add(avail_ms, values)
        # Not the number kind: elsewhere most scam calls come from plain mobiles, and a contact defined by the
        # kind would teach the model this simulator's ring lines. A long talk with a stranger, or a stranger
        # sweeping many people, is suspicious whatever range the number is from.
        # A reported line is suspicious whoever it calls: a known number can be a ring's too (it called before).
        suspicious = call.answered and (
            bool(caller.reported)
            or (stranger and (dur >= SUSPICIOUS_TALK_S or caller.fanout_24h >= SUSPICIOUS_FANOUT_24H))
        )
        if suspicious and (self.last_suspicious is None or avail_ms >= self.last_suspicious.end_ms):
            self.last_suspicious = SuspiciousContact(
                end_ms=avail_ms,
                caller=call.caller,
                kind_code=KIND_CODES[call.caller_kind],
                calls_with_sub=contact[2],
                talk_with_sub_s=contact[3],
                caller_fanout_24h=caller.fanout_24h,
                caller_paid_callees_7d=caller.paid_callees_7d,
                caller_short_share_24h=caller.answered_short_share_24h,
                caller_reported=caller.reported,
            )
        return stranger

    def update_transfer(self, transfer: TransferEvent) -> tuple[bool, bool, list[float]]:
        """Account a transfer; returns (first time seen, payee was new, amount stats before it)."""
        before = list(self.amount_stats)
        if not self.dedup.first_time(transfer.event_id):
            return False, False, before
        ts = transfer.ts_ms
        self.expire_open_calls(ts)
        cents = round(transfer.amount * 100)
        payee = self.payees.get(transfer.payee_account)
        new_payee = payee is None or payee[0] > ts - NEW_PAYEE_MS
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

    def idle_after_ms(self) -> int:
        """From when the key may be expired: its windows are all empty."""
        return self.windows.now + WINDOW_SPANS_MS[-1]

    def idle(self, now_ms: int) -> bool:
        """True when nothing happened for longer than the longest window: the key can be expired."""
        return now_ms > self.idle_after_ms()

    def to_obj(self) -> dict[str, Any]:
        return {
            "w": self.windows.to_obj(),
            "c": self.contacts,
            "p": self.payees,
            "a": self.amount_stats,
            "s": self.last_suspicious.to_list() if self.last_suspicious else None,
            "d": self.dedup.to_obj(),
            "o": {key: call.to_list() for key, call in self.open_calls.items()},
            "e": self.ended.to_obj(),
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> SubscriberState:
        state = cls.__new__(cls)  # every slot is set below: no defaults built to be thrown away
        state.windows = SlidingWindows.from_obj(
            obj["w"], WINDOW_SPANS_MS, SUB_CHANNELS, max_channel=S_STRANGER_MAX_TALK, max_entries=SUBSCRIBER_MAX_ENTRIES
        )
        state.contacts = obj["c"]
        state.payees = obj["p"]
        state.amount_stats = obj["a"]
        state.last_suspicious = SuspiciousContact(*obj["s"]) if obj["s"] else None
        state.dedup = _Dedup(obj["d"])
        # Absent in states stored before signalling.
        state.open_calls = {key: OpenCall(*values) for key, values in (obj.get("o") or {}).items()}
        state.ended = _Dedup(obj.get("e"), size=ENDED_CALL_IDS)
        return state
