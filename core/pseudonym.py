"""Keyed pseudonyms for personal data (phone numbers, account ids) in logs and metric labels."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from core.settings import get_settings

__all__ = ["pseudonymise"]


@lru_cache(maxsize=65_536)
def _digest(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


def pseudonymise(value: str, key: bytes | None = None) -> str:
    """A stable 16-hex-digit keyed HMAC of ``value``; not reversible without the key."""
    if key is None:
        key = get_settings().pseudonym_key.get_secret_value().encode()
    return "p_" + _digest(key, value)
