"""Plain-language reasons for an alert, from the features that pushed its score up the most."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from features.clock import WINDOW_NAMES
from features.state import CHANNEL_CODES, KIND_CODES, PAYEE_AGE_CAP_S
from features.vector import FEATURE_INDEX, FEATURE_NAMES

_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}
_CHANNEL_PHRASES = {
    "mobile_app": "the mobile banking app",
    "online_bank": "online banking",
    "atm": "an ATM",
    "counter": "a bank counter",
    "third_party": "a third-party payment service",
}
_CHANNEL_NAMES = {code: _CHANNEL_PHRASES.get(name, name.replace("_", " ")) for name, code in CHANNEL_CODES.items()}
# "Suspicious kinds" in the features (SUSPICIOUS_KINDS), as an officer would say them.
_SUSPICIOUS_KINDS = "overseas or internet numbers"
# A "stranger" is a number first seen with this subscriber less than a day before the call.
_NEW_NUMBERS = "numbers new to this person"
_WINDOW_PHRASES = dict(
    zip(WINDOW_NAMES, ("in the last 10 min", "in the last hour", "in the last 24 h", "in the last 7 days"), strict=True)
)


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
    return _span(seconds)


def _span(seconds: float) -> str:
    if seconds < 3600:
        return _minutes(seconds)
    if seconds < 86_400:
        return f"{seconds / 3600:.0f} h"
    days = round(seconds / 86_400)
    return "1 day" if days == 1 else f"{days} days"


def _transfer_started(row: Sequence[float]) -> str:
    return f"started a ¥{_v(row, 'amount'):,.0f} transfer" + (" to a new payee" if _v(row, "payee_new") else "")


def _kind(row: Sequence[float], name: str) -> str:
    """The number kind in a feature, with its article: "an overseas", "a mobile"."""
    value = row[FEATURE_INDEX[name]]
    kind = _KIND_NAMES.get(int(value), "unknown") if value == value else "unknown"
    if kind == "voip":
        return "an internet (VoIP)"
    return ("an " if kind[0] in "aeiou" else "a ") + kind


_SENTENCES: dict[str, Callable[[Sequence[float]], str]] = {
    "call_duration_s": lambda r: (
        f"took a {_minutes(_v(r, 'call_duration_s'))} call"
        + (" from a number first seen today" if _v(r, "caller_is_stranger") else "")
    ),
    "is_call": lambda r: (
        "the warning rests on a phone call" if _v(r, "is_call") else ("the warning rests on a money transfer")
    ),
    "local_hour": lambda r: f"it happened at {_v(r, 'local_hour'):02.0f}:00 local time",
    "is_night": lambda r: "it happened at night, before 6 am" if _v(r, "is_night") else "it happened in the daytime",
    "call_answered": lambda r: "the call was answered" if _v(r, "call_answered") else "the call was not answered",
    "call_kind_suspicious": lambda r: (
        "the call came from an overseas or internet number"
        if _v(r, "call_kind_suspicious")
        else "the call came from an ordinary mobile or landline number"
    ),
    "caller_is_stranger": lambda r: (
        "the calling number was new to this person"
        if _v(r, "caller_is_stranger")
        else "this person knew the calling number"
    ),
    "caller_known_for_s": lambda r: (
        f"this person first heard from the calling number {_span(_v(r, 'caller_known_for_s'))} ago"
        if _v(r, "caller_known_for_s") >= 60
        else "this was the first call this person had from the calling number"
    ),
    "caller_calls_with_sub": lambda r: (
        f"has had {_v(r, 'caller_calls_with_sub'):.0f} calls from the calling number so far"
    ),
    "caller_talk_with_sub_s": lambda r: (
        f"has talked {_minutes(_v(r, 'caller_talk_with_sub_s'))} in total with the calling number"
    ),
    "caller_fanout_7d": lambda r: f"the calling number rang {_v(r, 'caller_fanout_7d'):.0f} different people this week",
    "caller_calls_24h": lambda r: f"the calling number made {_v(r, 'caller_calls_24h'):.0f} calls today",
    "caller_unanswered_ratio_24h": lambda r: (
        f"{_v(r, 'caller_unanswered_ratio_24h'):.0%} of the calling number's calls today went unanswered"
    ),
    "caller_long_calls_24h": lambda r: (
        f"the calling number had {_v(r, 'caller_long_calls_24h'):.0f} calls of 10 min or more today"
    ),
    "caller_age_s": lambda r: (
        f"the calling number first appeared {_span(_v(r, 'caller_age_s'))} ago"
        if _v(r, "caller_age_s") >= 60
        else "the calling number was never seen before this call"
    ),
    "sub_stranger_talk_share_24h": lambda r: (
        f"{_v(r, 'sub_stranger_talk_share_24h'):.0%} of this person's talk time in the last 24 h was with "
        f"{_NEW_NUMBERS}"
    ),
    "suspicious_caller_fanout_24h": lambda r: (
        f"the last suspicious number to call this person rang {_v(r, 'suspicious_caller_fanout_24h'):.0f} "
        "different people that day"
    ),
    "suspicious_caller_kind": lambda r: (
        f"the last suspicious call came from {_kind(r, 'suspicious_caller_kind')} number"
    ),
    "call_kind": lambda r: f"was called from {_kind(r, 'call_kind')} number",
    "caller_fanout_24h": lambda r: f"the calling number rang {_v(r, 'caller_fanout_24h'):.0f} different people today",
    "caller_fanout_1h": lambda r: f"the calling number rang {_v(r, 'caller_fanout_1h'):.0f} people in the last hour",
    "caller_short_ratio_24h": lambda r: (
        f"{_v(r, 'caller_short_ratio_24h'):.0%} of the calling number's calls today were short or unanswered"
    ),
    "caller_short_ratio_7d": lambda r: (
        f"{_v(r, 'caller_short_ratio_7d'):.0%} of the calling number's calls this week were short or unanswered"
    ),
    "caller_calls_7d": lambda r: f"the calling number made {_v(r, 'caller_calls_7d'):.0f} calls this week",
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
    "call_vs_caller_usual_talk": lambda r: (
        f"the call was {_v(r, 'call_vs_caller_usual_talk'):.0f} times longer than the calling number's usual calls"
    ),
    "amount": _transfer_started,
    "amount_log": _transfer_started,  # the same amount on a log scale: the same sentence
    "channel": lambda r: f"the transfer was made through {_CHANNEL_NAMES.get(int(_v(r, 'channel')), 'a bank')}",
    "prior_transfers": lambda r: f"had made {_v(r, 'prior_transfers'):.0f} transfers before this one",
    "amount_z": lambda r: "the transfer is far larger than this person's usual amounts",
    "amount_vs_usual": lambda r: "the transfer is far larger than this person's usual amounts",
    "payee_new": lambda r: "the payee account was never paid before",
    "transfer_after_suspicious_call": lambda r: "the transfer started within 30 min of a suspicious call",
    "since_suspicious_call_s": lambda r: f"a suspicious call ended {_minutes(_v(r, 'since_suspicious_call_s'))} ago",
    "suspicious_caller_talk_s": lambda r: (
        f"has talked {_minutes(_v(r, 'suspicious_caller_talk_s'))} in total "
        f"with {_kind(r, 'suspicious_caller_kind')} number first seen today"
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


def _window_sentences() -> dict[str, Callable[[Sequence[float]], str]]:
    """Sentences for the subscriber's rolling windows (``sub_<channel>_<window>``), one per window."""
    # Each template gets the feature's value and the window's phrase, e.g. "in the last hour".
    templates: dict[str, Callable[[float, str], str]] = {
        "calls": lambda v, w: f"received {v:.0f} calls {w}",
        "suspicious_kind_calls": lambda v, w: f"received {v:.0f} calls from {_SUSPICIOUS_KINDS} {w}",
        "stranger_calls": lambda v, w: f"received {v:.0f} calls from {_NEW_NUMBERS} {w}",
        "stranger_talk_s": lambda v, w: f"talked {_minutes(v)} with {_NEW_NUMBERS} {w}",
        "suspicious_kind_talk_s": lambda v, w: f"talked {_minutes(v)} with {_SUSPICIOUS_KINDS} {w}",
        "long_stranger_calls": lambda v, w: f"had {v:.0f} calls of 10 min or more with {_NEW_NUMBERS} {w}",
        "transfers": lambda v, w: f"made {v:.0f} transfers {w}",
        "amount": lambda v, w: f"transferred ¥{v:,.0f} in all {w}",
        "new_payees": lambda v, w: f"paid {v:.0f} new payees {w}",
        "new_payee_amount": lambda v, w: f"sent ¥{v:,.0f} to new payees {w}",
    }
    out: dict[str, Callable[[Sequence[float]], str]] = {}
    for window, phrase in _WINDOW_PHRASES.items():
        for channel, template in templates.items():
            name = f"sub_{channel}_{window}"

            def render(
                r: Sequence[float], name: str = name, t: Callable[[float, str], str] = template, w: str = phrase
            ) -> str:
                return t(_v(r, name), w)

            out[name] = render
    return out


_SENTENCES.update(_window_sentences())


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
