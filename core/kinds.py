"""The one registry of event kinds: adding a kind is one :class:`EventKind` entry here.

An entry names the schema, the dataclass (``core.events``), its validator (``core.validators``) and the
settings field of the input topic it arrives on. Decoding, dead-lettering and the compact wire form of the
internal hops all read the registry. Stages act on a kind through a :class:`Handlers` table: a stage with no
handler for a kind ignores its events by construction, so a new kind breaks nothing that does not know it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Generic, Protocol, TypeVar

from core.errors import InvalidEvent
from core.events import CallEvent, CallStartEvent, ReportEvent, TransferEvent
from core.validators import call_start_v1, call_v1, case_report_v1, transfer_v1

__all__ = [
    "KINDS",
    "EventKind",
    "EventLike",
    "Handlers",
    "from_wire",
    "kind_of",
    "registered",
    "to_wire",
]


class EventLike(Protocol):
    """What every event kind offers the stages."""

    @property
    def event_id(self) -> str: ...
    @property
    def ts_ms(self) -> int: ...
    @property
    def subscriber(self) -> str: ...
    @property
    def available_ms(self) -> int: ...
    @property
    def schema(self) -> str: ...


@dataclass(frozen=True)
class EventKind:
    """One event kind of the contract."""

    schema: str  # the ``schema`` field's value, e.g. "call.v1"
    type: type[Any]  # its frozen dataclass; field order is the wire form's order
    validate: Callable[[dict[str, Any]], Any]  # parsed JSON -> event, or raises InvalidEvent
    topic_setting: str  # the Settings field naming the input topic it arrives on

    def wire_fields(self) -> tuple[str, ...]:
        """The dataclass fields carried on the internal hops (all but the constant ``schema``)."""
        return tuple(f.name for f in fields(self.type) if f.name != "schema")


KINDS: dict[str, EventKind] = {}
_BY_TYPE: dict[type[Any], EventKind] = {}
_WIRE: dict[str, tuple[type[Any], tuple[str, ...]]] = {}


def _add(kind: EventKind) -> None:
    if kind.schema in KINDS:
        raise ValueError(f"event kind {kind.schema} is registered twice")
    KINDS[kind.schema] = kind
    _BY_TYPE[kind.type] = kind
    _WIRE[kind.schema] = (kind.type, kind.wire_fields())


@contextmanager
def registered(kind: EventKind) -> Iterator[EventKind]:
    """Register ``kind`` for the duration of a block (tests and plug-ins); removed again on exit."""
    _add(kind)
    try:
        yield kind
    finally:
        del KINDS[kind.schema], _BY_TYPE[kind.type], _WIRE[kind.schema]


def kind_of(event: Any) -> EventKind:
    """The registered kind of an event object."""
    return _BY_TYPE[type(event)]


def validate_obj(obj: dict[str, Any]) -> Any:
    """Validate a parsed JSON object by its ``schema`` field."""
    schema = obj.get("schema")
    kind = KINDS.get(schema) if type(schema) is str else None
    if kind is None:
        if schema is None:
            raise InvalidEvent("missing_field", "schema")
        raise InvalidEvent("unknown_schema", str(schema)[:40])
    return kind.validate(obj)


def to_wire(event: Any) -> list[Any]:
    """The compact, already-validated form of an event for the internal hops: ``[schema, *fields]``."""
    schema = event.schema
    _, names = _WIRE[schema]
    return [schema, *(getattr(event, name) for name in names)]


def from_wire(values: list[Any]) -> Any:
    """The event of a :func:`to_wire` list, trusted as it was validated at ingest."""
    cls, _ = _WIRE[values[0]]
    return cls(*values[1:])


H = TypeVar("H")


class Handlers(Generic[H]):
    """A stage's handler per event type; :meth:`get` is None for a kind the stage does not handle."""

    def __init__(self, handlers: Mapping[type[Any], H]) -> None:
        self._handlers = dict(handlers)

    def get(self, event: Any) -> H | None:
        """The handler for this event's type, or None (the stage ignores the event)."""
        return self._handlers.get(type(event))


_add(EventKind("call.v1", CallEvent, call_v1, "calls_topic"))
_add(EventKind("transfer.v1", TransferEvent, transfer_v1, "transfers_topic"))
_add(EventKind("call_start.v1", CallStartEvent, call_start_v1, "call_starts_topic"))
# Police reports: the victim's case as the police recorded it, on a topic of its own (``features.steps``).
_add(EventKind("case.v1", ReportEvent, case_report_v1, "reports_topic"))
