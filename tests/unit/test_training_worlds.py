"""Training over many simulated worlds: pooled rows, the worlds recorded, scenarios left out, the CLI option."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from core.errors import TrainingDataError
from core.settings import Settings
from fraudwatch import cli
from models.dataset import Dataset, concat_datasets
from sandbox import training
from sandbox.othergen import OtherConfig
from sandbox.simulate import CityConfig
from sandbox.training import train_on_worlds, without_scenarios, worlds_of
from sandbox.worlds import WorldRanges, sample_worlds

pytestmark = pytest.mark.unit

# Two small, case-rich worlds of different sizes; a model trains on them in seconds.
TINY = WorldRanges(subscribers=(500, 1000), subscriber_days=2400, days=(2.0, 4.0), victims_per_10k_per_day=(80, 120))


def _rows(avail: list[int], label: int) -> Dataset:
    from features import FeatureRow

    rows = [FeatureRow(f"e{label}-{t}", f"+86130{t:08d}", t, True, (float(label),) * 3, None, None) for t in avail]
    n = len(rows)
    return Dataset(rows, np.full((n, 3), float(label)), np.full(n, label, dtype=np.int8), np.asarray(avail, np.int64))


def test_concat_merges_in_arrival_order() -> None:
    a, b = _rows([1, 5, 9], 0), _rows([2, 3, 10], 1)
    both = concat_datasets([a, b])
    assert both.avail_ms.tolist() == [1, 2, 3, 5, 9, 10]
    assert both.y.tolist() == [0, 1, 1, 0, 0, 1]
    assert both.X[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert both.rows[1] is b.rows[0] and both.rows[3] is a.rows[1]
    empty = Dataset([], np.asarray([]), np.asarray([], np.int8), np.asarray([], np.int64))
    assert concat_datasets([empty, a]).X.shape == (3, 3)
    with pytest.raises(ValueError):
        concat_datasets([])


def test_without_scenarios_keeps_the_rest_of_the_mix() -> None:
    world = without_scenarios(CityConfig(), ["refund"])
    assert "refund" not in world.scenario_mix and len(world.scenario_mix) == 8
    assert without_scenarios(world, []) is world
    with pytest.raises(TrainingDataError):
        without_scenarios(CityConfig(scenario_weights=(("loan", 1.0),)), ["loan"])


def test_train_on_worlds_pools_them_and_records_them(tmp_path: Path) -> None:
    worlds = sample_worlds(2, 3, TINY)
    settings = Settings(data_dir=tmp_path / "data", compile_models=False)
    version = train_on_worlds(
        worlds, settings, exclude_scenarios=["kidnapping"], n_models=1, threshold_folds=0, out_dir=tmp_path / "w"
    )
    data = version.meta["data"]
    assert [w["seed"] for w in data["worlds"]] == [w.seed for w in worlds]
    assert [w["subscribers"] for w in data["worlds"]] == [w.subscribers for w in worlds]
    assert data["excluded_scenarios"] == ["kidnapping"]
    # Thresholds count per resident: each world's subscribers over its own days.
    assert data["residents"] == sum(w.subscribers for w in worlds)
    spans = version.meta["train_config"]["resident_spans"]
    assert [(r, hi - lo) for r, lo, hi in spans] == [(w.subscribers, int(w.days * 86_400_000)) for w in worlds]
    assert version.meta["threshold_info"]["per"] == "resident"
    assert all("kidnapping" not in w["scenarios"] for w in data["worlds"])
    # The pooled rows are every world's rows.
    per_world = [sum(1 for _ in (tmp_path / "w" / f"world-{k}" / "events.jsonl").open()) for k in (1, 2)]
    assert data["events"] == sum(per_world) and data["rows"] >= sum(per_world)
    for k in (1, 2):
        cases = [json.loads(line) for line in (tmp_path / "w" / f"world-{k}" / "cases.jsonl").open()]
        assert cases and all(c["scenario"] != "kidnapping" for c in cases)
    assert not (settings.models_path / "live").exists()  # not promoted unless asked


def test_other_generator_worlds_train_beside_ours_and_are_recorded_to_be_made_again(tmp_path: Path) -> None:
    ours = sample_worlds(1, 3, TINY)[0]
    other = OtherConfig(residents=600, days=2.0, seed=4, start_ms=ours.start_ms, victims_per_10k_per_day=150.0)
    settings = Settings(data_dir=tmp_path / "data", compile_models=False)
    version = train_on_worlds(
        [ours, other],
        settings,
        exclude_scenarios=["safe_account", "kidnapping"],
        n_models=1,
        threshold_folds=0,
        out_dir=tmp_path / "w",
    )
    data = version.meta["data"]
    assert [w.get("generator") for w in data["worlds"]] == [None, "other"]
    assert data["residents"] == ours.subscribers + 600
    # The left-out scenario is gone from the other generator's world too (its cases are its scripts').
    cases = [json.loads(line) for line in (tmp_path / "w" / "world-2" / "cases.jsonl").open()]
    assert cases and all(c["scenario"] != "safe_account" for c in cases)
    assert json.loads((tmp_path / "w" / "world-2" / "city.json").read_text())["generator"] == "other"
    # A retrain (the field trial) makes the same worlds again from the metadata.
    again = worlds_of(version)
    assert again is not None and again[0] == without_scenarios(ours, ["kidnapping"])
    assert again[1] == without_scenarios(other, ["safe_account"])


def test_train_on_no_worlds_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError):
        train_on_worlds([], Settings(data_dir=tmp_path))


def test_cli_train_worlds_samples_and_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(worlds: list[CityConfig], _settings: Settings, **kwargs: Any) -> None:
        seen["worlds"], seen["kwargs"] = worlds, kwargs
        raise SystemExit(0)

    monkeypatch.setattr(cli, "get_settings", lambda: Settings(data_dir=tmp_path, compile_models=False))
    monkeypatch.setattr(training, "train_on_worlds", fake)
    args = ["train", "--worlds", "5", "--world-seed", "3", "--exclude-scenario", "romance", "--no-promote"]
    CliRunner().invoke(cli.app, [*args, "--subscriber-days", "9000"])
    worlds = seen["worlds"]
    assert len(worlds) == 5 and all("romance" not in w.scenario_mix for w in worlds)
    assert worlds == sample_worlds(5, 3, WorldRanges(subscriber_days=9000), exclude_scenarios=["romance"])
    assert seen["kwargs"]["exclude_scenarios"] == ["romance"] and seen["kwargs"]["promote"] is False


def test_cli_train_wants_files_or_worlds_not_both(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli.app, ["train"]).exit_code != 0
    assert runner.invoke(cli.app, ["train", "e.jsonl", "c.jsonl", "--worlds", "2"]).exit_code != 0
    assert runner.invoke(cli.app, ["train", "e.jsonl", "c.jsonl", "--exclude-scenario", "loan"]).exit_code != 0
