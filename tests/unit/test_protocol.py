"""The generalisation protocol: what it leaves out of training, how it counts per resident, its seams, the CLI."""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.settings import Settings
from models import ModelVersion
from sandbox.protocol import (
    PROTOCOL_SCHEMA,
    JudgedCity,
    ProtocolConfig,
    format_table,
    protocol_path,
    run_protocol,
)
from sandbox.simulate import SCENARIOS, CityConfig
from sandbox.training import last_protocol_result

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TINY = CityConfig(subscribers=300, days=2.0, seed=5, victims_per_10k_per_day=300.0)


def _fake_result(share_by: float, false_tasks_rate: float) -> dict[str, Any]:
    with_loss = 10
    by = round(share_by * with_loss)
    figures = {
        "cases": 12,
        "cases_with_loss": with_loss,
        "cases_flagged_before_loss": max(by - 1, 0),
        "cases_flagged_by_loss": by,
        "median_lead_time_s": 600.0,
    }
    return {
        **figures,
        "days": 1.0,
        "false_tasks": 3,
        "pr_auc": 0.5,
        "task_threshold": 0.9,
        "false_tasks_per_10k_residents_per_day": false_tasks_rate,
        "per_scenario": {name: dict(figures) for name in SCENARIOS},
        "oracle": None,
    }


def test_run_protocol_leaves_out_each_scenario_once_through_the_seams(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    config = ProtocolConfig(
        train_subscribers=200,
        train_days=1.0,
        judge_days=1.0,
        judge_warmup_days=0.5,
        large_subscribers=400,
        large_days=0.5,
        large_warmup_days=0.5,
        other_cities=((300, 1.0, 0.0, 0.0, 11),),
    )
    trained: list[tuple[list[int], set[str]]] = []
    judged: list[tuple[str, int]] = []
    mixes: list[tuple[str, Any]] = []

    def train_fn(configs: Sequence[CityConfig], exclude: Collection[str]) -> ModelVersion:
        trained.append(([c.subscribers for c in configs], set(exclude)))
        return ModelVersion(f"v-{'-'.join(sorted(exclude)) or 'all'}", tmp_path, {})

    def evaluate_fn(version: ModelVersion, city: JudgedCity) -> dict[str, Any]:
        judged.append((version.version, city.residents))
        mixes.append((version.version, getattr(city.config, "scenario_weights", type(city.config).__name__)))
        # "loan" left out is caught 2 times in 10 by the loss; every other left-out scenario 8 times.
        return _fake_result(0.2 if version.version == "v-loan" else 0.8, 0.5)

    result = run_protocol(settings, config, train_fn=train_fn, evaluate_fn=evaluate_fn)
    assert trained == [([200], {s}) for s in SCENARIOS] + [([200], set())]
    # Each model on a held-out city of the training size; the every-scenario model on the mixed one, on every
    # scenario's own city (what each left-out model is compared with) and on the large one.
    n = len(SCENARIOS)
    assert judged == [(f"v-{s}", 200) for s in SCENARIOS] + [("v-all", 200)] * (n + 1) + [
        ("v-all", 400),
        ("v-all", 300),
    ]
    # Last, the every-scenario model on the other generator's city (written apart from our simulator).
    assert mixes[-1] == ("v-all", "OtherConfig")
    (other,) = result["other_generator"]
    assert other["residents"] == 300 and other["city"].startswith("other generator, 300 x 1 d, cold")
    assert other["per_scenario"]["loan"]["flagged_by_loss"] == 8
    # A left-out scenario is judged on a city whose every case is that scenario; the mixed city has them all.
    assert mixes[:n] == [(f"v-{s}", ((s, 1.0),)) for s in SCENARIOS]
    assert mixes[n] == ("v-all", None)
    assert mixes[n + 1 : 2 * n + 1] == [("v-all", ((s, 1.0),)) for s in SCENARIOS]
    assert [r["scenario"] for r in result["leave_one_scenario_out"]] == list(SCENARIOS)
    assert result["below_half_by_loss"] == ["loan"]
    assert [r["residents"] for r in result["small_to_large"]] == [200, 400]
    # The held-out cities: other seeds, after the training days, as many residents as asked.
    judged_city, train_city = result["judged_city"], result["train_city"]
    assert judged_city["seed"] != train_city["seed"] and judged_city["start_ms"] >= train_city["start_ms"] + 86_400_000
    assert result["schema"] == PROTOCOL_SCHEMA
    saved = orjson.loads(protocol_path(settings).read_bytes())
    assert saved["leave_one_scenario_out"] == result["leave_one_scenario_out"]
    assert last_protocol_result(settings) == saved  # where the model card looks
    table = "\n".join(format_table(result))
    assert "| loan | 10 | 1/10 (10 %) | 2/10 (20 %) | 10.0 | 0.50 |" in table
    assert "| police_impersonation | 10 | 7/10 (70 %) | 8/10 (80 %) |" in table
    assert "| other generator, 300 x 1 d, cold, no signalling | 300 |" in table

    # Many training worlds (e.g. a world sampler's) reach train_fn as given; judging is unchanged.
    trained.clear()
    worlds = [dataclasses.replace(TINY, subscribers=n) for n in (100, 1000)]
    again = run_protocol(
        settings, config, train_fn=train_fn, evaluate_fn=evaluate_fn, train_cities=worlds, out=tmp_path / "w.json"
    )
    assert trained == [([100, 1000], {s}) for s in SCENARIOS] + [([100, 1000], set())]
    assert [c["subscribers"] for c in again["train_cities"]] == [100, 1000]


def test_cli_generalise_quick_runs_the_real_recipe_within_a_cpu_minute(tmp_path: Path) -> None:
    env = {**os.environ, "FW_DATA_DIR": str(tmp_path), "FW_COMPILE_MODELS": "0", "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "fraudwatch.cli", "generalise", "--quick", "--out", str(tmp_path / "g.json")],
        env=env,
        capture_output=True,
        timeout=240,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds, not wall time: the 2 cores are shared, and a wall-clock bound would test the neighbours.
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = orjson.loads(done.stdout)
    assert (
        orjson.loads((tmp_path / "g.json").read_bytes())["leave_one_scenario_out"] == (result["leave_one_scenario_out"])
    )
    versions = {r["model_version"] for r in result["leave_one_scenario_out"]}
    assert len(versions) == len(SCENARIOS), "one model per left-out scenario"
    for row in result["leave_one_scenario_out"]:
        assert 0 <= row["flagged_before_loss"] <= row["flagged_by_loss"] <= row["cases_with_loss"]
        assert row["false_tasks_per_10k_residents_per_day"] >= 0
    # The protocol's models stay in their own registry: the live one is untouched.
    assert not (tmp_path / "models").exists() and (tmp_path / "protocol-models").is_dir()
    assert "| left-out scenario |" in done.stderr.decode()
    assert [r["residents"] for r in result["other_generator"]] == [600, 400]
    for row in result["other_generator"]:
        assert 0 <= row["flagged_before_loss"] <= row["flagged_by_loss"] <= row["cases_with_loss"]
    assert cpu_s < 60, f"--quick took {cpu_s:.0f} CPU seconds"


def test_the_protocol_may_train_beside_the_other_generator() -> None:
    from sandbox.othergen import OtherConfig

    ours_only = ProtocolConfig(worlds=2).training_worlds()
    both = ProtocolConfig(worlds=2, other_worlds=1).training_worlds()
    assert both[:2] == ours_only and isinstance(both[2], OtherConfig)
    assert both[2].start_ms == ours_only[0].start_ms  # the time-ordered split cuts every world alike
    assert ProtocolConfig().training_worlds() == [ProtocolConfig().train_city()]
