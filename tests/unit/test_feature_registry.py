"""The feature registry: one declaration per feature, blocks that match the steps, a hash over the parameters."""

from __future__ import annotations

import ast
import math
from dataclasses import fields
from pathlib import Path

import orjson
import pytest

from core.decode import decode_obj
from core.errors import FeatureMismatch
from core.events import CallEvent, Event, TransferEvent
from features import params
from features.pipeline import FeatureEngine, in_arrival_order
from features.registry import (
    BLOCK_NAMES,
    BLOCKS,
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURES,
    FEATURES_HASH,
    PARAMETERS,
    PARAMETERS_JSON,
    describe_change,
    features_hash,
)
from features.state import CallerSnapshot, Feedback, PayeeSnapshot, SubscriberState
from features.steps import (
    KeyState,
    feedback_stage,
    key_of,
    key_stage,
    key_state_type,
    new_key_state,
    snapshot_type,
    subscriber_stage,
)
from features.vector import FeatureRow
from models.registry import RETRAIN_COMMAND, ModelRegistry, check_features
from models.scoring import Scorer
from sandbox.simulate import CityConfig, simulate

pytestmark = pytest.mark.unit

T0 = 1_767_225_600_000


def _slice(row: FeatureRow, block: str) -> tuple[float, ...]:
    names = BLOCK_NAMES[block]
    start = FEATURE_INDEX[names[0]]
    return row.values[start : start + len(names)]


def _nan(values: tuple[float, ...]) -> bool:
    return all(math.isnan(v) for v in values)


# -- one declaration ----------------------------------------------------------------------------


def test_the_vector_is_the_blocks_in_order() -> None:
    assert tuple(f.name for b in BLOCKS for f in b.features) == FEATURE_NAMES
    assert all(f.block == b.name for b in BLOCKS for f in b.features)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert [f.name for f in FEATURES if f.categorical] == ["channel"]
    # No feature reads the number kind (features.params, STRANGER_TALK_MIN_S): it does not carry across streams.
    assert not [n for n in FEATURE_NAMES if "kind" in n]


def test_snapshot_blocks_are_named_after_the_snapshot_fields() -> None:
    assert BLOCK_NAMES["caller"] == tuple(f"caller_{f.name}" for f in fields(CallerSnapshot))
    assert BLOCK_NAMES["payee"] == tuple(f"payee_{f.name}" for f in fields(PayeeSnapshot))
    snap = CallerSnapshot(*range(1, len(fields(CallerSnapshot)) + 1))
    assert CallerSnapshot.from_list(snap.to_list()) == snap and len(snap.to_list()) == len(BLOCK_NAMES["caller"])
    payee = PayeeSnapshot(*range(1, len(fields(PayeeSnapshot)) + 1))
    assert PayeeSnapshot.from_list(payee.to_list()) == payee and len(payee.to_list()) == len(BLOCK_NAMES["payee"])


def test_every_value_shaping_constant_is_a_parameter_defined_once() -> None:
    units = {"MINUTE_MS", "HOUR_MS", "DAY_MS"}
    declared = {n for n in vars(params) if n.isupper() and not n.startswith("_")} - units - {"PARAMETERS"}
    assert declared == set(PARAMETERS)
    for name in ("LONG_CALL_S", "SHORT_CALL_S", "SUSPICIOUS_TALK_S", "WINDOW_SPANS_MS", "WINDOW_NAMES"):
        assert name in PARAMETERS
    for name in ("LOCAL_OFFSET_MS", "FEEDBACK_DELAY_MS", "FLAG_SPANS_MS", "PAYEE_AGE_CAP_S", "SWEEP_SHORT_SHARE"):
        assert name in PARAMETERS
    for name in ("KIND_CODES", "CHANNEL_CODES", "SUSPICIOUS_FOLLOW_MS", "PAID_AFTER_CALL_MS", "PAID_MIN_TALK_S"):
        assert name in PARAMETERS
    for name in ("MAX_FEEDBACK_CALLERS", "FLAG_STRANGER_TALK_1H_S", "DEDUP_IDS", "MAX_CONTACTS", "MAX_PENDING"):
        assert name in PARAMETERS
    # No other module of features/ assigns one of them: each is defined in features.params only.
    for path in Path(params.__file__).parent.glob("*.py"):
        if path.name == "params.py":
            continue
        tree = ast.parse(path.read_text())
        assigned = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        assert assigned.isdisjoint(PARAMETERS), (path.name, assigned & set(PARAMETERS))


# -- the hash -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LONG_CALL_S", 900),
        ("LOCAL_OFFSET_MS", 0),
        ("STRANGER_TALK_MIN_S", 180),
        ("SWEEP_SHORT_SHARE", 0.6),
        ("KIND_CODES", {**params.KIND_CODES, "satellite": 6}),
        ("WINDOW_SPANS_MS", (600_000, 3_600_000, 86_400_000, 14 * 86_400_000)),
        ("MAX_FEEDBACK_CALLERS", 5),
    ],
)
def test_changing_a_parameter_changes_the_hash(name: str, value: object) -> None:
    assert features_hash(FEATURE_NAMES, PARAMETERS) == FEATURES_HASH
    assert features_hash(FEATURE_NAMES, dict(reversed(PARAMETERS.items()))) == FEATURES_HASH  # order-free
    assert features_hash(FEATURE_NAMES, {**PARAMETERS, name: value}) != FEATURES_HASH


def test_renaming_or_reordering_features_changes_the_hash() -> None:
    names = list(FEATURE_NAMES)
    assert features_hash([*names[1:], names[0]], PARAMETERS) != FEATURES_HASH
    assert features_hash([*names[:-1], "renamed"], PARAMETERS) != FEATURES_HASH


def test_describe_change_names_what_differs() -> None:
    assert describe_change(FEATURE_NAMES, PARAMETERS_JSON) == ""
    old = {**PARAMETERS_JSON, "LONG_CALL_S": 900}
    del old["NIGHT_BEFORE_HOUR"]
    said = describe_change([*FEATURE_NAMES[:-1], "gone_feature"], old)
    assert "LONG_CALL_S was 900, now 600" in said
    assert "NIGHT_BEFORE_HOUR is new (6)" in said
    assert f"features added: {FEATURE_NAMES[-1]}" in said and "features removed: gone_feature" in said


def test_a_model_trained_with_other_parameters_refuses_to_load(tmp_path: Path) -> None:
    old = {**PARAMETERS_JSON, "LONG_CALL_S": 900}
    meta = {
        "feature_names": list(FEATURE_NAMES),
        "feature_parameters": old,
        "features_hash": features_hash(FEATURE_NAMES, old),
    }
    version = ModelRegistry(tmp_path).register("not a model\n", meta)
    with pytest.raises(FeatureMismatch) as err:
        check_features(version)
    message = str(err.value)
    assert "\n" not in message
    assert "LONG_CALL_S was 900, now 600" in message and FEATURES_HASH in message and RETRAIN_COMMAND in message
    with pytest.raises(FeatureMismatch, match="LONG_CALL_S was 900, now 600"):
        Scorer(version)  # refused before the model file is read
    # A model from before the parameters were stored still refuses, and says the change is not recorded.
    legacy = ModelRegistry(tmp_path).register("x\n", {"feature_names": list(FEATURE_NAMES), "features_hash": "abc"})
    with pytest.raises(FeatureMismatch, match="not recorded"):
        check_features(legacy)
    check_features(ModelRegistry(tmp_path).register("x\n", {"features_hash": FEATURES_HASH}))  # current: loads


# -- blocks against the steps, and the one step order ---------------------------------------------


def _city_events() -> list[Event]:
    city = simulate(CityConfig(subscribers=400, days=2.0, seed=11, victims_per_10k_per_day=200))
    return in_arrival_order(decode_obj(e) for e in city.events)


def test_block_lengths_match_what_the_steps_produce() -> None:
    rows = list(FeatureEngine().run(_city_events()))
    calls = [r for r in rows if r.is_call]
    transfers = [r for r in rows if not r.is_call]
    assert calls and transfers
    for row in rows:
        assert len(row.values) == len(FEATURE_NAMES)
    # A call fills its own blocks and pads exactly the transfer ones, and the other way round: a block whose
    # length differed from the registry's would shift the padding off its block.
    for row in calls:
        assert not any(_nan(_slice(row, b)) for b in ("event", "call", "caller", "windows", "subscriber"))
        assert _nan(_slice(row, "transfer")) and _nan(_slice(row, "payee"))
    for row in transfers:
        assert not any(_nan(_slice(row, b)) for b in ("event", "transfer", "payee", "windows", "subscriber"))
        assert _nan(_slice(row, "call")) and _nan(_slice(row, "caller")) and _nan(_slice(row, "call_vs_caller"))
    assert any(not _nan(_slice(r, "call_vs_caller")) for r in calls)


def test_the_caller_block_is_the_snapshot() -> None:
    event = CallEvent("c1", T0, "+85261234567", "+8613900000000", True, 400.0, "overseas")
    state = new_key_state(key_of(event))
    snap = key_stage(state, event)
    assert isinstance(snap, CallerSnapshot)
    out = subscriber_stage(SubscriberState(), event, snap)
    assert out is not None
    row, feedback = out
    assert list(_slice(row, "caller")) == snap.to_list() and feedback == []


def test_agents_running_the_stages_over_the_wire_match_the_engine() -> None:
    """The stages as the agents run them: snapshots and feedback go through their wire form."""
    events = _city_events()
    keys: dict[str, KeyState] = {}
    subs: dict[str, SubscriberState] = {}
    in_flight: list[Feedback] = []
    rows: list[FeatureRow] = []
    for event in events:
        # Feedback reaches the key stage a hop later, before the next event (the stream's hop is faster than
        # FEEDBACK_DELAY_MS, which is what makes it count at the same event time as the engine's).
        for fb in in_flight:
            feedback_stage(keys.setdefault(fb.key, new_key_state(fb.key)), fb)
        in_flight = []
        key = key_of(event)
        state = keys.get(key) or key_state_type(key)()
        snap = key_stage(state, event)
        keys[key] = state
        if snap is None:
            continue
        wire = snap.to_list()
        received = snapshot_type(event).from_list(wire)
        out = subscriber_stage(subs.setdefault(event.subscriber, SubscriberState()), event, received)
        if out is None:
            continue
        row, feedback = out
        rows.append(row)
        in_flight = [Feedback.from_envelope(orjson.loads(orjson.dumps(fb.to_envelope()))) for fb in feedback]
        if isinstance(event, TransferEvent):
            assert all(fb.effective_ms >= event.ts_ms + params.FEEDBACK_DELAY_MS for fb in feedback)
    expected = list(FeatureEngine().run(events))
    # The feedback's link (``via``) crosses the wire here: without it this feature would differ.
    assert any(r.values[FEATURE_INDEX["caller_shared_payee_callees_7d"]] > 0 for r in expected if r.is_call)
    assert [r.event_id for r in rows] == [r.event_id for r in expected]
    for got, want in zip(rows, expected, strict=True):
        assert got.values == want.values or all(
            a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got.values, want.values, strict=True)
        ), got.event_id
