"""The main job's summary counts the judged days only, never the history replayed before them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sandbox.demo import DemoConfig, summarise
from streams import ReplayStats

pytestmark = pytest.mark.unit

JUDGED_FROM = 1_000_000


def _samples(scored: float, level3: float, dead: float, held: float = 0.0) -> dict[str, float]:
    return {
        "fw_events_scored_total{kind=call}": scored,
        "fw_decisions_total{level=3}": level3,
        "fw_dead_letters_total{reason=json}": dead,
        "fw_holds_total{event=issued}": held,
        "fw_in_call_actions_total{level=2}": held / 2,
    }


def _case(victim: str, first_contact: int, loss: int | None) -> dict[str, Any]:
    return {"victim": victim, "first_contact_ms": first_contact, "first_loss_ms": loss}


def _task(subscriber: str, created: int) -> dict[str, Any]:
    return {"subscriber": subscriber, "level": 3, "created_ms": created}


def test_summary_leaves_the_history_out(tmp_path: Path) -> None:
    cases = [
        _case("h", 100, 900),  # begun and ended in the history
        _case("half", JUDGED_FROM - 10, JUDGED_FROM + 500),  # begun in the history: half-seen
        _case("a", JUDGED_FROM + 10, JUDGED_FROM + 1000),
        _case("b", JUDGED_FROM + 20, JUDGED_FROM + 2000),
    ]
    path = tmp_path / "city" / "cases.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in cases))
    history = {
        "replay": ReplayStats(sent=700, calls=650, transfers=50, unroutable=0, seconds=30.0),
        "samples": _samples(scored=700, level3=9, dead=0, held=2),
        "seconds": 42.0,
    }
    result = {
        "replay": ReplayStats(sent=205, calls=190, transfers=10, unroutable=5, seconds=60.0),
        "samples": _samples(scored=900, level3=12, dead=5, held=6),
        "history": history,
        "judged_from_ms": JUDGED_FROM,
        # Two tasks of the history (one for a case it holds), one for the half-seen case, one for "a".
        "tasks": [_task("h", 500), _task("x", 700), _task("half", JUDGED_FROM + 100), _task("a", JUDGED_FROM + 50)],
    }
    summary = summarise(result, path, "v1", time.monotonic())
    assert summary["events_sent"] == 205 and summary["events_processed"] == 200 and summary["dead_letters"] == 5
    assert summary["alerts_by_level"]["3"] == 3
    assert summary["holds"] == {"issued": 4, "released": 0, "cancelled": 0, "lapsed": 0}
    assert summary["in_call_actions_by_level"]["2"] == 2
    assert summary["tasks_dispatched"] == 2
    face = summary["face_to_face"]
    assert (face["cases"], face["cases_with_loss"], face["caught_before_money_left"]) == (2, 2, 1)
    assert summary["history"]["events_sent"] == 700 and summary["history"]["tasks"] == 2
    assert summary["history"]["replayed_and_drained_s"] == 42.0

    # Without a history phase (``--history-days 0``) everything counts, as before.
    cold = summarise({**result, "history": None}, path, "v1", time.monotonic())
    assert cold["tasks_dispatched"] == 4 and cold["face_to_face"]["cases"] == 4 and "history" not in cold
    assert cold["events_processed"] == 900


def test_the_main_job_replays_history_before_the_two_judged_days() -> None:
    config = DemoConfig()
    assert config.history_days >= 3.0 and config.days == 2.0


def test_a_seeded_history_is_left_out_and_reported(tmp_path: Path) -> None:
    cases = [_case("h", 100, 900), _case("a", JUDGED_FROM + 10, JUDGED_FROM + 1000)]
    path = tmp_path / "city" / "cases.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in cases))
    seeded = {"mode": "seeded", "rows": 900, "tasks": 3, "task_threshold_at_end": 0.95}
    result = {
        "replay": ReplayStats(sent=205, calls=190, transfers=10, unroutable=5, seconds=60.0),
        "samples": _samples(scored=200, level3=2, dead=5),  # the worker saw the judged days only
        "history": None,
        "seeded_history": seeded,
        "judged_from_ms": JUDGED_FROM,
        "tasks": [_task("a", JUDGED_FROM + 50)],
    }
    summary = summarise(result, path, "v1", time.monotonic())
    assert summary["events_processed"] == 200 and summary["history"] == seeded
    assert summary["face_to_face"]["cases"] == 1  # the history's case is not judged
