"""The bytes a feature state is kept as, in the tables and on their changelogs.

A state at rest is one ``bytes`` object: a 10-byte header, then the state's orjson. The header says from when
the key may be expired and whether the subscriber has a call on the line, so the idle-key sweep and the
timers' rebuild read one byte string per key instead of decoding every state. Why bytes and not objects:
a decoded state costs 11–14 KB of Python heap (its window lists, dicts and tuples) against 0.3–0.8 KB
encoded, and the garbage collector walks every live object on each full collection (3.3 s for 220k states
measured on our 2 cores), so a worker's memory and pauses grew with its keys; bytes are never walked.

Records written before the header (the bare orjson a Faust codec wrote, always starting with ``{``) are
still read: their header is derived by decoding them.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import orjson

from features import SubscriberState, state_from_obj

__all__ = [
    "decode_key_state",
    "decode_subscriber_state",
    "encode_state",
    "has_open_calls",
    "idle_after_ms",
]

_MAGIC = 1
_HEADER = struct.Struct(">BqB")  # magic, idle-after ms, flags
_OPEN_CALLS = 1


class _Stored(Protocol):
    def to_obj(self) -> dict[str, Any]: ...

    def idle_after_ms(self) -> int: ...


def encode_state(state: _Stored) -> bytes:
    """A state as it is kept: header and orjson."""
    flags = _OPEN_CALLS if getattr(state, "open_calls", None) else 0
    return _HEADER.pack(_MAGIC, state.idle_after_ms(), flags) + orjson.dumps(state.to_obj())


def _payload(raw: bytes) -> bytes:
    return raw[_HEADER.size :] if raw[0] == _MAGIC else raw


def decode_key_state(raw: bytes) -> Any:
    """A caller-table state (calling number or payee) from its stored bytes."""
    return state_from_obj(orjson.loads(_payload(raw)))


def decode_subscriber_state(raw: bytes) -> SubscriberState:
    """A subscriber state from its stored bytes."""
    return SubscriberState.from_obj(orjson.loads(_payload(raw)))


def idle_after_ms(raw: bytes, decode: Any) -> int:
    """From when the stored key may be expired; ``decode`` reads a record without a header."""
    if raw[0] == _MAGIC:
        return int(_HEADER.unpack_from(raw)[1])
    return int(decode(raw).idle_after_ms())


def has_open_calls(raw: bytes, decode: Any) -> bool:
    """Whether the stored subscriber has a call on the line; ``decode`` reads a record without a header."""
    if raw[0] == _MAGIC:
        return bool(raw[_HEADER.size - 1] & _OPEN_CALLS)
    return bool(decode(raw).open_calls)
