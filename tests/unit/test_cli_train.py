"""``train``'s options reach the training run and are recorded in the model's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from fraudwatch import cli
from sandbox.simulate import CityConfig, simulate, write_city

pytestmark = pytest.mark.unit


def test_train_with_ensemble_and_fold_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Enough cases that each of 2 subscriber folds has positives in every time slice of this small city.
    paths = write_city(simulate(CityConfig(subscribers=800, days=4, seed=3, victims_per_10k_per_day=60)), tmp_path)
    settings = Settings(data_dir=tmp_path / "data", compile_models=False)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    opts = ["--no-promote", "--models", "2", "--threshold-folds", "2"]
    args = ["train", str(paths["events"]), str(paths["cases"]), *opts]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["threshold_info"]["method"] == "subscriber_folds" and out["threshold_info"]["folds"] == 2
    meta = json.loads((Path(out["path"]) / "meta.json").read_text())
    assert meta["train_config"]["n_models"] == 2 and meta["train_config"]["threshold_folds"] == 2
    assert not out["promoted"]


def test_train_rejects_zero_models(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["train", "e.jsonl", "c.jsonl", "--models", "0"])
    assert result.exit_code != 0


def test_train_defaults_are_train_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without --models / --threshold-folds the run gets TrainConfig's defaults (3 boosters, 4 folds).
    from models.train import TrainConfig
    from sandbox import training

    seen: list[TrainConfig] = []

    def fake_train(_data: object, _victims: object, _registry: object, config: TrainConfig, _meta: object) -> None:
        seen.append(config)
        raise SystemExit(0)

    paths = write_city(simulate(CityConfig(subscribers=100, days=0.2, seed=3, victims_per_10k_per_day=40)), tmp_path)
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(data_dir=tmp_path / "data", compile_models=False))
    monkeypatch.setattr(training, "train_model", fake_train)
    CliRunner().invoke(cli.app, ["train", str(paths["events"]), str(paths["cases"]), "--no-promote"])
    assert len(seen) == 1
    assert (seen[0].n_models, seen[0].threshold_folds) == (TrainConfig().n_models, TrainConfig().threshold_folds)
    assert (seen[0].n_models, seen[0].threshold_folds) == (3, 4)
