"""The city simulator: determinism, contract-valid output, consistent ground truth, realistic look-alikes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.decode import decode_obj
from sandbox.simulate import CityConfig, SimulatedCity, iter_jsonl, read_city_meta, simulate, write_city

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SMALL = CityConfig(subscribers=800, days=1.0, seed=7)
CASE_FIELDS = ("case_id", "scenario", "victim", "fraud_numbers", "first_contact_ms", "first_loss_ms", "event_ids")


@pytest.fixture(scope="module")
def city() -> SimulatedCity:
    return simulate(CityConfig(subscribers=10_000, days=2.0, seed=3))


@pytest.fixture(scope="module")
def by_id(city: SimulatedCity) -> dict[str, dict[str, Any]]:
    return {e["event_id"]: e for e in city.events}


@pytest.fixture(scope="module")
def fraud_ids(city: SimulatedCity) -> set[str]:
    return {eid for case in city.cases for eid in case["event_ids"]}


def _dump(city: SimulatedCity) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in (*city.events, *city.cases, *city.responders))


def test_same_seed_gives_identical_output() -> None:
    assert _dump(simulate(SMALL)) == _dump(simulate(SMALL))


def test_different_seed_gives_different_output() -> None:
    other = simulate(CityConfig(subscribers=800, days=1.0, seed=8))
    assert _dump(simulate(SMALL)) != _dump(other)


def test_output_does_not_depend_on_hash_randomisation() -> None:
    script = (
        "import hashlib, orjson\n"
        "from sandbox.simulate import CityConfig, simulate\n"
        "c = simulate(CityConfig(subscribers=400, days=1.0, seed=5))\n"
        "rows = (*c.events, *c.cases, *c.responders)\n"
        "print(hashlib.sha256(b''.join(orjson.dumps(o) for o in rows)).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_write_and_read_back(tmp_path: Path) -> None:
    city = simulate(SMALL)
    paths = write_city(city, tmp_path / "a")
    again = write_city(simulate(SMALL), tmp_path / "b")
    assert set(paths) == {"events", "cases", "responders", "city"}
    for name, path in paths.items():
        assert path.read_bytes() == again[name].read_bytes()
    assert list(iter_jsonl(paths["events"])) == city.events
    assert list(iter_jsonl(paths["cases"])) == city.cases
    assert list(iter_jsonl(paths["responders"])) == city.responders


def test_city_meta_is_written_beside_the_files(tmp_path: Path) -> None:
    city = simulate(SMALL)
    paths = write_city(city, tmp_path / "a")
    meta = read_city_meta(paths["events"])
    assert meta is not None and meta == read_city_meta(tmp_path / "a")
    # The residents are the simulated subscribers, not every number seen as a callee (outsiders are callees too).
    assert meta["residents"] == SMALL.subscribers
    callees = {e["callee"] for e in city.events if e["schema"] == "call.v1"}
    assert len(callees) > meta["residents"]
    assert (meta["days"], meta["seed"], meta["start_ms"]) == (SMALL.days, SMALL.seed, SMALL.start_ms)
    assert meta["cases"] == len(city.cases) and meta["events"] == len(city.events)
    assert set(meta["scenarios"]) == set(SMALL.scenario_mix)
    assert CityConfig(**meta["config"]) == SMALL
    assert read_city_meta(tmp_path / "nowhere") is None
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "city.json").write_text('{"days": 2}')  # no residents: not usable as a denominator
    assert read_city_meta(tmp_path / "b" / "events.jsonl") is None


def test_small_city_is_fast() -> None:
    started = time.perf_counter()
    city = simulate(CityConfig(subscribers=3000, days=1.0, seed=1))
    assert time.perf_counter() - started < 5.0
    assert len(city.events) > 3000 * 2


def test_every_event_passes_the_decoder(city: SimulatedCity) -> None:
    ids = [e["event_id"] for e in city.events]
    assert len(ids) == len(set(ids))
    assert [e["ts_ms"] for e in city.events] == sorted(e["ts_ms"] for e in city.events)
    start = 1_767_225_600_000
    for ev in city.events:
        decoded = decode_obj(ev)
        assert start <= decoded.ts_ms < start + 2 * 86_400_000
        if ev["schema"] == "call.v1":
            assert ev["event_id"].startswith("c-3-")
            assert ev["answered"] or ev["duration_s"] == 0
        else:
            assert ev["event_id"].startswith("t-3-")
            assert ev["currency"] == "CNY"
            assert round(ev["amount"], 2) == ev["amount"]
            assert ev["payer_account"].startswith("ACC") and ev["payee_account"].startswith("ACC")


def test_locations_mostly_present(city: SimulatedCity) -> None:
    calls = [e for e in city.events if e["schema"] == "call.v1"]
    transfers = [e for e in city.events if e["schema"] == "transfer.v1"]
    assert sum("callee_lat" in e for e in calls) > 0.5 * len(calls)
    assert sum("lat" in e for e in transfers) > 0.7 * len(transfers)


def test_cases_are_consistent(city: SimulatedCity, by_id: dict[str, dict[str, Any]]) -> None:
    assert city.cases
    assert len({c["case_id"] for c in city.cases}) == len(city.cases)
    assert len({c["victim"] for c in city.cases}) == len(city.cases)
    for case in city.cases:
        assert case["schema"] == "case.v1"
        for name in CASE_FIELDS:
            assert name in case
        events = [by_id[eid] for eid in case["event_ids"]]  # KeyError = an id that is no event
        calls = [e for e in events if e["schema"] == "call.v1"]
        transfers = [e for e in events if e["schema"] == "transfer.v1" and e["subscriber"] == case["victim"]]
        # The only other transfers of a case are the 'rebates' a mule pays into the victim's account.
        rebates = [e for e in events if e["schema"] == "transfer.v1" and e["subscriber"] != case["victim"]]
        assert all(case["scenario"] == "task_scam" for _ in rebates)
        assert calls and case["first_contact_ms"] == calls[0]["ts_ms"] == min(e["ts_ms"] for e in calls)
        assert all(e["callee"] == case["victim"] for e in calls)
        assert case["origin"] in ("script", "sweep")
        assert set(case["fraud_numbers"]) == {e["caller"] for e in calls}
        if case["first_loss_ms"] is None:
            assert not transfers
        else:
            assert case["first_loss_ms"] == transfers[0]["ts_ms"] == min(e["ts_ms"] for e in transfers)
            assert case["first_loss_ms"] >= case["first_contact_ms"]


def test_fraud_payees_are_new_to_the_victim(city: SimulatedCity, by_id: dict[str, dict[str, Any]]) -> None:
    paid_before: dict[str, set[str]] = defaultdict(set)
    first_loss_ids = set()
    for case in city.cases:
        transfers = [
            by_id[i]
            for i in case["event_ids"]
            if by_id[i]["schema"] == "transfer.v1" and by_id[i]["subscriber"] == case["victim"]
        ]
        if transfers:
            first_loss_ids.add(transfers[0]["event_id"])
    for ev in city.events:
        if ev["schema"] != "transfer.v1":
            continue
        if ev["event_id"] in first_loss_ids:
            assert ev["payee_account"] not in paid_before[ev["subscriber"]]
        paid_before[ev["subscriber"]].add(ev["payee_account"])


def test_scenarios_and_outcomes(city: SimulatedCity, by_id: dict[str, dict[str, Any]]) -> None:
    scenarios = Counter(c["scenario"] for c in city.cases)
    for name in ("police_impersonation", "investment", "refund", "loan"):
        assert scenarios[name] > 0, name
    scripted = [c for c in city.cases if c["origin"] == "script"]
    no_loss = sum(c["first_loss_ms"] is None for c in scripted)
    assert 0 < no_loss < len(scripted) * 0.6
    paid_in_first_call = 0
    for case in scripted:
        if case["first_loss_ms"] is None:
            continue
        first = next(by_id[i] for i in case["event_ids"] if by_id[i]["schema"] == "call.v1")
        if first["ts_ms"] <= case["first_loss_ms"] <= first["ts_ms"] + first["duration_s"] * 1000:
            paid_in_first_call += 1
    assert paid_in_first_call < len(scripted) * 0.3


def test_every_long_answered_fraud_call_makes_a_case(city: SimulatedCity) -> None:
    """The contract: whoever answered a fraud number's call of 120 s or more is a case, listing that call."""
    numbers = {n for c in city.cases for n in c["fraud_numbers"]}
    listed = {eid: c for c in city.cases for eid in c["event_ids"]}
    long_calls = [
        e
        for e in city.events
        if e["schema"] == "call.v1" and e["caller"] in numbers and e["answered"] and e["duration_s"] >= 120
    ]
    assert long_calls
    for ev in long_calls:
        assert ev["event_id"] in listed and listed[ev["event_id"]]["victim"] == ev["callee"]
    # Every fraud-number call to a case's victim is one of the case's events, short or unanswered alike.
    victims = {c["victim"] for c in city.cases}
    for ev in city.events:
        if ev["schema"] == "call.v1" and ev["caller"] in numbers and ev["callee"] in victims:
            assert listed[ev["event_id"]]["victim"] == ev["callee"]


def test_sweep_cases_never_lose_money_and_stay_a_minority(city: SimulatedCity) -> None:
    swept = [c for c in city.cases if c["origin"] == "sweep"]
    assert swept
    assert all(c["first_loss_ms"] is None and c["loss_amount"] == 0 for c in swept)
    assert len(swept) < 2 * sum(c["origin"] == "script" for c in city.cases)


def test_fraud_calls_come_from_mixed_ranges(city: SimulatedCity, by_id: dict[str, dict[str, Any]]) -> None:
    kinds = Counter(by_id[i]["caller_kind"] for c in city.cases for i in c["event_ids"] if i.startswith("c-"))
    assert sum(1 for c in city.cases if any(by_id[i].get("caller_kind") == "mobile" for i in c["event_ids"])) > 0
    assert 0.1 < kinds["mobile"] / sum(kinds.values()) < 0.6
    assert len(kinds) >= 3


def test_repeat_attempts_exist(city: SimulatedCity, by_id: dict[str, dict[str, Any]]) -> None:
    """Some case has a fraud call after an earlier one that was unanswered or cut short."""
    found = False
    for case in city.cases:
        calls = [by_id[i] for i in case["event_ids"] if i.startswith("c-")]
        if any(not e["answered"] or e["duration_s"] < 120 for e in calls[:-1]):
            found = True
    assert found


def test_sweeps_reach_non_victims(city: SimulatedCity) -> None:
    numbers = {n for c in city.cases for n in c["fraud_numbers"]}
    victims = {c["victim"] for c in city.cases}
    swept = {e["callee"] for e in city.events if e["schema"] == "call.v1" and e["caller"] in numbers}
    assert len(swept - victims) > 10 * len(victims)


def test_legitimate_look_alikes_exist(city: SimulatedCity, fraud_ids: set[str]) -> None:
    legit = [e for e in city.events if e["event_id"] not in fraud_ids]
    legit_calls = [e for e in legit if e["schema"] == "call.v1"]
    long_overseas = [e for e in legit_calls if e["caller_kind"] == "overseas" and e["duration_s"] >= 600]
    assert len(long_overseas) > 0
    long_suspicious_range = [
        e for e in legit_calls if e["caller_kind"] in ("virtual", "voip", "landline") and e["duration_s"] >= 900
    ]
    assert len(long_suspicious_range) > 0
    fan_out = Counter(e["caller"] for e in legit_calls if e["caller_kind"] != "mobile")
    assert fan_out.most_common(1)[0][1] > 100

    paid_before: dict[str, set[str]] = defaultdict(set)
    large_new = 0
    for ev in city.events:
        if ev["schema"] != "transfer.v1":
            continue
        new = ev["payee_account"] not in paid_before[ev["subscriber"]]
        paid_before[ev["subscriber"]].add(ev["payee_account"])
        if new and ev["amount"] >= 10_000 and ev["event_id"] not in fraud_ids:
            large_new += 1
    assert large_new > 0

    per_hour_payer: Counter[str] = Counter()
    for ev in legit:
        if ev["schema"] == "transfer.v1":
            per_hour_payer[f"{ev['subscriber']}/{ev['ts_ms'] // 3_600_000}"] += 1
    assert per_hour_payer.most_common(1)[0][1] >= 4  # shopping bursts

    local_hours = Counter(((e["ts_ms"] // 3_600_000) + 8) % 24 for e in legit)
    assert sum(local_hours[h] for h in (0, 1, 2, 3, 4)) > 0.01 * len(legit)  # night-shift workers


def test_responders(city: SimulatedCity) -> None:
    police = [r for r in city.responders if r["kind"] == "police"]
    grid = [r for r in city.responders if r["kind"] == "grid_worker"]
    assert len(police) == 8 * 4 and len(grid) == 40
    assert {r["unit"] for r in police} == {f"PS{i:02d}" for i in range(1, 9)}
    assert all(r["unit"].startswith("G") for r in grid)
    assert len({r["responder_id"] for r in city.responders}) == len(city.responders)
    statuses = Counter(r["status"] for r in city.responders)
    assert set(statuses) <= {"available", "busy", "off_duty"}
    assert statuses["available"] > len(city.responders) / 2
    for r in city.responders:
        assert abs(r["lat"] - 31.23) < 0.3 and abs(r["lon"] - 121.47) < 0.3


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        CityConfig(subscribers=0)
    with pytest.raises(ValueError):
        CityConfig(days=0)


def test_tiny_city_with_fractional_days() -> None:
    city = simulate(CityConfig(subscribers=50, days=0.5, seed=11, fraud_rings=2))
    assert city.events
    for ev in city.events:
        assert 1_767_225_600_000 <= decode_obj(ev).ts_ms < 1_767_225_600_000 + 43_200_000


def test_targeted_rings_call_only_the_victims_they_work() -> None:
    def fraud_line_calls(share: float) -> tuple[int, int]:
        city = simulate(
            CityConfig(subscribers=1500, days=2.0, seed=3, victims_per_10k_per_day=40, targeted_ring_share=share)
        )
        fraud = {n for case in city.cases for n in case["fraud_numbers"]}
        calls = Counter(e["caller"] for e in city.events if e["schema"] == "call.v1" and e["caller"] in fraud)
        return sorted(calls.values())[len(calls) // 2], sum(1 for c in city.cases if c["first_loss_ms"] is not None)

    sweeping, targeted = fraud_line_calls(0.0), fraud_line_calls(1.0)
    assert sweeping[0] >= 10 and targeted[0] <= 3  # median calls per fraud line
    assert targeted[1] >= 0.7 * sweeping[1]  # the worked victims are still worked
    with pytest.raises(ValueError):
        CityConfig(targeted_ring_share=1.5)


def test_a_police_feed_reports_each_loss_after_its_delay_and_changes_nothing_else() -> None:
    base = CityConfig(subscribers=1500, days=3.0, seed=5, victims_per_10k_per_day=40)
    without = simulate(base)
    city = simulate(replace(base, report_delay_days=1.0))
    reports = [e for e in city.events if e["schema"] == "case.v1"]
    others = [e for e in city.events if e["schema"] != "case.v1"]
    assert others == without.events and city.cases == without.cases  # the same city, with reports beside it
    end = base.start_ms + int(base.days * 86_400_000)
    expected = {
        c["case_id"]: c["first_loss_ms"] + 86_400_000
        for c in city.cases
        if c["first_loss_ms"] is not None and c["first_loss_ms"] + 86_400_000 <= end
    }
    assert expected and {r["case_id"]: r["reported_ms"] for r in reports} == expected
    assert city.meta["police_reports"] == len(reports) and without.meta["police_reports"] == 0
    times = [e.get("ts_ms", e.get("reported_ms")) for e in city.events]
    assert times == sorted(times)  # in the stream's order
    for report in reports:
        assert decode_obj(report).available_ms == report["reported_ms"]  # valid on the reports topic
    with pytest.raises(ValueError):
        CityConfig(report_delay_days=-1.0)
