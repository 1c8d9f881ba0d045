"""The simulator's scenario scripts and the knobs a world can differ in (scenario mix, line kinds, timings...)."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import pytest

from sandbox.simulate import CORE_SCENARIOS, SCENARIOS, CityConfig, SimulatedCity, _Sim, simulate

pytestmark = pytest.mark.unit

NEW = ("task_scam", "boss_impersonation", "kidnapping", "account_cancellation")
# Only the new scripts, many victims, so that each shows its shape several times.
NEW_ONLY = CityConfig(
    subscribers=2000,
    days=4.0,
    seed=21,
    victims_per_10k_per_day=150.0,
    scenario_weights=tuple((name, 1.0) for name in NEW),
)


@pytest.fixture(scope="module")
def new_city() -> SimulatedCity:
    return simulate(NEW_ONLY)


def _scripted(city: SimulatedCity, scenario: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    by_id = {e["event_id"]: e for e in city.events}
    return [
        (c, [by_id[i] for i in c["event_ids"]])
        for c in city.cases
        if c["scenario"] == scenario and c["origin"] == "script"
    ]


def _paid(case: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["schema"] == "transfer.v1" and e["subscriber"] == case["victim"]]


def test_the_scenario_tuple_is_complete_and_core_is_unchanged() -> None:
    assert set(NEW) <= set(SCENARIOS) and len(SCENARIOS) == len(set(SCENARIOS)) == 9
    assert CORE_SCENARIOS == ("police_impersonation", "investment", "refund", "loan")
    assert set(CityConfig().scenario_mix) == set(SCENARIOS)


def test_only_the_weighted_scenarios_happen(new_city: SimulatedCity) -> None:
    seen = Counter(c["scenario"] for c in new_city.cases)
    assert set(seen) == set(NEW)  # sweep cases too take their scenario from the ring's (new) scripts
    assert all(seen[name] >= 5 for name in NEW), seen


def test_task_scam_rebates_small_payments_then_takes_a_big_one(new_city: SimulatedCity) -> None:
    shaped = 0
    for case, events in _scripted(new_city, "task_scam"):
        paid = _paid(case, events)
        rebates = [e for e in events if e["schema"] == "transfer.v1" and e["subscriber"] != case["victim"]]
        victim_accounts = {e["payer_account"] for e in paid}
        for rebate in rebates:  # money comes *to* the victim, from a plain mobile holder of a mule account
            assert rebate["subscriber"].startswith("+861")
            assert not victim_accounts or rebate["payee_account"] in victim_accounts
        if len(paid) >= 3 and rebates and paid[0]["amount"] <= 1000 and max(e["amount"] for e in paid) >= 3000:
            first_rebate = min(e["ts_ms"] for e in rebates)
            days = (paid[-1]["ts_ms"] - case["first_contact_ms"]) / 86_400_000
            shaped += first_rebate < paid[-1]["ts_ms"] and days > 0.1
    assert shaped >= 3


def test_task_scam_and_boss_calls_come_mostly_from_plain_mobiles(new_city: SimulatedCity) -> None:
    for scenario in ("task_scam", "boss_impersonation"):
        kinds = Counter(
            e["caller_kind"] for _, events in _scripted(new_city, scenario) for e in events if e["schema"] == "call.v1"
        )
        assert kinds["mobile"] > 0.5 * sum(kinds.values()), (scenario, kinds)


def test_boss_impersonation_is_a_short_call_then_an_urgent_transfer(new_city: SimulatedCity) -> None:
    quick = total = 0
    for case, events in _scripted(new_city, "boss_impersonation"):
        paid = _paid(case, events)
        if not paid:
            continue
        total += 1
        before = [e for e in events if e["schema"] == "call.v1" and e["ts_ms"] < paid[0]["ts_ms"]]
        last = before[-1]
        gap_s = (paid[0]["ts_ms"] - last["ts_ms"]) / 1000 - last["duration_s"]
        quick += last["duration_s"] <= 300 and 0 <= gap_s <= 16 * 60 and paid[0]["amount"] >= 5000
    assert total >= 3 and quick == total


def test_kidnapping_pays_a_large_sum_within_the_hour(new_city: SimulatedCity) -> None:
    fast = total = 0
    for case, events in _scripted(new_city, "kidnapping"):
        paid = _paid(case, events)
        if not paid:
            continue
        total += 1
        answered = [e for e in events if e["schema"] == "call.v1" and e["answered"]]
        lead_min = (paid[0]["ts_ms"] - answered[-1]["ts_ms"]) / 60_000
        fast += paid[0]["amount"] >= 10_000 and lead_min <= 80
    assert total >= 3 and fast == total


def test_account_cancellation_sends_growing_sums_during_a_long_call(new_city: SimulatedCity) -> None:
    shaped = 0
    for case, events in _scripted(new_city, "account_cancellation"):
        paid = _paid(case, events)
        if len(paid) < 3:
            continue
        amounts = [e["amount"] for e in paid]
        long_call = max((e for e in events if e["schema"] == "call.v1"), key=lambda e: e["duration_s"])
        during = long_call["ts_ms"] <= paid[0]["ts_ms"] <= long_call["ts_ms"] + long_call["duration_s"] * 1000
        payees = {e["payee_account"] for e in paid}
        shaped += amounts == sorted(amounts) and amounts[-1] > amounts[0] and during and len(payees) >= 2
    assert shaped >= 3


def test_fraud_line_kinds_decide_the_fraud_callers_ranges() -> None:
    only_mobile = simulate(CityConfig(subscribers=600, days=1.0, seed=4, fraud_line_kinds=(("mobile", 1.0),)))
    by_id = {e["event_id"]: e for e in only_mobile.events}
    kinds = {by_id[i]["caller_kind"] for c in only_mobile.cases for i in c["event_ids"] if i.startswith("c-")}
    assert kinds == {"mobile"}


def test_scam_time_scale_stretches_scripted_calls() -> None:
    def median_duration(scale: float) -> float:
        city = simulate(
            CityConfig(subscribers=1500, days=2.0, seed=9, victims_per_10k_per_day=100, scam_time_scale=scale)
        )
        by_id = {e["event_id"]: e for e in city.events}
        return statistics.median(
            by_id[i]["duration_s"]
            for c in city.cases
            if c["origin"] == "script"
            for i in c["event_ids"]
            if i.startswith("c-") and by_id[i]["answered"]
        )

    assert 1.5 < median_duration(2.0) / median_duration(1.0) < 2.6


def test_lookalike_scale_switches_the_look_alikes() -> None:
    def outside_payers(scale: float) -> int:
        sim = _Sim(CityConfig(subscribers=1500, days=1.0, seed=5, lookalike_scale=scale))
        city = sim.run()
        residents = {sub.phone for sub in sim.subs}
        fraud = {i for c in city.cases for i in c["event_ids"]}
        return sum(
            e["schema"] == "transfer.v1" and e["subscriber"] not in residents and e["event_id"] not in fraud
            for e in city.events
        )

    assert outside_payers(0.0) == 0
    assert outside_payers(3.0) > 10


def test_bad_mixes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        CityConfig(scenario_weights=(("phishing_by_pigeon", 1.0),))
    with pytest.raises(ValueError, match="at least one must be positive"):
        CityConfig(scenario_weights=(("refund", 0.0),))
    with pytest.raises(ValueError, match="fraud line kind"):
        CityConfig(fraud_line_kinds=(("satellite", 1.0),))
    with pytest.raises(ValueError):
        CityConfig(scam_time_scale=0.0)
