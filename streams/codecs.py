"""Faust codecs that store feature state compactly (orjson) in the changelogged tables."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs

from features import SubscriberState, state_from_obj

__all__ = ["CALLER_CODEC", "SUBSCRIBER_CODEC", "register"]


class _CallerCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj.to_obj())

    def _loads(self, s: bytes) -> Any:
        return state_from_obj(orjson.loads(s))  # calling numbers and payee accounts share the caller table


class _SubscriberCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj.to_obj())

    def _loads(self, s: bytes) -> Any:
        return SubscriberState.from_obj(orjson.loads(s))


CALLER_CODEC = "fw_caller_state"
SUBSCRIBER_CODEC = "fw_subscriber_state"


def register() -> None:
    """Make the state codecs known to Faust by name (idempotent)."""
    codecs.register(CALLER_CODEC, _CallerCodec())
    codecs.register(SUBSCRIBER_CODEC, _SubscriberCodec())
