"""Every constant that shapes a feature value, defined once.

``features.registry`` hashes all of them (with the feature names) into ``FEATURES_HASH``: a model trained
with other values refuses to load. The time units are not parameters, so they are left out of the hash.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CALLER_MAX_ENTRIES",
    "CALL_TICK_MARKS_S",
    "CHANNEL_CODES",
    "DAY_MS",
    "DEDUP_IDS",
    "ENDED_CALL_IDS",
    "FEEDBACK_DELAY_MS",
    "FLAG_MAX_ENTRIES",
    "FLAG_SPANS_MS",
    "FLAG_STRANGER_TALK_1H_S",
    "HOUR_MS",
    "KIND_CODES",
    "LOCAL_OFFSET_MS",
    "LONG_CALL_S",
    "MAX_CONTACTS",
    "MAX_FEEDBACK_CALLERS",
    "MAX_OPEN_CALLS",
    "MAX_PAYEES",
    "MAX_PAYERS",
    "MAX_PENDING",
    "MINUTE_MS",
    "NEW_PAYEE_MS",
    "NIGHT_BEFORE_HOUR",
    "OPEN_CALL_TIMEOUT_MS",
    "PAID_AFTER_CALL_MS",
    "PAID_MIN_TALK_S",
    "PARAMETERS",
    "PAYEE_AGE_CAP_S",
    "PAYEE_MAX_ENTRIES",
    "REPORT_KEEP_MS",
    "SHORT_CALL_S",
    "STRANGER_MS",
    "STRANGER_TALK_MIN_S",
    "SUBSCRIBER_MAX_ENTRIES",
    "SUSPICIOUS_FANOUT_24H",
    "SUSPICIOUS_FOLLOW_MS",
    "SUSPICIOUS_TALK_S",
    "SWEEP_SHORT_SHARE",
    "WINDOW_NAMES",
    "WINDOW_SPANS_MS",
]

# -- units (not parameters) ----------------------------------------------------------------------
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
_UNITS = frozenset({"MINUTE_MS", "HOUR_MS", "DAY_MS"})

# -- time ------------------------------------------------------------------------------------------
WINDOW_SPANS_MS: tuple[int, ...] = (10 * MINUTE_MS, HOUR_MS, DAY_MS, 7 * DAY_MS)
WINDOW_NAMES: tuple[str, ...] = ("10m", "1h", "24h", "7d")
# The city's local offset; night-time is judged on local hours.
LOCAL_OFFSET_MS = 8 * HOUR_MS
NIGHT_BEFORE_HOUR = 6  # ``is_night``: a local hour before this one

# -- calls -----------------------------------------------------------------------------------------
KIND_CODES = {"mobile": 0, "landline": 1, "overseas": 2, "virtual": 3, "voip": 4, "unknown": 5}
CHANNEL_CODES = {"mobile_app": 0, "online_bank": 1, "atm": 2, "counter": 3, "third_party": 4}
LONG_CALL_S = 600
SHORT_CALL_S = 30
SUSPICIOUS_TALK_S = 300
# No feature reads the number kind (overseas, virtual, VoIP...): where most scam calls come from plain mobile
# numbers, a kind learnt on this simulator's ring lines ranks the victims low. What a ring line does is read
# instead: a conversation (answered, this long or more) with a stranger, and talk with a stranger whose
# answered calls today were mostly (this share or more) under SHORT_CALL_S, i.e. a line sweeping the city.
STRANGER_TALK_MIN_S = 120
SWEEP_SHORT_SHARE = 0.5
# A suspicious call also comes from a stranger who rang this many people in the last 24 h.
SUSPICIOUS_FANOUT_24H = 20
# A "stranger" (a number, to a subscriber) and a "new" payee (to a payer, or a payer to a payee) were first
# seen less than this long before.
STRANGER_MS = DAY_MS
NEW_PAYEE_MS = DAY_MS
# A transfer this soon after a suspicious call is ``transfer_after_suspicious_call``.
SUSPICIOUS_FOLLOW_MS = 30 * MINUTE_MS

# -- calls on the line now (signalling, ``call_start.v1``) ---------------------------------------------
# A call whose ending record never came (a lost message) is closed this long of event time after it connected:
# long enough for the longest scam calls (hours of a fake police "investigation"), short enough that a lost
# record does not keep a person "on a call" for the rest of the week.
OPEN_CALL_TIMEOUT_MS = 4 * HOUR_MS
MAX_OPEN_CALLS = 8  # a person on more calls at once is a switchboard; the oldest are dropped
# Calls that ended, remembered so a signalling message arriving after its call record opens nothing.
ENDED_CALL_IDS = 64
# A call still on the line this many seconds (event time) after it connected is scored again ("tick"), so a
# warning can go out before it ends. Ascending, and all well inside OPEN_CALL_TIMEOUT_MS.
CALL_TICK_MARKS_S: tuple[int, ...] = (300, 600, 1200)

# -- bounded memory per key: a cap that is reached changes values --------------------------------
DEDUP_IDS = 512
MAX_CONTACTS = 512
MAX_PAYEES = 256
MAX_PAYERS = 512
MAX_PENDING = 256
CALLER_MAX_ENTRIES = 4000
PAYEE_MAX_ENTRIES = 4000
FLAG_MAX_ENTRIES = 1000
SUBSCRIBER_MAX_ENTRIES = 2000

# -- feedback between keys -------------------------------------------------------------------------
# Feedback (a fact about a caller or payee learnt on a subscriber's partition) counts only from this much event
# time after the transfer that produced it. The feedback takes a hop through the broker; as long as that hop is
# faster than this delay, every worker sees it at the same event time as the offline engine, so rows match
# exactly. A slower hop (a backlog) only delays it: the entry is then counted late and the state converges.
FEEDBACK_DELAY_MS = 30 * MINUTE_MS
FLAG_SPANS_MS: tuple[int, ...] = (DAY_MS, 7 * DAY_MS)
PAYEE_AGE_CAP_S = 3 * DAY_MS / 1000
# Feedback to a caller: a callee paid a new payee within this long after its last call with the caller,
# the caller was a stranger at that call (first seen less than a day before it) and they talked this long.
PAID_AFTER_CALL_MS = DAY_MS
PAID_MIN_TALK_S = 60
MAX_FEEDBACK_CALLERS = 4
# Feedback to a payee: the payer had this much stranger talk in the last hour, or a suspicious call within
# ``SUSPICIOUS_FOLLOW_MS``, before paying.
FLAG_STRANGER_TALK_1H_S = 120
# A police report names its ring's lines: each counts as reported from the report's time plus
# ``FEEDBACK_DELAY_MS`` (the same hop), and its state is kept this long after it even while the line is silent.
REPORT_KEEP_MS = 60 * DAY_MS


# Collected rather than listed, so a constant added above is hashed without a second edit.
PARAMETERS: dict[str, Any] = {
    name: value
    for name, value in sorted(globals().items())
    if name.isupper() and not name.startswith("_") and name not in _UNITS
}
