"""Plain-language reasons for an alert, from the features that pushed its score up the most."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from features.state import KIND_CODES, PAYEE_AGE_CAP_S
from features.vector import FEATURE_INDEX, FEATURE_NAMES

_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}


def _v(row: Sequence[float], name: str) -> float:
    value = row[FEATURE_INDEX[name]]
    return 0.0 if value != value else value  # NaN -> 0 for wording


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def _people(n: float) -> str:
    return "1 person" if round(n) == 1 else f"{n:.0f} people"


def _age(seconds: float) -> str:
    if seconds >= PAYEE_AGE_CAP_S:
        return f"at least {PAYEE_AGE_CAP_S / 86_400:.0f} days"  # the feature is capped there
    if seconds < 3600:
        return _minutes(seconds)
    if seconds < 86_400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} days"


def _kind(row: Sequence[float], name: str) -> str:
    value = row[FEATURE_INDEX[name]]
    return _KIND_NAMES.get(int(value), "unknown") if value == value else "unknown"


_SENTENCES: dict[str, Callable[[Sequence[float]], str]] = {
    "call_duration_s": lambda r: (
        f"took a {_minutes(_v(r, 'call_duration_s'))} call"
        + (" from a number first seen today" if _v(r, "caller_is_stranger") else "")
    ),
    "call_kind": lambda r: f"was called from a {_kind(r, 'call_kind')} number",
    "caller_fanout_24h": lambda r: f"the calling number rang {_v(r, 'caller_fanout_24h'):.0f} different people today",
    "caller_fanout_1h": lambda r: f"the calling number rang {_v(r, 'caller_fanout_1h'):.0f} people in the last hour",
    "caller_short_ratio_24h": lambda r: (
        f"{_v(r, 'caller_short_ratio_24h'):.0%} of the calling number's calls today were short or unanswered"
    ),
    "caller_short_ratio_7d": lambda r: (
        f"{_v(r, 'caller_short_ratio_7d'):.0%} of the calling number's calls this week were short or unanswered"
    ),
    "caller_calls_7d": lambda r: f"the calling number made {_v(r, 'caller_calls_7d'):.0f} calls this week",
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
    "call_vs_caller_usual_talk": lambda r: (
        f"the call was {_v(r, 'call_vs_caller_usual_talk'):.0f} times longer than the calling number's usual calls"
    ),
    "amount": lambda r: (
        f"started a ¥{_v(r, 'amount'):,.0f} transfer" + (" to a new payee" if _v(r, "payee_new") else "")
    ),
    "amount_z": lambda r: "the transfer is far larger than this person's usual amounts",
    "amount_vs_usual": lambda r: "the transfer is far larger than this person's usual amounts",
    "payee_new": lambda r: "the payee account was never paid before",
    "transfer_after_suspicious_call": lambda r: "the transfer started within 30 min of a suspicious call",
    "since_suspicious_call_s": lambda r: f"a suspicious call ended {_minutes(_v(r, 'since_suspicious_call_s'))} ago",
    "suspicious_caller_talk_s": lambda r: (
        f"has talked {_minutes(_v(r, 'suspicious_caller_talk_s'))} in total "
        f"with a {_kind(r, 'suspicious_caller_kind')} number first seen today"
    ),
    "suspicious_caller_calls": lambda r: (
        f"took {_v(r, 'suspicious_caller_calls'):.0f} calls from the same unknown number"
    ),
    "caller_paid_callees_24h": lambda r: (
        f"{_people(_v(r, 'caller_paid_callees_24h'))} who talked with the calling number today then paid someone new"
    ),
    "caller_paid_callees_7d": lambda r: (
        f"{_people(_v(r, 'caller_paid_callees_7d'))} who talked with the calling number this week then paid someone new"
    ),
    "caller_paid_share_7d": lambda r: (
        f"{_v(r, 'caller_paid_share_7d'):.0%} of the people the calling number rang this week "
        "paid someone new soon after"
    ),
    "suspicious_caller_paid_callees_7d": lambda r: (
        f"{_people(_v(r, 'suspicious_caller_paid_callees_7d'))} who talked with the same unknown number "
        "this week then paid someone new"
    ),
    "payee_payers_24h": lambda r: f"the receiving account was paid by {_people(_v(r, 'payee_payers_24h'))} today",
    "payee_payers_7d": lambda r: f"the receiving account was paid by {_people(_v(r, 'payee_payers_7d'))} this week",
    "payee_new_payers_24h": lambda r: (
        f"{_people(_v(r, 'payee_new_payers_24h'))} paid the receiving account for the first time today"
    ),
    "payee_new_payers_7d": lambda r: (
        f"{_people(_v(r, 'payee_new_payers_7d'))} paid the receiving account for the first time this week"
    ),
    "payee_amount_24h": lambda r: f"the receiving account took in ¥{_v(r, 'payee_amount_24h'):,.0f} today",
    "payee_age_s": lambda r: f"the receiving account first appeared {_age(_v(r, 'payee_age_s'))} ago",
    "payee_flagged_payers_7d": lambda r: (
        f"{_people(_v(r, 'payee_flagged_payers_7d'))} paid the receiving account this week "
        "right after a call from an unknown number"
    ),
    "payee_flagged_share_7d": lambda r: (
        f"{_v(r, 'payee_flagged_share_7d'):.0%} of this week's payers of the receiving account paid "
        "right after a call from an unknown number"
    ),
    "sub_longest_stranger_call_24h_s": lambda r: (
        f"longest call with an unknown number today lasted {_minutes(_v(r, 'sub_longest_stranger_call_24h_s'))}"
    ),
}


def _generic(name: str, row: Sequence[float]) -> str:
    label = name.replace("sub_", "").replace("_", " ")
    return f"unusual {label}: {_v(row, name):,.0f}"


def reasons(row: Sequence[float], contributions: np.ndarray, top: int = 3) -> list[str]:
    """The ``top`` positive contributors to the score, each as a sentence an officer can read aloud."""
    order = np.argsort(-contributions)
    out: list[str] = []
    for idx in order:
        if contributions[idx] <= 0 or len(out) >= top:
            break
        value = row[idx]
        if value != value:
            # Missing (e.g. a call's fields on a transfer row): nothing to say about it in words,
            # and wording it would claim "a 0 min call" or "a suspicious call 0 min ago".
            continue
        name = FEATURE_NAMES[idx]
        render = _SENTENCES.get(name)
        sentence = render(row) if render else _generic(name, row)
        if sentence not in out:
            out.append(sentence)
    return out
