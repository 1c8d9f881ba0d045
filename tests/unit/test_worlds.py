"""The world sampler: seeded, spans the ranges it promises, keeps the cost budget, leaves scenarios out."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from sandbox.simulate import SCENARIOS, CityConfig, simulate
from sandbox.worlds import WorldRanges, describe_world, sample_other_worlds, sample_worlds

pytestmark = pytest.mark.unit


def test_same_seed_same_worlds_other_seed_other_worlds() -> None:
    assert sample_worlds(5, 3) == sample_worlds(5, 3)
    assert sample_worlds(5, 3) != sample_worlds(5, 4)
    assert len({w.seed for w in sample_worlds(8, 3)}) == 8


def test_sizes_span_a_tenfold_range_and_share_a_start() -> None:
    worlds = sample_worlds(6, 11)
    sizes = sorted(w.subscribers for w in worlds)
    assert sizes[0] >= 3000 and sizes[-1] <= 30_000
    assert sizes[-1] / sizes[0] > 4  # one world per slice of the log range: the extremes are far apart
    assert len({w.start_ms for w in worlds}) == 1 and worlds[0].start_ms == CityConfig().start_ms
    many = [w.subscribers for seed in range(20) for w in sample_worlds(4, seed)]
    assert min(many) < 3600 and max(many) > 25_000


def test_days_follow_the_subscriber_days_budget() -> None:
    ranges = WorldRanges(subscribers=(2000, 20_000), subscriber_days=80_000, days=(1.0, 14.0))
    worlds = sample_worlds(4, 5, ranges)
    spent = sum(w.subscribers * w.days for w in worlds)
    assert math.isclose(spent, 80_000, rel_tol=0.01)
    by_size = sorted(worlds, key=lambda w: w.subscribers)
    assert by_size[0].days >= by_size[-1].days  # bigger cities, fewer days
    assert all(1.0 <= w.days <= 14.0 for w in worlds)
    # A budget too small for the floor: every world gets the minimum, and no fewer days.
    tight = sample_worlds(3, 5, WorldRanges(subscriber_days=1000, days=(1.5, 14.0)))
    assert {w.days for w in tight} == {1.5}


def test_worlds_differ_in_what_a_world_can_differ_in() -> None:
    worlds = sample_worlds(12, 2)
    for attr in ("victims_per_10k_per_day", "lookalike_scale", "scam_time_scale", "sweep_pitch_share", "refuse_share"):
        assert len({getattr(w, attr) for w in worlds}) == 12, attr
    mobile = [dict(w.fraud_line_kinds or ())["mobile"] for w in worlds]
    assert min(mobile) < 0.45 and sum(m > 0.5 for m in mobile) >= 3  # many worlds: most fraud lines mobile
    for w in worlds:
        kinds = dict(w.fraud_line_kinds or ())
        assert math.isclose(sum(kinds.values()), 1.0, abs_tol=1e-3)
        assert w.fraud_rings >= 2
    mixes = [set(w.scenario_mix) for w in worlds]
    assert any(len(m) < len(SCENARIOS) for m in mixes)  # some worlds drop scenarios
    assert all(len(m) >= 4 for m in mixes)
    assert set().union(*mixes) == set(SCENARIOS)


def test_excluded_scenarios_never_appear() -> None:
    worlds = sample_worlds(6, 9, exclude_scenarios=["refund", "kidnapping"])
    assert all(not {"refund", "kidnapping"} & set(w.scenario_mix) for w in worlds)
    with pytest.raises(ValueError, match="unknown scenario"):
        sample_worlds(2, 9, exclude_scenarios=["pigeon"])
    with pytest.raises(ValueError):
        sample_worlds(2, 9, exclude_scenarios=SCENARIOS)


def test_a_small_sampled_world_simulates_with_its_scenarios_only() -> None:
    ranges = WorldRanges(subscribers=(400, 600), subscriber_days=600, days=(1.0, 2.0))
    world = sample_worlds(1, 4, ranges, exclude_scenarios=["police_impersonation"])[0]
    world = CityConfig(**{**world.__dict__, "victims_per_10k_per_day": 300.0, "fraud_rings": 12})
    city = simulate(world)
    seen = Counter(c["scenario"] for c in city.cases)
    assert seen and set(seen) <= set(world.scenario_mix)
    assert city.meta["residents"] == world.subscribers


def test_describe_world_is_plain_json() -> None:
    info = describe_world(sample_worlds(1, 1)[0])
    assert set(info["scenarios"]) <= set(SCENARIOS)  # type: ignore[arg-type]
    assert isinstance(info["subscribers"], int) and isinstance(info["fraud_mobile_share"], float)


def test_the_demo_trains_on_worlds_costing_one_training_city() -> None:
    from sandbox.demo import DEFAULT_TRAIN_WORLDS, DemoConfig, default_training_worlds

    config = DemoConfig()
    worlds = default_training_worlds(config)
    assert len(worlds) == DEFAULT_TRAIN_WORLDS and worlds == default_training_worlds(config)
    spent = sum(w.subscribers * w.days for w in worlds)
    assert math.isclose(spent, config.subscribers * config.train_days, rel_tol=0.02)
    assert all(2000 <= w.subscribers <= 10_000 and w.days >= 2.0 for w in worlds)
    assert max(w.subscribers for w in worlds) / min(w.subscribers for w in worlds) > 3


def test_worlds_take_their_signalling_shares_in_turn() -> None:
    assert [w.signalling for w in sample_worlds(3, seed=1)] == [1.0, 0.0, 0.5]  # full, none, lossy by default
    worlds = sample_worlds(4, seed=1, ranges=WorldRanges(signalling=(1.0, 0.0, 0.5)))
    assert [w.signalling for w in worlds] == [1.0, 0.0, 0.5, 1.0]
    assert describe_world(worlds[2])["signalling"] == 0.5
    with pytest.raises(ValueError):
        WorldRanges(signalling=())


def test_other_generator_worlds_are_sampled_from_the_same_ranges() -> None:
    from sandbox.othergen import SCENARIOS as OTHER_SCENARIOS

    ranges = WorldRanges(subscribers=(3000, 30_000), subscriber_days=60_000, drop_probability=0.5)
    worlds = sample_other_worlds(3, seed=2, ranges=ranges, exclude_scenarios=["safe_account"], start_ms=123)
    assert worlds == sample_other_worlds(3, seed=2, ranges=ranges, exclude_scenarios=["safe_account"], start_ms=123)
    assert all(3000 <= w.residents <= 30_000 and w.days >= 2.0 and w.start_ms == 123 for w in worlds)
    assert [w.signalling for w in worlds] == [1.0, 0.0, 0.5]
    for w in worlds:
        names = w.scenarios if w.scenarios is not None else OTHER_SCENARIOS
        assert "safe_account" not in names and len(names) >= ranges.min_scenarios
    assert len({w.seed for w in worlds}) == 3
    assert describe_world(worlds[0])["generator"] == "other"


def test_targeted_rings_are_drawn_only_when_a_range_is_given() -> None:
    assert all(w.targeted_ring_share == 0.0 for w in sample_worlds(3, seed=1))
    worlds = sample_worlds(4, seed=1, ranges=WorldRanges(targeted_ring_share=(0.2, 0.7)))
    assert all(0.2 <= w.targeted_ring_share <= 0.7 for w in worlds)
    assert describe_world(worlds[0])["targeted_ring_share"] == worlds[0].targeted_ring_share
