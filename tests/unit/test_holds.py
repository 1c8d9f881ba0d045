"""Payment holds without services: the hold.v1 messages, the hold threshold's choice and evaluate's hold figures."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from alerting.cases import case_key_for, planned_case_key
from alerting.decision import Decision, TransferRef
from alerting.holds import build_hold, ending_message, hold_id_for, message_key
from core.errors import InvalidTransition
from features import FEATURE_NAMES, FeatureRow
from models.dataset import Dataset
from models.evaluate import _hold_case_figures, cases_held_at_loss, held_rows
from models.train import choose_hold_threshold, count_false_holds
from streams.pending_alerts import PendingAlert, decode_pending, encode_pending
from tests.contract import SCHEMAS

pytestmark = pytest.mark.unit

HOLD_SCHEMA = json.loads((SCHEMAS / "hold.v1.json").read_text())
CONTRACT_FIELDS = set(HOLD_SCHEMA["required"]) | {"score", "level", "reasons", "model_version"}
T0 = 1_767_225_600_000
DAY_MS = 86_400_000


def _decision(event_id: str = "t-1", ts_ms: int = T0, **kw: Any) -> Decision:
    transfer = TransferRef(event_id, ts_ms, "ACC-PAYER", "ACC-PAYEE", 25_000.0, "CNY")
    return Decision(
        subscriber="+8613800001111",
        event_id=event_id,
        ts_ms=ts_ms,
        score=0.93,
        level=3,
        model_version="m-7",
        reasons=tuple(f"reason {i}" for i in range(14)),
        hold=transfer,
        **kw,
    )


def test_hold_message_has_the_contract_fields_and_validates() -> None:
    msg = build_hold("case-abc", _decision(), expiry_ms=4 * 3_600_000)
    jsonschema.validate(msg, HOLD_SCHEMA)
    assert set(msg) == CONTRACT_FIELDS
    assert msg["action"] == "hold"
    assert msg["hold_id"] == hold_id_for("t-1") and msg["transfer_event_id"] == "t-1"
    assert msg["idempotency_key"] == f"{msg['hold_id']}:hold"
    assert msg["created_ms"] == T0 and msg["expires_ms"] == T0 + 4 * 3_600_000
    assert (msg["payer_account"], msg["payee_account"], msg["amount"], msg["currency"]) == (
        "ACC-PAYER",
        "ACC-PAYEE",
        25_000.0,
        "CNY",
    )
    assert msg["case_key"] == "case-abc" and msg["subscriber"] == "+8613800001111"
    assert len(msg["reasons"]) == 10  # bounded like a task's


def test_hold_id_is_stable_per_transfer_and_times_come_from_event_time() -> None:
    # The same transfer decided again later (a redelivery) builds the same message; another transfer another id.
    first = build_hold("case-abc", _decision(decided_at_s=1.0), 3_600_000)
    again = build_hold("case-abc", _decision(decided_at_s=99.0), 3_600_000)
    other = build_hold("case-abc", _decision(event_id="t-2"), 3_600_000)
    assert first == again
    assert other["hold_id"] != first["hold_id"] and other["idempotency_key"] != first["idempotency_key"]


def test_release_and_cancel_share_the_hold_id_with_keys_of_their_own() -> None:
    hold = build_hold("case-abc", _decision(), 3_600_000)
    release, cancel = ending_message(hold, "release"), ending_message(hold, "cancel")
    for msg in (release, cancel):
        jsonschema.validate(msg, HOLD_SCHEMA)
        assert msg["hold_id"] == hold["hold_id"]
        assert {k: v for k, v in msg.items() if k not in ("action", "idempotency_key")} == {
            k: v for k, v in hold.items() if k not in ("action", "idempotency_key")
        }
    keys_ = {hold["idempotency_key"], release["idempotency_key"], cancel["idempotency_key"]}
    assert keys_ == {message_key(hold["hold_id"], a) for a in ("hold", "release", "cancel")} and len(keys_) == 3
    with pytest.raises(InvalidTransition):
        ending_message(hold, "hold")


def test_a_decision_without_a_transfer_builds_no_hold() -> None:
    with pytest.raises(ValueError):
        build_hold("case-abc", Decision("+8613800001111", "c-1", T0, 0.9, 3, "m-7"), 3_600_000)


def test_pending_alert_carries_the_transfer_and_reads_older_records() -> None:
    row = FeatureRow("t-1", "+8613800001111", T0, False, tuple([0.0] * len(FEATURE_NAMES)), None, None)
    d = _decision()
    alert = PendingAlert(row, 0.93, 3, "m-7", 12.5, d.hold)
    back = decode_pending(encode_pending(alert))
    assert back.hold == d.hold and back.decision().hold == d.hold
    older = encode_pending(PendingAlert(row, 0.93, 3, "m-7", 12.5))
    assert b'"h"' not in older and decode_pending(older).hold is None


def test_pending_alert_keeps_when_the_transfer_reached_the_broker() -> None:
    # The hold's latency counts from there; a record from before that field reads as unknown.
    row = FeatureRow("t-1", "+8613800001111", T0, False, tuple([0.0] * len(FEATURE_NAMES)), None, None)
    transfer = TransferRef("t-1", T0, "ACC-PAYER", "ACC-PAYEE", 25_000.0, "CNY", received_at_s=1_767_225_600.25)
    back = decode_pending(encode_pending(PendingAlert(row, 0.93, 3, "m-7", 12.5, transfer)))
    assert back.hold is not None and back.hold.received_at_s == 1_767_225_600.25
    old_record = orjson.loads(encode_pending(PendingAlert(row, 0.93, 3, "m-7", 12.5, transfer)))
    old_record["h"] = old_record["h"][:6]
    older = decode_pending(orjson.dumps(old_record))
    assert older.hold is not None and older.hold.received_at_s is None and older.hold.event_id == "t-1"


# --- the hold threshold -------------------------------------------------------------------------------------


def _rows(n_people: int = 10_000) -> tuple[list[str], np.ndarray]:
    """Subscribers and times of a 1-day history of ``n_people``: one task or hold adds 1 per 10k per day."""
    subs = [f"+86138{i:08d}" for i in range(n_people)]
    avail = np.linspace(T0, T0 + DAY_MS, n_people).astype(np.int64)
    return subs, avail


def test_hold_threshold_spends_the_budget_on_false_holds_of_transfers_only() -> None:
    subs, avail = _rows()
    scores = np.full(len(subs), 0.01)
    transfers = np.zeros(len(subs), dtype=bool)
    # Five innocent transfers at 0.9 ... 0.5, a victim's transfer at 0.95, and a call at 0.99 (not a transfer).
    for k, score in enumerate((0.9, 0.8, 0.7, 0.6, 0.5)):
        scores[k], transfers[k] = score, True
    scores[5], transfers[5] = 0.95, True
    scores[6] = 0.99
    victims = {subs[5]}
    transfers[7:20] = True  # low-scored transfers: below any threshold that matters

    th = choose_hold_threshold(scores, subs, avail, transfers, victims, budget=2.0)
    assert 0.7 < th <= 0.8  # two false holds (0.9, 0.8) fit a budget of 2 per 10k per day; the third does not
    assert count_false_holds(scores, subs, transfers, victims, th) == 2
    assert scores[5] >= th  # the victim's transfer is held and spends nothing
    # A bigger budget holds more; a floor above the choice wins.
    assert choose_hold_threshold(scores, subs, avail, transfers, victims, budget=4.0) < th
    assert choose_hold_threshold(scores, subs, avail, transfers, victims, budget=2.0, floor=0.85) == 0.85
    # Nothing false at all above the floor: the floor.
    assert choose_hold_threshold(scores, subs, avail, transfers & ~(scores > 0.1), victims, 2.0, floor=0.3) == 0.3
    # A zero budget holds no innocent transfer: just above the best one.
    zero = choose_hold_threshold(scores, subs, avail, transfers, victims, budget=0.0)
    assert zero == math.nextafter(0.9, math.inf)


def test_hold_threshold_counts_per_resident_over_all_rows() -> None:
    # Twice the people (the other half only ever called) halves what one false hold costs.
    subs, avail = _rows(20_000)
    scores = np.full(len(subs), 0.01)
    transfers = np.zeros(len(subs), dtype=bool)
    for k, score in enumerate((0.9, 0.8, 0.7, 0.6, 0.5)):
        scores[k], transfers[k] = score, True
    th = choose_hold_threshold(scores, subs, avail, transfers, set(), budget=2.0)
    assert count_false_holds(scores, subs, transfers, set(), th) == 4


# --- evaluate's hold figures -------------------------------------------------------------------------------


def _dataset(rows: list[FeatureRow]) -> Dataset:
    return Dataset(
        rows,
        np.zeros((len(rows), len(FEATURE_NAMES))),
        np.zeros(len(rows), dtype=np.int8),
        np.asarray([r.avail_ms for r in rows], dtype=np.int64),
    )


def _row(event_id: str, sub: str, at: int, is_call: bool) -> FeatureRow:
    return FeatureRow(event_id, sub, at, is_call, tuple([0.0] * len(FEATURE_NAMES)), None, None)


def test_cases_held_at_loss_and_stopped() -> None:
    v1, v2, v3, other = "+8613800000001", "+8613800000002", "+8613800000003", "+8613800000009"
    loss = T0 + 3_600_000
    rows = [
        _row("c1", v1, T0 + 60_000, True),  # v1's scam call, flagged before the loss
        _row("t1", v1, loss, False),  # v1's first fraudulent transfer, below the hold threshold
        _row("c2", v2, T0 + 60_000, True),
        _row("t2", v2, loss, False),  # v2's first fraudulent transfer, held
        _row("t3a", v3, loss, False),  # v3's first fraudulent transfer, not held...
        _row("t3b", v3, loss + 60_000, False),  # ...its second is held, too late to count as held at the loss
        _row("t9", other, loss, False),  # an innocent transfer, held: a false hold
    ]
    data = _dataset(rows)
    scores = np.asarray([0.9, 0.2, 0.1, 0.8, 0.3, 0.9, 0.85])
    alerting = scores >= 0.05
    held = held_rows(data, scores, 0.7, alerting)
    assert held.tolist() == [False, False, False, True, False, True, True]  # calls are never held
    cases = [
        {
            "case_id": f"k{i}",
            "scenario": "s",
            "victim": v,
            "first_contact_ms": T0,
            "first_loss_ms": loss,
            "event_ids": e,
        }
        for i, (v, e) in enumerate(((v1, ["c1", "t1"]), (v2, ["c2", "t2"]), (v3, ["t3a", "t3b"])), 1)
    ]
    held_cases = cases_held_at_loss(data, cases, held)
    assert held_cases == {"k2"}
    alerts_by_sub = {v1: [T0 + 60_000]}  # only v1 was flagged (at the task level) before the loss
    assert _hold_case_figures(cases, alerts_by_sub, held_cases) == {"cases_held_at_loss": 1, "cases_stopped": 2}
    # No hold threshold (a model from before holds): nothing is held.
    assert not held_rows(data, scores, None, alerting).any()
    # A hold rides on an alert: a transfer that reached no level is not held, whatever its score.
    assert not held_rows(data, scores, 0.7, np.zeros(len(rows), dtype=bool)).any()


EPISODE_MS = 6 * 3600 * 1000


def test_an_early_hold_plans_a_new_case_at_its_own_time_without_an_open_one() -> None:
    assert planned_case_key((None, 0), "p", [], T0, EPISODE_MS) == case_key_for("p", T0)
    # An open episode that ended before the transfer: a new one.
    assert planned_case_key(("p-1", T0), "p", [], T0, EPISODE_MS) == case_key_for("p", T0)


def test_an_early_hold_plans_the_open_case_or_the_one_its_earlier_decisions_open() -> None:
    assert planned_case_key(("p-1", T0 + 1), "p", [], T0, EPISODE_MS) == "p-1"
    # The subscriber's call alert of the same batch, not recorded yet, opens the case the transfer joins.
    assert planned_case_key((None, 0), "p", [T0 - 60_000], T0, EPISODE_MS) == case_key_for("p", T0 - 60_000)
    # ... unless that episode is over by the transfer's time.
    assert planned_case_key((None, 0), "p", [T0 - EPISODE_MS], T0, EPISODE_MS) == case_key_for("p", T0)
    # A late earlier decision joins the open case, as record() folds it; so does the transfer.
    assert planned_case_key(("p-1", T0 + 1), "p", [T0 - DAY_MS], T0, EPISODE_MS) == "p-1"


def test_a_hold_issued_before_its_explanation_validates_without_reasons() -> None:
    message = build_hold("case-1", replace(_decision(), reasons=()), expiry_ms=DAY_MS)
    assert message["reasons"] == []
    jsonschema.validate(message, HOLD_SCHEMA)
