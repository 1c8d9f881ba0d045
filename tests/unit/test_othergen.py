"""The other generator: contract-valid events, consistent ground truth, determinism and signalling joins."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.decode import decode_obj
from sandbox.othergen import SCENARIOS, OtherCity, OtherConfig, simulate_other, write_other_city

pytestmark = pytest.mark.unit

SMALL = OtherConfig(residents=1500, days=2.0, seed=5, victims_per_10k_per_day=40.0, signalling=0.4)


@pytest.fixture(scope="module")
def city() -> OtherCity:
    return simulate_other(SMALL)


def test_every_event_validates(city: OtherCity) -> None:
    kinds = Counter(e["schema"] for e in city.events)
    assert set(kinds) == {"call.v1", "call_start.v1", "transfer.v1"}
    for event in city.events:
        decode_obj(event)


def test_events_are_in_time_order_but_for_a_few_minutes(city: OtherCity) -> None:
    latest = 0
    for event in city.events:
        assert event["ts_ms"] >= latest - (SMALL.max_late_s + 1) * 1000
        latest = max(latest, event["ts_ms"])


def test_event_ids_unique_but_for_duplicates(city: OtherCity) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for event in city.events:
        if event["event_id"] in seen:
            assert seen[event["event_id"]] == event  # a repeat is the same event, not a clash
        seen[event["event_id"]] = event


def test_cases_list_events_that_exist(city: OtherCity) -> None:
    ids = {e["event_id"] for e in city.events}
    assert city.cases
    for case in city.cases:
        assert case["event_ids"] and set(case["event_ids"]) <= ids
        assert case["fraud_numbers"]
        assert case["first_loss_ms"] is None or case["first_loss_ms"] >= case["first_contact_ms"]
    assert len({c["case_id"] for c in city.cases}) == len(city.cases)


def test_first_loss_is_the_first_case_transfer(city: OtherCity) -> None:
    by_id = {e["event_id"]: e for e in city.events}
    for case in city.cases:
        transfers = [by_id[i] for i in case["event_ids"] if by_id[i]["schema"] == "transfer.v1"]
        if not transfers:
            assert case["first_loss_ms"] is None
            continue
        assert case["first_loss_ms"] == min(t["ts_ms"] for t in transfers)
        assert all(t["subscriber"] == case["victim"] for t in transfers)


def test_every_long_answered_fraud_call_makes_a_case(city: OtherCity) -> None:
    lines = set(city.fraud_numbers)
    victims = {(c["victim"], n) for c in city.cases for n in c["fraud_numbers"]}
    long_calls = [
        e
        for e in city.events
        if e["schema"] == "call.v1" and e["caller"] in lines and e["answered"] and e["duration_s"] >= 120
    ]
    assert long_calls
    for call in long_calls:
        assert (call["callee"], call["caller"]) in victims


def test_most_fraud_lines_are_plain_mobiles(city: OtherCity) -> None:
    lines = set(city.fraud_numbers)
    kinds = Counter(e["caller_kind"] for e in city.events if e["schema"] == "call.v1" and e["caller"] in lines)
    assert kinds["mobile"] > sum(kinds.values()) / 2


def test_scenarios_and_losses(city: OtherCity) -> None:
    assert len(SCENARIOS) >= 8
    named = {c["scenario"] for c in city.cases}
    assert len(named) >= 8
    assert sum(c["first_loss_ms"] is not None for c in city.cases) >= 10
    assert any(c["first_loss_ms"] is None for c in city.cases)  # sweeps leave cases without a loss


def test_written_city_has_residents(city: OtherCity, tmp_path: Path) -> None:
    paths = write_other_city(city, tmp_path)
    meta = orjson.loads(paths["city"].read_bytes())
    assert meta["residents"] == SMALL.residents and meta["generator"] == "other" and meta["seed"] == SMALL.seed
    assert sum(1 for _ in paths["events"].open("rb")) == len(city.events)
    assert sum(1 for _ in paths["cases"].open("rb")) == len(city.cases)
    responders = [orjson.loads(line) for line in paths["responders"].open("rb")]
    assert responders and {r["kind"] for r in responders} <= {"police", "grid_worker"}


def test_seed_makes_it_deterministic() -> None:
    config = OtherConfig(residents=300, days=1.0, seed=11, victims_per_10k_per_day=60.0)
    a, b = simulate_other(config), simulate_other(config)
    assert a.events == b.events and a.cases == b.cases and a.responders == b.responders
    c = simulate_other(OtherConfig(residents=300, days=1.0, seed=12, victims_per_10k_per_day=60.0))
    assert c.events != a.events


def test_full_signalling_announces_every_answered_call() -> None:
    city = simulate_other(OtherConfig(residents=400, days=1.0, seed=2, signalling=1.0, duplicate_share=0.0))
    calls = {e["call_id"]: e for e in city.events if e["schema"] == "call.v1" and e["answered"]}
    starts = [e for e in city.events if e["schema"] == "call_start.v1"]
    assert len(calls) == sum(1 for e in city.events if e["schema"] == "call.v1" and e["answered"])
    assert len(starts) == len(calls)
    for start in starts:
        call = calls[start["call_id"]]
        assert (start["ts_ms"], start["caller"], start["callee"]) == (call["ts_ms"], call["caller"], call["callee"])
        assert start["event_id"] != call["event_id"]
    # a case lists the call_starts of its calls too
    case_ids = {i for c in city.cases for i in c["event_ids"]}
    for start in starts:
        assert (start["event_id"] in case_ids) == (calls[start["call_id"]]["event_id"] in case_ids)


def test_signalling_share_changes_only_the_announcements() -> None:
    quiet = OtherConfig(residents=300, days=1.0, seed=4)
    loud = OtherConfig(residents=300, days=1.0, seed=4, signalling=1.0)

    def calls(city: OtherCity) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "call_id"} for e in city.events if e["schema"] != "call_start.v1"]

    a, b = simulate_other(quiet), simulate_other(loud)
    assert calls(a) == calls(b)
    assert [c["victim"] for c in a.cases] == [c["victim"] for c in b.cases]


def test_a_city_can_leave_scripts_out() -> None:
    kept = ("safe_account", "rebate_task")
    city = simulate_other(OtherConfig(residents=800, days=2.0, seed=6, victims_per_10k_per_day=200.0, scenarios=kept))
    assert city.cases and {c["scenario"] for c in city.cases} <= set(kept)
    with pytest.raises(ValueError):
        OtherConfig(scenarios=("no_such_script",))
