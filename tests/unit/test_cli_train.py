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


def test_train_counts_the_files_residents_city_json_then_fw_residents_then_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.train import TrainConfig
    from sandbox import training

    seen: list[tuple[TrainConfig, dict[str, object]]] = []

    def fake_train(_data: object, _victims: object, _registry: object, config: TrainConfig, info: dict) -> None:
        seen.append((config, info))
        raise SystemExit(0)

    city = simulate(CityConfig(subscribers=100, days=0.2, seed=3, victims_per_10k_per_day=40))
    paths = write_city(city, tmp_path)
    monkeypatch.setattr(training, "train_model", fake_train)
    args = ["train", str(paths["events"]), str(paths["cases"]), "--no-promote"]

    def train_with(residents: int) -> None:
        settings = Settings(data_dir=tmp_path / "data", compile_models=False, residents=residents)
        monkeypatch.setattr(cli, "get_settings", lambda: settings)
        CliRunner().invoke(cli.app, args)

    train_with(0)
    (tmp_path / "city.json").unlink()  # now a stream from elsewhere: FW_RESIDENTS, else nothing known
    train_with(70)
    train_with(0)
    (by_city, info), (by_env, env_info) = seen[0], seen[1]
    assert by_city.resident_spans == ((100, city.meta["start_ms"], city.meta["end_ms"]),)
    assert info["residents"] == 100 and info["residents_source"] == "city.json"
    assert by_env.resident_spans[0][0] == 70 and env_info["residents_source"] == "FW_RESIDENTS"
    assert len(seen) == 3 and seen[2][0].resident_spans == () and seen[2][1]["residents"] is None


def test_train_from_a_labels_file_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outcome labels as the responders' records make them: victims visited (dissuaded), innocents visited
    (false_alarm), one unreachable and one delivered twice; the model learns from them with no cases file."""
    import orjson

    from core.events import Event
    from models.dataset import load_events, read_jsonl

    paths = write_city(simulate(CityConfig(subscribers=800, days=4, seed=3, victims_per_10k_per_day=60)), tmp_path)
    cases = read_jsonl(paths["cases"])
    events: list[Event] = load_events(paths["events"]).events
    first_seen: dict[str, int] = {}
    for event in events:
        first_seen.setdefault(event.subscriber, event.ts_ms)
    labels = []
    for n, case in enumerate(cases):
        times = [e.ts_ms for e in events if e.event_id in set(case["event_ids"])]
        labels.append(
            {"task_id": f"t{n}", "subscriber": case["victim"], "outcome": "dissuaded", "target": 1, "intervened": True,
             "episode_start_ms": min(times), "episode_end_ms": max(times)}
        )  # fmt: skip
    victims = {c["victim"] for c in cases}
    innocents = [s for s in first_seen if s not in victims][:20]
    for n, sub in enumerate(innocents):
        outcome, target = ("unreachable", None) if n == 0 else ("false_alarm", 0)
        labels.append(
            {"task_id": f"f{n}", "subscriber": sub, "outcome": outcome, "target": target,
             "episode_start_ms": first_seen[sub], "episode_end_ms": first_seen[sub] + 3_600_000}
        )  # fmt: skip
    labels.append(labels[0])  # the topic is at least once
    dump = tmp_path / "labels.jsonl"
    dump.write_bytes(b"\n".join(orjson.dumps(lb) for lb in labels) + b"\n")

    settings = Settings(data_dir=tmp_path / "data", compile_models=False)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    args = ["train", str(paths["events"]), "--labels", str(dump), "--no-promote", "--models", "1"]
    result = CliRunner().invoke(cli.app, [*args, "--threshold-folds", "0"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    field = out["sources"]["field_labels"]
    assert field["positives"] == len(cases) and field["negatives"] == len(innocents) - 1
    assert field["unknown_left_out"] == 1 and field["duplicates_dropped"] == 1 and field["intervened"] == len(cases)
    assert out["sources"]["cases_file"] is None
    assert (
        out["metrics"]["positives"]["train"] > 0 and out["metrics"]["calibration_roc_auc"] > 0.8
    )  # learnt from labels

    missing = tmp_path / "bad.jsonl"
    missing.write_text('{"task_id": "x"}\n')
    bad = CliRunner().invoke(cli.app, ["train", str(paths["events"]), "--labels", str(missing)])
    assert bad.exit_code != 0
