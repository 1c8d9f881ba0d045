"""A hold goes out before its alert is explained: from ``score`` once the alert is on the hop, else from ``explain``
before SHAP and the case write; the bank waits for neither."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from alerting import Decision, TransferRef
from core.settings import Settings
from features import FEATURE_NAMES, FeatureRow
from streams import codecs
from streams.agents import Agents
from streams.pending_alerts import PendingAlert, encode_pending
from streams.state_table import StateTable

pytestmark = pytest.mark.unit

T0 = 1_767_254_400_000


class _Alerting:
    """Records what the agent asks of alerting, in order."""

    retrying = 0

    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    async def issue_hold(self, decision: Decision, earlier: Sequence[Decision] = ()) -> None:
        self.calls.append(("issue_hold", (decision, list(earlier))))

    async def handle(self, decision: Decision) -> None:
        self.calls.append(("handle", decision))


class _Scorer:
    version = "m-1"

    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    def contributions_many(self, rows: list[Any]) -> np.ndarray:
        self.calls.append(("shap", len(rows)))
        out = np.zeros((len(rows), len(FEATURE_NAMES)))
        out[:, 0] = 1.0  # one feature for each row to be worded by
        return out


class _Stream:
    """One batch of pending-alert records, as ``take_events`` hands them."""

    def __init__(self, records: list[bytes]) -> None:
        self.records = records

    async def take_events(self, n: int, within: float) -> AsyncIterator[list[Any]]:
        yield [
            SimpleNamespace(value=raw, message=SimpleNamespace(partition=0, offset=i, topic="alerts-pending"))
            for i, raw in enumerate(self.records)
        ]


def _alert(subscriber: str, event_id: str, ts_ms: int, held: bool) -> PendingAlert:
    row = FeatureRow(event_id, subscriber, ts_ms, not held, (1.0,) * len(FEATURE_NAMES), 31.2, 121.5, "transfer.v1")
    transfer = TransferRef(event_id, ts_ms, "ACC-1", "ACC-MULE", 30_000.0, "CNY", ts_ms / 1000) if held else None
    return PendingAlert(row, 0.95, 2, "m-1", ts_ms / 1000, transfer, event_id, 0.5)


async def test_holds_are_issued_before_any_alert_is_explained_or_handled() -> None:
    calls: list[tuple[str, Any]] = []
    scorer = _Scorer(calls)
    agents = Agents(
        settings=Settings(),
        live_model=SimpleNamespace(scorer=scorer, scorer_of=lambda version: scorer),
        shadow_model=SimpleNamespace(scorer=None),
        caller_states=None,
        subscriber_states=None,
        to_callers=None,
        to_subscribers=None,
        to_explain=None,
        send_dead_letter=None,
        feature_topic=None,
    )
    agents.alerting = _Alerting(calls)
    batch = [
        _alert("+8613800000001", "c-1", T0, held=False),  # another subscriber's alert, first on the hop
        _alert("+8613800000002", "c-2", T0 + 1_000, held=False),  # the held subscriber's call, before its transfer
        _alert("+8613800000002", "t-2", T0 + 60_000, held=True),
    ]
    await agents.explain(_Stream([encode_pending(a) for a in batch]))

    kinds = [kind for kind, _ in calls]
    # The hold first, then its group's SHAP and hand-off, then the rest of the batch.
    assert kinds == ["issue_hold", "shap", "handle", "handle", "shap", "handle"]
    held, earlier = calls[0][1]
    assert held.event_id == "t-2" and held.hold is not None and held.reasons == ()
    # It names the case that the same subscriber's earlier alert of the batch will open.
    assert [d.event_id for d in earlier] == ["c-2"]
    # The decisions alerting handles (cases, tasks, the hold's own once more) are explained as before.
    handled = [d for kind, d in calls if kind == "handle"]
    assert [d.event_id for d in handled] == ["c-2", "t-2", "c-1"]
    assert all(d.reasons for d in handled)


class _Sender:
    def __init__(self, calls: list[tuple[str, Any]] | None = None) -> None:
        self.calls = calls

    async def send_many(self, records: list[tuple[bytes, bytes]]) -> list[Any]:
        if self.calls is not None and records:
            self.calls.append(("sent", len(records)))
        return []


def _scoring_agents(calls: list[tuple[str, Any]]) -> Agents:
    scorer = SimpleNamespace(
        version="m-1", thresholds=(0.5, 0.8, 0.9), hold_threshold=0.9, score=lambda rows: np.full(len(rows), 0.95)
    )
    agents = Agents(
        settings=Settings(publish_features=False, budget_follow=False),
        live_model=SimpleNamespace(scorer=scorer),
        shadow_model=SimpleNamespace(scorer=None),
        caller_states=None,
        subscriber_states=StateTable(SimpleNamespace(data={}), codecs.decode_subscriber_state, _Sender()),
        to_callers=_Sender(),
        to_subscribers=_Sender(),
        to_explain=_Sender(calls),
        send_dead_letter=None,
        feature_topic=None,
    )
    agents.alerting = _Alerting(calls)
    return agents


async def _score(agents: Agents, batch: list[PendingAlert]) -> None:
    rows = [a.row for a in batch]
    await agents._decide(rows, [None] * len(rows), [a.hold for a in batch], [a.row.event_id for a in batch], {}, [])
    await asyncio.gather(*agents._early_holds)


async def test_score_issues_a_hold_once_its_alert_is_on_the_hop_unless_one_of_its_subscriber_is_unhandled() -> None:
    calls: list[tuple[str, Any]] = []
    agents = _scoring_agents(calls)
    call = _alert("+8613800000002", "c-2", T0, held=False)
    transfer = _alert("+8613800000002", "t-2", T0 + 60_000, held=True)
    await _score(agents, [_alert("+8613800000001", "c-1", T0, held=False), call, transfer])
    # The alerts on the hop first, then the hold, planned after the same subscriber's call of the batch.
    assert [kind for kind, _ in calls] == ["sent", "issue_hold"]
    held, earlier = calls[1][1]
    assert held.event_id == "t-2" and held.reasons == () and [d.event_id for d in earlier] == ["c-2"]

    # A later transfer while those alerts wait for ``explain``: its plan could miss them, so ``explain`` issues it.
    calls.clear()
    await _score(agents, [_alert("+8613800000002", "t-3", T0 + 120_000, held=True)])
    assert [kind for kind, _ in calls] == ["sent"]
    # Once ``explain`` handled them, the next one goes straight out again.
    for alert in (call, transfer, _alert("+8613800000002", "t-3", T0 + 120_000, held=True)):
        agents._handled(alert)
    calls.clear()
    await _score(agents, [_alert("+8613800000002", "t-4", T0 + 180_000, held=True)])
    assert [kind for kind, _ in calls] == ["sent", "issue_hold"]


async def test_stopping_waits_for_holds_on_their_way_and_cancels_only_those_past_the_bound() -> None:
    agents = _scoring_agents([])
    gate = asyncio.Event()
    finished: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.01)
        finished.append("quick")

    async def stuck() -> None:
        await gate.wait()  # a bank or Redis that never answers
        finished.append("stuck")

    for work in (quick(), stuck()):
        task = asyncio.create_task(work)
        agents._early_holds.add(task)
        task.add_done_callback(agents._early_holds.discard)
    assert await agents.finish_early_holds(timeout_s=0.2) == 1
    assert finished == ["quick"] and not agents._early_holds
    assert await agents.finish_early_holds() == 0
