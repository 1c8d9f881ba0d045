"""How feature values read aloud: durations, people, number kinds and payment channels in plain words.

Shared by the sentences declared with each feature in ``features.registry``; no feature value depends on it.
"""

from __future__ import annotations

from features.params import CHANNEL_CODES, KIND_CODES, PAYEE_AGE_CAP_S

__all__ = [
    "NEW_NUMBERS",
    "SWEEPING_NUMBERS",
    "age",
    "channel_phrase",
    "kind_phrase",
    "minutes",
    "people",
    "span",
]

# Strangers whose answered calls that day were mostly under 30 s (SWEEP_SHORT_SHARE): a line dialling the city.
SWEEPING_NUMBERS = "new numbers that most people hang up on within 30 s"
# A "stranger" is a number first seen with this subscriber less than a day before the call.
NEW_NUMBERS = "numbers new to this person"

_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}
_CHANNEL_PHRASES = {
    "mobile_app": "the mobile banking app",
    "online_bank": "online banking",
    "atm": "an ATM",
    "counter": "a bank counter",
    "third_party": "a third-party payment service",
}
_CHANNEL_NAMES = {code: _CHANNEL_PHRASES.get(name, name.replace("_", " ")) for name, code in CHANNEL_CODES.items()}


def minutes(seconds: float) -> str:
    """Seconds as whole minutes: "12 min"."""
    return f"{seconds / 60:.0f} min"


def people(n: float) -> str:
    """A count of people: "1 person", "3 people"."""
    return "1 person" if round(n) == 1 else f"{n:.0f} people"


def age(seconds: float) -> str:
    """An account's age, which the feature caps at ``PAYEE_AGE_CAP_S``: "at least 3 days" there."""
    if seconds >= PAYEE_AGE_CAP_S:
        return f"at least {PAYEE_AGE_CAP_S / 86_400:.0f} days"  # the feature is capped there
    return span(seconds)


def span(seconds: float) -> str:
    """A length of time in the largest fitting unit: "40 min", "5 h", "1 day", "3 days"."""
    if seconds < 3600:
        return minutes(seconds)
    if seconds < 86_400:
        return f"{seconds / 3600:.0f} h"
    days = round(seconds / 86_400)
    return "1 day" if days == 1 else f"{days} days"


def kind_phrase(value: float) -> str:
    """A number-kind code with its article: "an overseas", "a mobile" (NaN or unknown: "an unknown")."""
    kind = _KIND_NAMES.get(int(value), "unknown") if value == value else "unknown"
    if kind == "voip":
        return "an internet (VoIP)"
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def channel_phrase(code: float) -> str:
    """A payment-channel code in words: "the mobile banking app"."""
    return _CHANNEL_NAMES.get(int(code), "a bank")
