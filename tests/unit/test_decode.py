"""The event decoder against the contract: every rule has its reason code, and nothing else ever escapes."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.decode import MAX_EVENT_BYTES, decode, decode_obj, encode
from core.errors import InvalidEvent
from core.events import CALLER_KINDS, CHANNELS, CallEvent, TransferEvent

pytestmark = pytest.mark.unit

CALL: dict[str, Any] = {
    "schema": "call.v1",
    "event_id": "call-0001",
    "ts_ms": 1_767_225_600_000,
    "caller": "+85261234567",
    "callee": "+8613800001111",
    "answered": True,
    "duration_s": 1250.5,
    "caller_kind": "overseas",
    "callee_lat": 31.23,
    "callee_lon": 121.47,
}
TRANSFER: dict[str, Any] = {
    "schema": "transfer.v1",
    "event_id": "tr-0001",
    "ts_ms": 1_767_226_000_000,
    "subscriber": "+8613800001111",
    "payer_account": "6222000011112222",
    "payee_account": "6217999900001111",
    "amount": 48_000.25,
    "currency": "CNY",
    "channel": "online_bank",
    "lat": -33.9,
    "lon": -151.2,
}


def _raw(obj: Any) -> bytes:
    return orjson.dumps(obj)


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def _without(base: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != name}


def _reason(raw: bytes | str) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode(raw)
    return info.value.reason


# -- valid events ----------------------------------------------------------------------------------


def test_valid_call_decodes_to_call_event() -> None:
    event = decode(_raw(CALL))
    assert event == CallEvent(
        event_id="call-0001",
        ts_ms=1_767_225_600_000,
        caller="+85261234567",
        callee="+8613800001111",
        answered=True,
        duration_s=1250.5,
        caller_kind="overseas",
        callee_lat=31.23,
        callee_lon=121.47,
    )
    assert type(event) is CallEvent
    assert event.schema == "call.v1"
    assert event.subscriber == "+8613800001111"  # calls are keyed by the callee


def test_valid_transfer_decodes_to_transfer_event() -> None:
    event = decode(_raw(TRANSFER))
    assert event == TransferEvent(
        event_id="tr-0001",
        ts_ms=1_767_226_000_000,
        subscriber="+8613800001111",
        payer_account="6222000011112222",
        payee_account="6217999900001111",
        amount=48_000.25,
        currency="CNY",
        channel="online_bank",
        lat=-33.9,
        lon=-151.2,
    )
    assert type(event) is TransferEvent
    assert event.schema == "transfer.v1"


def test_optional_fields_may_be_absent_and_integers_are_numbers() -> None:
    call = decode(_raw(_with(_without(_without(CALL, "callee_lat"), "callee_lon"), duration_s=0, answered=False)))
    assert isinstance(call, CallEvent)
    assert call.callee_lat is None and call.callee_lon is None
    assert call.duration_s == 0.0 and type(call.duration_s) is float
    transfer = decode(_raw(_with(_without(_without(TRANSFER, "lat"), "lon"), amount=100)))
    assert isinstance(transfer, TransferEvent)
    assert transfer.lat is None and transfer.lon is None
    assert transfer.amount == 100.0 and type(transfer.amount) is float


def test_extra_fields_are_allowed() -> None:
    assert decode(_raw(_with(CALL, cell_id="x-17", extra={"a": [1, 2]}))) == decode(_raw(CALL))


def test_str_input_is_accepted() -> None:
    assert decode(_raw(CALL).decode()) == decode(_raw(CALL))


@pytest.mark.parametrize("obj", [CALL, TRANSFER, _without(CALL, "callee_lat"), _without(TRANSFER, "lon")])
def test_encode_decode_round_trip(obj: dict[str, Any]) -> None:
    event = decode(_raw(obj))
    again = decode(encode(event))
    assert again == event
    assert encode(again) == encode(event)
    assert None not in orjson.loads(encode(event)).values()  # unknown optionals are left out


# -- every contract rule has its reason ------------------------------------------------------------

CALL_REQUIRED = ("schema", "event_id", "ts_ms", "caller", "callee", "answered", "duration_s", "caller_kind")
TRANSFER_REQUIRED = (
    "event_id",
    "ts_ms",
    "subscriber",
    "payer_account",
    "payee_account",
    "amount",
    "currency",
    "channel",
)


@pytest.mark.parametrize("name", CALL_REQUIRED)
def test_call_missing_field(name: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_without(CALL, name)))
    assert info.value.reason == "missing_field"
    assert info.value.detail == name


@pytest.mark.parametrize("name", TRANSFER_REQUIRED)
def test_transfer_missing_field(name: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_without(TRANSFER, name)))
    assert info.value.reason == "missing_field"
    assert info.value.detail == name


@pytest.mark.parametrize(
    ("base", "name", "value"),
    [
        (CALL, "event_id", 17),
        (CALL, "ts_ms", "1767225600000"),  # string for int
        (CALL, "ts_ms", 1_767_225_600_000.0),  # float for int
        (CALL, "ts_ms", True),  # bool for int
        (CALL, "caller", 8613800001111),
        (CALL, "callee", ["+8613800001111"]),
        (CALL, "answered", 1),
        (CALL, "answered", "true"),
        (CALL, "duration_s", "60"),
        (CALL, "duration_s", True),  # bool for number
        (CALL, "duration_s", False),
        (CALL, "caller_kind", ["mobile"]),
        (CALL, "caller_kind", {"kind": "mobile"}),
        (CALL, "callee_lat", "31.2"),
        (CALL, "callee_lon", True),
        (TRANSFER, "amount", "100.00"),
        (TRANSFER, "amount", True),  # bool for number
        (TRANSFER, "ts_ms", "1"),
        (TRANSFER, "subscriber", 8613800001111),
        (TRANSFER, "payer_account", 6222000011112222),
        (TRANSFER, "payee_account", {"id": "x"}),
        (TRANSFER, "currency", 156),
        (TRANSFER, "channel", ["atm"]),
        (TRANSFER, "lat", False),
    ],
)
def test_wrong_type(base: dict[str, Any], name: str, value: Any) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_with(base, **{name: value})))
    assert info.value.reason == "wrong_type"
    assert name in info.value.detail


@pytest.mark.parametrize(
    "phone",
    ["8613800001111", "+0613800001111", "+123456", "+1234567890123456", "+86 138 0000 1111", "+86-13800001111",
     "+8613800001111\n", "＋8613800001111", "+８６13800001111", "+861380000111a", "+"],
)  # fmt: skip
@pytest.mark.parametrize(("base", "name"), [(CALL, "caller"), (CALL, "callee"), (TRANSFER, "subscriber")])
def test_bad_e164(base: dict[str, Any], name: str, phone: str) -> None:
    # Longer than any E.164 number fails the length check first.
    expected = "bad_phone" if len(phone) <= 16 else "bad_value"
    assert _reason(_raw(_with(base, **{name: phone}))) == expected


def test_shortest_and_longest_e164_are_valid() -> None:
    assert decode(_raw(_with(CALL, caller="+1234567"))).caller == "+1234567"
    assert decode(_raw(_with(CALL, callee="+123456789012345"))).callee == "+123456789012345"


@pytest.mark.parametrize("amount", [0, 0.0, -0.0, -1, -0.01, 1e12 + 1, 1e15, 1e300])
def test_bad_amount(amount: float) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_with(TRANSFER, amount=amount)))
    assert info.value.reason == "bad_value"
    assert "amount" in info.value.detail


def test_amount_bounds_are_inclusive_of_the_sane_maximum() -> None:
    assert decode(_raw(_with(TRANSFER, amount=1e12))).amount == 1e12
    assert decode(_raw(_with(TRANSFER, amount=0.01))).amount == 0.01


@pytest.mark.parametrize("duration", [86_400.001, 86_401, 1e9, -1, -0.5])
def test_bad_duration(duration: float) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_with(CALL, duration_s=duration)))
    assert info.value.reason == "bad_value"
    assert "duration_s" in info.value.detail


def test_duration_bounds_are_inclusive() -> None:
    assert decode(_raw(_with(CALL, duration_s=86_400))).duration_s == 86_400.0
    assert decode(_raw(_with(CALL, duration_s=0))).duration_s == 0.0


@pytest.mark.parametrize("kind", ["MOBILE", "satellite", "", "mobile "])
def test_unknown_caller_kind(kind: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_with(CALL, caller_kind=kind)))
    assert info.value.reason == "bad_value"
    assert "caller_kind" in info.value.detail


@pytest.mark.parametrize("channel", ["branch", "ATM", "", "mobile-app"])
def test_unknown_channel(channel: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_with(TRANSFER, channel=channel)))
    assert info.value.reason == "bad_value"
    assert "channel" in info.value.detail


@pytest.mark.parametrize("schema", ["call.v2", "transfer", "case.v2", "CALL.V1", 1, True, ["call.v1"]])
def test_unknown_schema(schema: Any) -> None:
    assert _reason(_raw(_with(CALL, schema=schema))) == "unknown_schema"


def test_missing_or_null_schema() -> None:
    assert _reason(_raw(_without(CALL, "schema"))) == "missing_field"
    assert _reason(_raw(_with(CALL, schema=None))) == "missing_field"


@pytest.mark.parametrize("value", [[CALL], "call.v1", 5, 1.5, True, None, []])
def test_not_an_object(value: Any) -> None:
    assert _reason(_raw(value)) == "not_an_object"


def test_oversized() -> None:
    big = _raw(_with(CALL, padding="x" * MAX_EVENT_BYTES))
    assert _reason(big) == "oversized"
    assert _reason(b" " * (MAX_EVENT_BYTES + 1)) == "oversized"
    # exactly at the limit is still parsed
    raw = _raw(CALL)
    assert decode(raw + b" " * (MAX_EVENT_BYTES - len(raw))) == decode(raw)


def test_oversized_honours_max_bytes_argument() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(CALL), max_bytes=10)
    assert info.value.reason == "oversized"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"schema": "call.v1", "event_id": "\xff\xfe"}',
        b"\xc3\x28",
        b'{"schema":"call.v1","event_id":"\xed\xa0\x80"}',  # UTF-8-encoded lone surrogate
        b"\x80",
    ],
)
def test_invalid_utf8(raw: bytes) -> None:
    assert _reason(raw) == "malformed_json"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"1e400", b"-1e400"])
def test_nan_and_infinity_literals(literal: bytes) -> None:
    raw = _raw(CALL).replace(b'"duration_s":1250.5', b'"duration_s":' + literal)
    assert literal in raw
    assert _reason(raw) == "malformed_json"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_from_python_objects(value: float) -> None:
    for base, name in ((CALL, "duration_s"), (TRANSFER, "amount"), (CALL, "callee_lat"), (TRANSFER, "lon")):
        with pytest.raises(InvalidEvent) as info:
            decode_obj(_with(base, **{name: value}))
        assert info.value.reason == "bad_value"


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b'{"a":1,}', b"null null", b"\x00"])
def test_malformed_json(raw: bytes) -> None:
    assert _reason(raw) == "malformed_json"


@pytest.mark.parametrize(
    ("base", "name", "value"),
    [
        (CALL, "callee_lat", 90.0001),
        (CALL, "callee_lat", -91),
        (CALL, "callee_lon", 180.5),
        (CALL, "callee_lon", -181),
        (TRANSFER, "lat", 1000),
        (TRANSFER, "lon", -180.0001),
    ],
)
def test_lat_lon_out_of_range(base: dict[str, Any], name: str, value: float) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_with(base, **{name: value})))
    assert info.value.reason == "bad_value"
    assert name in info.value.detail


def test_lat_lon_bounds_are_inclusive() -> None:
    event = decode(_raw(_with(CALL, callee_lat=-90, callee_lon=180)))
    assert isinstance(event, CallEvent)
    assert (event.callee_lat, event.callee_lon) == (-90.0, 180.0)


@pytest.mark.parametrize("ts", [-1, -1_767_225_600_000])
@pytest.mark.parametrize("base", [CALL, TRANSFER])
def test_negative_ts(base: dict[str, Any], ts: int) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_raw(_with(base, ts_ms=ts)))
    assert info.value.reason == "bad_value"
    assert "ts_ms" in info.value.detail


def test_ts_zero_is_valid_and_far_future_is_not() -> None:
    assert decode(_raw(_with(CALL, ts_ms=0))).ts_ms == 0
    assert _reason(_raw(_with(CALL, ts_ms=5_000_000_000_000))) == "bad_value"


@pytest.mark.parametrize(
    ("base", "name", "value"),
    [
        (CALL, "event_id", ""),
        (CALL, "event_id", "e" * 129),
        (TRANSFER, "payer_account", ""),
        (TRANSFER, "payee_account", "a" * 65),
        (TRANSFER, "currency", "cny"),
        (TRANSFER, "currency", "CN"),
        (TRANSFER, "currency", "CNYY"),
    ],
)
def test_bad_string_values(base: dict[str, Any], name: str, value: str) -> None:
    assert _reason(_raw(_with(base, **{name: value}))) == "bad_value"


def test_string_length_limits_are_inclusive() -> None:
    assert decode(_raw(_with(CALL, event_id="e" * 128))).event_id == "e" * 128
    assert decode(_raw(_with(TRANSFER, payee_account="a" * 64))).payee_account == "a" * 64


def test_huge_python_int_is_invalid_not_overflow() -> None:
    # decode_obj takes already-parsed values, where ints have no size limit.
    with pytest.raises(InvalidEvent) as info:
        decode_obj(_with(CALL, duration_s=10**400))
    assert info.value.reason == "bad_value"
    with pytest.raises(InvalidEvent):
        decode_obj(_with(TRANSFER, amount=-(10**400)))


def test_invalid_event_is_a_value_error_with_reason_in_message() -> None:
    with pytest.raises(ValueError, match="missing_field: ts_ms"):
        decode(_raw(_without(CALL, "ts_ms")))


# -- property-based --------------------------------------------------------------------------------

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text JSON can carry: no lone surrogates.
json_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | json_text
    | st.sampled_from(["call.v1", "transfer.v1", "+8613800001111", "mobile", "atm", "CNY"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5),
    max_leaves=25,
)
# What orjson can serialise: finite floats, 64-bit ints.
wire_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
wire_values = st.recursive(
    wire_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5),
    max_leaves=25,
)


def _decodes_or_invalid(raw: bytes | str) -> None:
    try:
        event = decode(raw)
    except InvalidEvent as exc:
        assert exc.reason
        return
    assert isinstance(event, CallEvent | TransferEvent)


@PROPS
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_invalid_event(raw: bytes) -> None:
    _decodes_or_invalid(raw)


@PROPS
@given(raw=st.text(max_size=200))
def test_arbitrary_text_only_raises_invalid_event(raw: str) -> None:
    _decodes_or_invalid(raw)


@PROPS
@given(value=json_values)
def test_arbitrary_json_values_only_raise_invalid_event(value: Any) -> None:
    with contextlib.suppress(InvalidEvent):
        decode_obj(value)
    try:
        raw = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return
    _decodes_or_invalid(raw)


@PROPS
@given(value=st.dictionaries(st.sampled_from([*CALL, *TRANSFER]), json_values, max_size=12))
def test_arbitrary_objects_with_contract_keys_only_raise_invalid_event(value: dict[str, Any]) -> None:
    value.setdefault("schema", "call.v1")
    with contextlib.suppress(InvalidEvent):
        decode_obj(value)


# Strategies that follow the JSON Schemas (within the decoder's documented sanity bounds: ts before 2100,
# amount at most 1e12).
phones = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=128)
accounts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64)
timestamps = st.integers(0, 4_102_444_800_000)


def _number(lo: float, hi: float) -> st.SearchStrategy[float | int]:
    return st.floats(lo, hi, allow_nan=False) | st.integers(math.ceil(lo), math.floor(hi))


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


extras = st.dictionaries(st.text(min_size=1, max_size=8).map(lambda s: "x_" + s), wire_values, max_size=3)


@st.composite
def call_objects(draw: st.DrawFn) -> dict[str, Any]:
    obj = {
        "schema": "call.v1",
        "event_id": draw(ids),
        "ts_ms": draw(timestamps),
        "caller": draw(phones),
        "callee": draw(phones),
        "answered": draw(st.booleans()),
        "duration_s": draw(_number(0, 86_400)),
        "caller_kind": draw(st.sampled_from(CALLER_KINDS)),
    }
    for name, limit in (("callee_lat", 90), ("callee_lon", 180)):
        value = draw(_maybe(_number(-limit, limit)))
        if value is not None:
            obj[name] = value
    return {**draw(extras), **obj}


@st.composite
def transfer_objects(draw: st.DrawFn) -> dict[str, Any]:
    amount = draw(st.floats(0, 1e12, exclude_min=True, allow_nan=False) | st.integers(1, 10**12))
    obj = {
        "schema": "transfer.v1",
        "event_id": draw(ids),
        "ts_ms": draw(timestamps),
        "subscriber": draw(phones),
        "payer_account": draw(accounts),
        "payee_account": draw(accounts),
        "amount": amount,
        "currency": draw(st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        "channel": draw(st.sampled_from(CHANNELS)),
    }
    for name, limit in (("lat", 90), ("lon", 180)):
        value = draw(_maybe(_number(-limit, limit)))
        if value is not None:
            obj[name] = value
    return {**draw(extras), **obj}


valid_objects = call_objects() | transfer_objects()

_FIELDS = {
    "call.v1": ("event_id", "ts_ms", "caller", "callee", "answered", "duration_s", "caller_kind", "callee_lat",
                "callee_lon"),
    "transfer.v1": ("event_id", "ts_ms", "subscriber", "payer_account", "payee_account", "amount", "currency",
                    "channel", "lat", "lon"),
}  # fmt: skip


def _assert_matches(event: CallEvent | TransferEvent, obj: dict[str, Any]) -> None:
    assert event.schema == obj["schema"]
    for name in _FIELDS[obj["schema"]]:
        got = getattr(event, name)
        if name not in obj:
            assert got is None
        elif isinstance(obj[name], bool | str):
            assert got == obj[name] and type(got) is type(obj[name])
        else:
            assert got == obj[name]


@PROPS
@given(obj=valid_objects)
def test_schema_valid_events_decode_and_round_trip(obj: dict[str, Any]) -> None:
    event = decode(orjson.dumps(obj))
    assert type(event) is (CallEvent if obj["schema"] == "call.v1" else TransferEvent)
    _assert_matches(event, obj)
    assert decode_obj(obj) == event
    again = decode(encode(event))
    assert again == event
    assert encode(again) == encode(event)


def _check_valid(event: CallEvent | TransferEvent) -> None:
    """A decoded event satisfies the contract, whatever it was decoded from."""
    assert event.ts_ms >= 0
    if isinstance(event, CallEvent):
        assert type(event.answered) is bool
        assert 0 <= event.duration_s <= 86_400
        assert event.caller_kind in CALLER_KINDS
        coords = (event.callee_lat, event.callee_lon)
    else:
        assert 0 < event.amount <= 1e12
        assert event.channel in CHANNELS
        coords = (event.lat, event.lon)
    for value, limit in zip(coords, (90, 180), strict=True):
        assert value is None or (type(value) is float and -limit <= value <= limit)
    assert decode(encode(event)) == event


@PROPS
@given(obj=valid_objects, data=st.data())
def test_one_mutated_field_decodes_validly_or_raises_invalid_event(obj: dict[str, Any], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted({*obj, *_FIELDS[obj["schema"]]})), label="field")
    value = data.draw(json_values, label="value")
    mutated = {**obj, name: value}
    try:
        event = decode_obj(mutated)
    except InvalidEvent as exc:
        assert exc.reason
    else:
        _check_valid(event)
    try:
        raw = orjson.dumps(mutated)
    except orjson.JSONEncodeError:
        return  # NaN/huge ints cannot be put on the wire
    try:
        event = decode(raw)
    except InvalidEvent as exc:
        assert exc.reason
    else:
        _check_valid(event)
