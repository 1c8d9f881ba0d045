"""The feature registry: every feature declared once, with its block and its plain-language sentence.

The vector's names and order, the categorical features, the sentences of ``models.explain`` and the
``FEATURES_HASH`` a model is checked against all come from here. The hash covers the names *and* every
parameter of ``features.params``, so a model trained with other constants refuses to load.

Blocks are contiguous slices of the vector, in ``BLOCKS`` order; ``features.vector.subscriber_step`` builds
a row block by block in that order (checked at import there). The ``caller`` and ``payee`` blocks are named
after the fields of ``CallerSnapshot`` and ``PayeeSnapshot``: a new snapshot field is a new feature, and
this module refuses to import until that feature has its sentence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from features.params import PARAMETERS, WINDOW_NAMES
from features.state import (
    CALLER_SNAPSHOT_FIELDS,
    PAYEE_SNAPSHOT_FIELDS,
    S_AMOUNT,
    S_CALLS,
    S_LONG_STRANGER,
    S_NEW_PAYEE,
    S_NEW_PAYEE_AMOUNT,
    S_STRANGER,
    S_STRANGER_TALK,
    S_STRANGER_TALKS,
    S_SWEEPER_TALK,
    S_TRANSFERS,
)
from features.wording import (
    NEW_NUMBERS,
    SWEEPING_NUMBERS,
    age,
    channel_phrase,
    minutes,
    people,
    span,
)

__all__ = [
    "BLOCKS",
    "BLOCK_NAMES",
    "CATEGORICAL_FEATURES",
    "FEATURES",
    "FEATURES_HASH",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "PARAMETERS",
    "PARAMETERS_JSON",
    "WINDOW_CHANNELS",
    "Block",
    "Feature",
    "Sentence",
    "WindowChannel",
    "describe_change",
    "features_hash",
    "jsonable",
]

# A sentence reads the whole row (a sentence may mention a second feature) and words it for an officer.
Sentence = Callable[[Sequence[float]], str]


@dataclass(frozen=True, slots=True)
class Feature:
    """One column of the feature vector."""

    name: str
    block: str
    sentence: Sentence
    categorical: bool = False


@dataclass(frozen=True, slots=True)
class Block:
    """A contiguous run of features that one part of the subscriber step fills (or pads with NaN)."""

    name: str
    features: tuple[Feature, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The block's feature names, in vector order."""
        return tuple(f.name for f in self.features)

    def __len__(self) -> int:
        return len(self.features)


@dataclass(frozen=True, slots=True)
class WindowChannel:
    """A subscriber window channel as features: ``sub_<name>_<window>`` for every window, in window order."""

    name: str
    channel: int  # index into the subscriber state's window channels (``features.state.S_*``)
    cents: bool  # summed in cents in the state, shown in currency units
    template: Callable[[float, str], str]  # (value, window phrase) -> sentence


def _v(row: Sequence[float], name: str) -> float:
    value = row[FEATURE_INDEX[name]]
    return 0.0 if value != value else value  # NaN -> 0 for wording


def _transfer_started(row: Sequence[float]) -> str:
    return f"started a ¥{_v(row, 'amount'):,.0f} transfer" + (" to a new payee" if _v(row, "payee_new") else "")


def _block(name: str, specs: Iterable[tuple[str, Sentence]], categorical: frozenset[str] = frozenset()) -> Block:
    return Block(name, tuple(Feature(n, name, sentence, n in categorical) for n, sentence in specs))


def _snapshot_block(name: str, prefix: str, fields: tuple[str, ...], sentences: Mapping[str, Sentence]) -> Block:
    """A block named after a snapshot's fields, in field order; each field's feature must have a sentence."""
    names = [prefix + field for field in fields]
    missing = [n for n in names if n not in sentences]
    extra = [n for n in sentences if n not in names]
    if missing or extra:
        raise RuntimeError(f"{name} block: fields without a sentence {missing}, sentences without a field {extra}")
    return _block(name, [(n, sentences[n]) for n in names])


_EVENT = _block(
    "event",
    [
        (
            "is_call",
            lambda r: (
                "the warning rests on a phone call" if _v(r, "is_call") else "the warning rests on a money transfer"
            ),
        ),
        ("local_hour", lambda r: f"it happened at {_v(r, 'local_hour'):02.0f}:00 local time"),
        (
            "is_night",
            lambda r: "it happened at night, before 6 am" if _v(r, "is_night") else "it happened in the daytime",
        ),
    ],
)

_CALL = _block(
    "call",
    [
        (
            "call_duration_s",
            lambda r: (
                (
                    "has just picked up a call"
                    if _v(r, "is_call_start")
                    else f"took a {minutes(_v(r, 'call_duration_s'))} call"
                )
                + (" from a number first seen today" if _v(r, "caller_is_stranger") else "")
            ),
        ),
        ("call_answered", lambda r: "the call was answered" if _v(r, "call_answered") else "the call was not answered"),
        (
            "caller_is_stranger",
            lambda r: (
                "the calling number was new to this person"
                if _v(r, "caller_is_stranger")
                else "this person knew the calling number"
            ),
        ),
        (
            "caller_known_for_s",
            lambda r: (
                f"this person first heard from the calling number {span(_v(r, 'caller_known_for_s'))} ago"
                if _v(r, "caller_known_for_s") >= 60
                else "this was the first call this person had from the calling number"
            ),
        ),
        (
            "caller_calls_with_sub",
            lambda r: f"has had {_v(r, 'caller_calls_with_sub'):.0f} calls from the calling number so far",
        ),
        (
            "caller_talk_with_sub_s",
            lambda r: f"has talked {minutes(_v(r, 'caller_talk_with_sub_s'))} in total with the calling number",
        ),
    ],
)

# The calling number's risk as handed over by the caller step: ``CallerSnapshot``'s fields, in their order.
_CALLER = _snapshot_block(
    "caller",
    "caller_",
    CALLER_SNAPSHOT_FIELDS,
    {
        "caller_fanout_1h": lambda r: (
            f"the calling number rang {_v(r, 'caller_fanout_1h'):.0f} people in the last hour"
        ),
        "caller_fanout_24h": lambda r: (
            f"the calling number rang {_v(r, 'caller_fanout_24h'):.0f} different people today"
        ),
        "caller_fanout_7d": lambda r: (
            f"the calling number rang {_v(r, 'caller_fanout_7d'):.0f} different people this week"
        ),
        "caller_calls_24h": lambda r: f"the calling number made {_v(r, 'caller_calls_24h'):.0f} calls today",
        "caller_short_ratio_24h": lambda r: (
            f"{_v(r, 'caller_short_ratio_24h'):.0%} of the calling number's calls today were short or unanswered"
        ),
        "caller_unanswered_ratio_24h": lambda r: (
            f"{_v(r, 'caller_unanswered_ratio_24h'):.0%} of the calling number's calls today went unanswered"
        ),
        "caller_long_calls_24h": lambda r: (
            f"the calling number had {_v(r, 'caller_long_calls_24h'):.0f} calls of 10 min or more today"
        ),
        "caller_age_s": lambda r: (
            f"the calling number first appeared {span(_v(r, 'caller_age_s'))} ago"
            if _v(r, "caller_age_s") >= 60
            else "the calling number was never seen before this call"
        ),
        "caller_paid_callees_24h": lambda r: (
            f"{people(_v(r, 'caller_paid_callees_24h'))} who talked with the calling number today then paid someone new"
        ),
        "caller_paid_callees_7d": lambda r: (
            f"{people(_v(r, 'caller_paid_callees_7d'))} who talked with the calling number this week "
            "then paid someone new"
        ),
        "caller_paid_share_7d": lambda r: (
            f"{_v(r, 'caller_paid_share_7d'):.0%} of the people the calling number rang this week "
            "paid someone new soon after"
        ),
        "caller_calls_7d": lambda r: f"the calling number made {_v(r, 'caller_calls_7d'):.0f} calls this week",
        "caller_short_ratio_7d": lambda r: (
            f"{_v(r, 'caller_short_ratio_7d'):.0%} of the calling number's calls this week were short or unanswered"
        ),
        "caller_answered_7d": lambda r: (
            f"{_v(r, 'caller_answered_7d'):.0f} of the calling number's calls this week were answered"
        ),
        "caller_mean_talk_7d_s": lambda r: (
            f"the calling number's answered calls this week lasted {_v(r, 'caller_mean_talk_7d_s'):.0f} s on average"
        ),
        "caller_answered_short_share_7d": lambda r: (
            f"{_v(r, 'caller_answered_short_share_7d'):.0%} of the people who answered the calling number this week "
            "hung up within 30 s"
        ),
        "caller_answered_short_share_24h": lambda r: (
            f"{_v(r, 'caller_answered_short_share_24h'):.0%} of the people who answered the calling number today "
            "hung up within 30 s"
        ),
        "caller_callee_share_24h": lambda r: (
            f"{_v(r, 'caller_callee_share_24h'):.0%} of the calling number's calls today went to someone it had not "
            "rung yet today"
        ),
        "caller_callee_share_7d": lambda r: (
            f"{_v(r, 'caller_callee_share_7d'):.0%} of the calling number's calls this week went to someone it had "
            "not rung yet this week"
        ),
        "caller_answered_share_7d": lambda r: (
            f"{_v(r, 'caller_answered_share_7d'):.0%} of the calling number's calls this week were answered"
        ),
        "caller_long_share_7d": lambda r: (
            f"{_v(r, 'caller_long_share_7d'):.0%} of the calling number's answered calls this week lasted 10 min "
            "or more"
        ),
        "caller_paid_share_24h": lambda r: (
            f"{_v(r, 'caller_paid_share_24h'):.0%} of the people the calling number rang today paid someone new "
            "soon after"
        ),
        "caller_shared_payee_callees_7d": lambda r: (
            f"{people(_v(r, 'caller_shared_payee_callees_7d'))} who talked with the calling number this week then "
            "paid an account that another of its callees also paid"
        ),
        "caller_reported": lambda r: (
            "a police report names the calling number as a fraud line"
            if _v(r, "caller_reported")
            else "no police report names the calling number"
        ),
    },
)

# This call against the caller's habits: computed on the subscriber's side from the snapshot and the call.
_CALL_VS_CALLER = _block(
    "call_vs_caller",
    [
        (
            "call_vs_caller_usual_talk",
            lambda r: (
                f"the call was {_v(r, 'call_vs_caller_usual_talk'):.0f} times longer than the calling number's "
                "usual calls"
            ),
        ),
    ],
)

_TRANSFER = _block(
    "transfer",
    [
        ("amount", _transfer_started),
        ("amount_log", _transfer_started),  # the same amount on a log scale: the same sentence
        ("amount_z", lambda r: "the transfer is far larger than this person's usual amounts"),
        ("amount_vs_usual", lambda r: "the transfer is far larger than this person's usual amounts"),
        ("payee_new", lambda r: "the payee account was never paid before"),
        ("channel", lambda r: f"the transfer was made through {channel_phrase(_v(r, 'channel'))}"),
        ("prior_transfers", lambda r: f"had made {_v(r, 'prior_transfers'):.0f} transfers before this one"),
        ("transfer_after_suspicious_call", lambda r: "the transfer started within 30 min of a suspicious call"),
    ],
    categorical=frozenset({"channel"}),
)

# The receiving account as handed over by the payee step: ``PayeeSnapshot``'s fields, in their order.
_PAYEE = _snapshot_block(
    "payee",
    "payee_",
    PAYEE_SNAPSHOT_FIELDS,
    {
        "payee_payers_24h": lambda r: f"the receiving account was paid by {people(_v(r, 'payee_payers_24h'))} today",
        "payee_payers_7d": lambda r: f"the receiving account was paid by {people(_v(r, 'payee_payers_7d'))} this week",
        "payee_new_payers_24h": lambda r: (
            f"{people(_v(r, 'payee_new_payers_24h'))} paid the receiving account for the first time today"
        ),
        "payee_new_payers_7d": lambda r: (
            f"{people(_v(r, 'payee_new_payers_7d'))} paid the receiving account for the first time this week"
        ),
        "payee_amount_24h": lambda r: f"the receiving account took in ¥{_v(r, 'payee_amount_24h'):,.0f} today",
        "payee_age_s": lambda r: f"the receiving account first appeared {age(_v(r, 'payee_age_s'))} ago",
        "payee_flagged_payers_7d": lambda r: (
            f"{people(_v(r, 'payee_flagged_payers_7d'))} paid the receiving account this week "
            "right after a call from an unknown number"
        ),
        "payee_flagged_share_7d": lambda r: (
            f"{_v(r, 'payee_flagged_share_7d'):.0%} of this week's payers of the receiving account paid "
            "right after a call from an unknown number"
        ),
        "payee_new_payer_share_7d": lambda r: (
            f"{_v(r, 'payee_new_payer_share_7d'):.0%} of this week's payers of the receiving account paid it for "
            "the first time"
        ),
        "payee_amount_per_payer_24h": lambda r: (
            f"each of today's payers sent the receiving account ¥{_v(r, 'payee_amount_per_payer_24h'):,.0f} on average"
        ),
        "payee_shared_caller_payers_7d": lambda r: (
            f"{people(_v(r, 'payee_shared_caller_payers_7d'))} paid the receiving account this week right after "
            "a call from an unknown number that also called another of its payers"
        ),
    },
)

WINDOW_CHANNELS: tuple[WindowChannel, ...] = (
    WindowChannel("calls", S_CALLS, False, lambda v, w: f"received {v:.0f} calls {w}"),
    WindowChannel(
        "stranger_talks",
        S_STRANGER_TALKS,
        False,
        lambda v, w: f"had {v:.0f} conversations of 2 min or more with {NEW_NUMBERS} {w}",
    ),
    WindowChannel("stranger_calls", S_STRANGER, False, lambda v, w: f"received {v:.0f} calls from {NEW_NUMBERS} {w}"),
    WindowChannel(
        "stranger_talk_s", S_STRANGER_TALK, False, lambda v, w: f"talked {minutes(v)} with {NEW_NUMBERS} {w}"
    ),
    WindowChannel(
        "sweeper_talk_s",
        S_SWEEPER_TALK,
        False,
        lambda v, w: f"talked {minutes(v)} with {SWEEPING_NUMBERS} {w}",
    ),
    WindowChannel(
        "long_stranger_calls",
        S_LONG_STRANGER,
        False,
        lambda v, w: f"had {v:.0f} calls of 10 min or more with {NEW_NUMBERS} {w}",
    ),
    WindowChannel("transfers", S_TRANSFERS, False, lambda v, w: f"made {v:.0f} transfers {w}"),
    WindowChannel("amount", S_AMOUNT, True, lambda v, w: f"transferred ¥{v:,.0f} in all {w}"),
    WindowChannel("new_payees", S_NEW_PAYEE, False, lambda v, w: f"paid {v:.0f} new payees {w}"),
    WindowChannel("new_payee_amount", S_NEW_PAYEE_AMOUNT, True, lambda v, w: f"sent ¥{v:,.0f} to new payees {w}"),
)
_WINDOW_PHRASES = dict(
    zip(WINDOW_NAMES, ("in the last 10 min", "in the last hour", "in the last 24 h", "in the last 7 days"), strict=True)
)


def _window_sentence(name: str, channel: WindowChannel, phrase: str) -> Sentence:
    return lambda r: channel.template(_v(r, name), phrase)


# Window-major: every channel of the 10 min window, then of the hour, and so on.
_WINDOWS = _block(
    "windows",
    [
        (f"sub_{ch.name}_{window}", _window_sentence(f"sub_{ch.name}_{window}", ch, _WINDOW_PHRASES[window]))
        for window in WINDOW_NAMES
        for ch in WINDOW_CHANNELS
    ],
)

_SUBSCRIBER = _block(
    "subscriber",
    [
        (
            "sub_longest_stranger_call_24h_s",
            lambda r: (
                f"longest call with an unknown number today lasted {minutes(_v(r, 'sub_longest_stranger_call_24h_s'))}"
            ),
        ),
        (
            "sub_stranger_talk_share_24h",
            lambda r: (
                f"{_v(r, 'sub_stranger_talk_share_24h'):.0%} of this person's talk time in the last 24 h was with "
                f"{NEW_NUMBERS}"
            ),
        ),
    ],
)

# The subscriber's latest suspicious call (``SubscriberState.last_suspicious``) and what is known of its caller.
_SUSPICIOUS = _block(
    "suspicious",
    [
        (
            "since_suspicious_call_s",
            lambda r: f"a suspicious call ended {minutes(_v(r, 'since_suspicious_call_s'))} ago",
        ),
        (
            "suspicious_caller_calls",
            lambda r: f"took {_v(r, 'suspicious_caller_calls'):.0f} calls from the same unknown number",
        ),
        (
            "suspicious_caller_talk_s",
            lambda r: (
                f"has talked {minutes(_v(r, 'suspicious_caller_talk_s'))} in total with the last suspicious number, "
                "first seen today"
            ),
        ),
        (
            "suspicious_caller_fanout_24h",
            lambda r: (
                f"the last suspicious number to call this person rang {_v(r, 'suspicious_caller_fanout_24h'):.0f} "
                "different people that day"
            ),
        ),
        (
            "suspicious_caller_short_share_24h",
            lambda r: (
                f"{_v(r, 'suspicious_caller_short_share_24h'):.0%} of the people who answered the last suspicious "
                "number that day hung up within 30 s"
            ),
        ),
        (
            "suspicious_caller_paid_callees_7d",
            lambda r: (
                f"{people(_v(r, 'suspicious_caller_paid_callees_7d'))} who talked with the same unknown number "
                "this week then paid someone new"
            ),
        ),
        (
            "suspicious_caller_reported",
            lambda r: (
                "the last suspicious number to call this person is named in a police report as a fraud line"
                if _v(r, "suspicious_caller_reported")
                else "no police report names the last suspicious number"
            ),
        ),
    ],
)

# What is on the line now (signalling): the open call the block describes is the one with a number first seen
# today that has lasted longest, else the longest open call. All NaN/0 on a stream without signalling.
_ON_CALL = _block(
    "on_call",
    [
        (
            "is_call_start",
            lambda r: (
                "a call has just connected" if _v(r, "is_call_start") else "the warning rests on a finished event"
            ),
        ),
        (
            "oncall_calls",
            lambda r: f"is on {_v(r, 'oncall_calls'):.0f} call(s) right now",
        ),
        (
            "oncall_stranger",
            lambda r: (
                "is on a call right now with a number first seen today"
                if _v(r, "oncall_stranger")
                else "is not on a call with a new number right now"
            ),
        ),
        (
            "oncall_elapsed_s",
            lambda r: f"the call on the line now has lasted {minutes(_v(r, 'oncall_elapsed_s'))} so far",
        ),
        (
            "oncall_caller_fanout_24h",
            lambda r: f"the number on the line now rang {_v(r, 'oncall_caller_fanout_24h'):.0f} different people today",
        ),
        (
            "oncall_caller_short_share_24h",
            lambda r: (
                f"{_v(r, 'oncall_caller_short_share_24h'):.0%} of the people who answered the number on the line "
                "now hung up within 30 s"
            ),
        ),
        (
            "oncall_caller_paid_callees_7d",
            lambda r: (
                f"{people(_v(r, 'oncall_caller_paid_callees_7d'))} who talked with the number on the line now this "
                "week then paid someone new"
            ),
        ),
        (
            "oncall_caller_age_s",
            lambda r: (
                f"the number on the line now first appeared {span(_v(r, 'oncall_caller_age_s'))} ago"
                if _v(r, "oncall_caller_age_s") >= 60
                else "the number on the line now was never seen before this call"
            ),
        ),
        (
            "oncall_reported",
            lambda r: (
                "is on a call right now with a number a police report names as a fraud line"
                if _v(r, "oncall_reported")
                else "is on no call with a reported number right now"
            ),
        ),
    ],
)

BLOCKS: tuple[Block, ...] = (
    _EVENT,
    _CALL,
    _CALLER,
    _CALL_VS_CALLER,
    _TRANSFER,
    _PAYEE,
    _WINDOWS,
    _SUBSCRIBER,
    _SUSPICIOUS,
    _ON_CALL,
)
BLOCK_NAMES: dict[str, tuple[str, ...]] = {b.name: b.names for b in BLOCKS}
FEATURES: tuple[Feature, ...] = tuple(f for b in BLOCKS for f in b.features)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.categorical)
if len(FEATURE_INDEX) != len(FEATURE_NAMES):
    raise RuntimeError("a feature name is declared twice")


def jsonable(value: Any) -> Any:
    """A parameter as plain JSON: sets sorted into lists, tuples as lists, mappings with string keys."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


# What a model's meta stores at training, so a mismatch can name the parameter that changed.
PARAMETERS_JSON: dict[str, Any] = {name: jsonable(value) for name, value in PARAMETERS.items()}


def features_hash(names: Sequence[str], parameters: Mapping[str, Any]) -> str:
    """The hash of a feature set: its names in order and its parameters (as stable JSON)."""
    doc = {"names": list(names), "parameters": {k: jsonable(v) for k, v in parameters.items()}}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FEATURES_HASH = features_hash(FEATURE_NAMES, PARAMETERS)


def describe_change(names: Sequence[str] | None, parameters: Mapping[str, Any] | None) -> str:
    """What differs between a model's stored feature names and parameters and the current ones ("" if unknown)."""
    out: list[str] = []
    if parameters is not None:
        for key in sorted(set(parameters) | set(PARAMETERS_JSON)):
            old, new = parameters.get(key), PARAMETERS_JSON.get(key)
            if key not in parameters:
                out.append(f"{key} is new ({json.dumps(new)})")
            elif key not in PARAMETERS_JSON:
                out.append(f"{key} is gone (was {json.dumps(old)})")
            elif jsonable(old) != new:
                out.append(f"{key} was {json.dumps(old)}, now {json.dumps(new)}")
    if names is not None and list(names) != list(FEATURE_NAMES):
        added = [n for n in FEATURE_NAMES if n not in names]
        removed = [n for n in names if n not in FEATURE_INDEX]
        if added:
            out.append(f"features added: {', '.join(added)}")
        if removed:
            out.append(f"features removed: {', '.join(removed)}")
        if not added and not removed:
            out.append("the same features in another order")
    return "; ".join(out)
