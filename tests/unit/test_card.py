"""Model cards: written after training on a hold-out city, from the CLI, and robust to thin data."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from core.settings import Settings
from features.registry import PARAMETERS_JSON
from models.card import (
    CARD_FILE,
    COLD_START_KEYS,
    METRIC_ROWS,
    PLOT_FILES,
    plot_lead_times,
    plot_per_scenario,
    plot_pr_curve,
    write_model_card,
)
from models.dataset import build_dataset, load_events, read_jsonl
from models.evaluate import MISS_REASONS, OPERATING_RATES, evaluate_dataset
from models.registry import ModelVersion
from models.scoring import Scorer
from sandbox.simulate import CityConfig, simulate, write_city
from sandbox.training import CARD_EVALUATION_FILE, evaluate_files, holdout_city, train_from_files, write_card_for

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN_CITY = CityConfig(subscribers=800, days=4.0, seed=11, victims_per_10k_per_day=80.0)
CASE_FIGURE_KEYS = {
    "cases",
    "cases_with_loss",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "share_flagged_before_loss",
    "share_flagged_by_loss",
    "median_lead_time_s",
    "cases_observable_by_loss",
    "cases_observable_before_loss",
    "observable_flagged_by_loss",
    "observable_flagged_before_loss",
    "missed_before_loss",
    "cases_first_flagged_during_call",  # signalling: flagged while on the line with the scam
    "cases_held_at_loss",  # payment holds
    "cases_stopped",
}


@dataclass(frozen=True)
class Trained:
    settings: Settings
    version: ModelVersion
    holdout_events: Path
    holdout_cases: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny model trained through ``train_from_files`` with a hold-out card city."""
    root = tmp_path_factory.mktemp("card")
    settings = Settings(data_dir=root, compile_models=False)
    paths = write_city(simulate(TRAIN_CITY), root / "train-city")
    version = train_from_files(
        paths["events"],
        paths["cases"],
        settings,
        promote=True,
        card_city=holdout_city(TRAIN_CITY),
        n_models=1,  # the card, not the ensemble or fold thresholds, is under test: keep training cheap
        threshold_folds=0,
    )
    holdout = write_city(simulate(holdout_city(TRAIN_CITY)), root / "holdout-city")
    return Trained(settings, version, holdout["events"], holdout["cases"])


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5_000, f"{path} is suspiciously small ({len(data)} bytes)"
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert float(np.ptp(image)) > 0, f"{path} is a blank image"


def assert_card(card: Path, scenarios: set[str]) -> str:
    assert card.name == CARD_FILE
    for name in PLOT_FILES:
        assert_png(card.parent / name)
    text = card.read_text()
    assert "| metric | value | meaning |" in text
    for key, _ in METRIC_ROWS:
        assert f"| {key} |" in text
    assert scenarios, "the evaluation city has no cases"
    for scenario in scenarios:
        assert f"| {scenario} |" in text
    for name in PLOT_FILES:
        assert f"({name})" in text
    assert "## Thresholds per level" in text and "## Known limits" in text and "## Intended use" in text
    # One row per operating-curve rate, each with its matched threshold's case counts.
    assert "### Cases reached at other false-task rates" in text
    curve = text.split("### Cases reached at other false-task rates")[1].split("\n\n")[2]
    rows = [line for line in curve.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(OPERATING_RATES)  # the header and one row per rate
    # The missed cases by reason: an "all" row, then one per scenario, and each row's counts add up.
    missed = text.split("### Cases not reached before the loss, and why")[1].split("\n\n")[2]
    table = [line.strip("|").split("|") for line in missed.splitlines() if line.startswith("| ")][1:]
    assert [cells[0].strip() for cells in table] == ["all", *sorted(scenarios)]
    for cells in table:
        with_loss, before, *reasons = (int(c) for c in cells[1:])
        assert len(reasons) == len(MISS_REASONS) and before + sum(reasons) == with_loss, cells
    return text


def test_train_writes_card_from_holdout_city(trained: Trained) -> None:
    version = trained.version
    text = assert_card(version.path / CARD_FILE, {case["scenario"] for case in read_jsonl(trained.holdout_cases)})
    held = holdout_city(TRAIN_CITY)
    assert held.seed != TRAIN_CITY.seed and held.days == 2.0 and held.subscribers == TRAIN_CITY.subscribers
    assert held.start_ms >= TRAIN_CITY.start_ms + TRAIN_CITY.days * 86_400_000
    warm = holdout_city(TRAIN_CITY, warmup_days=7)  # the warm-up days come first; as many days are judged
    assert warm.days == held.days + 7 and (warm.start_ms, warm.seed) == (held.start_ms, held.seed)
    assert f"seed {held.seed}" in text
    assert version.version in text and version.meta["features_hash"] in text
    assert version.meta["feature_parameters"] == PARAMETERS_JSON  # so a later mismatch can name the change
    evaluation = orjson.loads((version.path / CARD_EVALUATION_FILE).read_bytes())
    assert evaluation["model_version"] == version.version
    # The card was written before promotion, and promotion still happened.
    from models.registry import ModelRegistry

    assert ModelRegistry(trained.settings.models_path).promoted_version() == version.version


def test_write_model_card_direct(trained: Trained, tmp_path: Path) -> None:
    cases = read_jsonl(trained.holdout_cases)
    data = build_dataset(load_events(trained.holdout_events).events, cases)
    scorer = Scorer(trained.version, compiled=False)
    scores = scorer.score(data.X)
    evaluation = evaluate_dataset(data, cases, scorer, scores=scores)

    # lead_times_s is the list behind the median; per_scenario keeps exactly its figures.
    leads = evaluation["lead_times_s"]
    assert leads == sorted(leads) and len(leads) == evaluation["cases_flagged_before_loss"]
    assert evaluation["median_lead_time_s"] == (statistics.median(leads) if leads else None)
    for figures in evaluation["per_scenario"].values():
        assert set(figures) == CASE_FIGURE_KEYS

    out = tmp_path / "elsewhere"
    card = write_model_card(trained.version, evaluation, data, scores, out)
    assert card == out / CARD_FILE
    assert_card(card, {case["scenario"] for case in cases})
    with pytest.raises(ValueError):
        write_model_card(trained.version, evaluation, data, scores[:-1], out)


def test_cli_models_card(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fraudwatch.cli as cli

    monkeypatch.setattr(cli, "get_settings", lambda: trained.settings)
    out = tmp_path / "cli-card"
    args = ["models", "card", trained.version.version, str(trained.holdout_events), str(trained.holdout_cases)]
    result = CliRunner().invoke(cli.app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()) == out / CARD_FILE
    assert_card(out / CARD_FILE, {case["scenario"] for case in read_jsonl(trained.holdout_cases)})


def test_cli_models_card_with_warmup(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fraudwatch.cli as cli

    monkeypatch.setattr(cli, "get_settings", lambda: trained.settings)
    args = ["models", "card", trained.version.version, str(trained.holdout_events), str(trained.holdout_cases)]
    out = tmp_path / "warm-card"
    result = CliRunner().invoke(cli.app, [*args, "--out", str(out), "--warmup-days", "0.5"])
    assert result.exit_code == 0, result.output
    warm = orjson.loads((out / CARD_EVALUATION_FILE).read_bytes())
    assert warm["warmup_days"] == 0.5 and warm["cases"] < len(read_jsonl(trained.holdout_cases))
    assert "Judged after a 0.5-day warm-up" in (out / CARD_FILE).read_text()
    # The same events judged from their first day: more cases, as `evaluate` without a warm-up counts them.
    assert warm["cold_start"]["cases_with_loss"] > warm["cases_with_loss"]
    cold = evaluate_files(trained.holdout_events, trained.holdout_cases, trained.settings, trained.version.version)
    assert warm["cold_start"] == {key: cold.get(key) for key in COLD_START_KEYS}
    assert "from the first day" in (out / CARD_FILE).read_text()


def test_cli_evaluate_with_warmup_judges_only_the_later_cases(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fraudwatch.cli as cli

    monkeypatch.setattr(cli, "get_settings", lambda: trained.settings)
    args = ["evaluate", str(trained.holdout_events), str(trained.holdout_cases), "--model", trained.version.version]
    results = []
    for warmup in ("0", "0.5"):
        result = CliRunner().invoke(cli.app, [*args, "--warmup-days", warmup])
        assert result.exit_code == 0, result.output
        results.append(orjson.loads(result.stdout))
    cold, warm = results
    cases = read_jsonl(trained.holdout_cases)
    start = min(int(line["ts_ms"]) for line in map(orjson.loads, trained.holdout_events.read_bytes().splitlines()))
    later = [c for c in cases if c["first_contact_ms"] >= start + 43_200_000]
    assert cold["cases"] == len(cases) and "warmup_days" not in cold
    assert warm["cases"] == len(later) < len(cases) and warm["warmup_days"] == 0.5
    assert warm["events"] < cold["events"]
    bad = CliRunner().invoke(cli.app, [*args, "--warmup-days", "-1"])
    assert bad.exit_code != 0


def test_plots_survive_thin_data(tmp_path: Path) -> None:
    plot_pr_curve(np.zeros(5, dtype=np.int64), np.linspace(0, 1, 5), [0.5], tmp_path / "pr.png")
    plot_lead_times([], tmp_path / "lead.png")
    plot_lead_times([30.0, 3_600.0, 200_000.0], tmp_path / "lead_log.png")
    plot_per_scenario(
        {"loan": {"cases": 1, "cases_with_loss": 0, "share_flagged_before_loss": None}}, tmp_path / "s.png"
    )
    for name in ("pr.png", "lead.png", "lead_log.png", "s.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def _protocol_row(scenario: str, with_loss: int, before: int, by: int) -> dict[str, object]:
    return {
        "scenario": scenario,
        "cases_with_loss": with_loss,
        "flagged_before_loss": before,
        "flagged_by_loss": by,
        "share_by_loss": by / with_loss if with_loss else None,
        "median_lead_min": 12.5,
        "false_tasks_per_10k_residents_per_day": 1.75,
        "oracle": {"cases_with_loss": with_loss, "flagged_by_loss": by},
    }


def test_card_opens_with_the_generalisation_protocol(trained: Trained, tmp_path: Path) -> None:
    protocol = {
        "schema": "fraudwatch.generalise.v1",
        "created_s": 1_767_225_600.0,
        "features_hash": trained.version.meta["features_hash"],
        "config": {"n_models": 1, "threshold_folds": 0, "judge_warmup_days": 2.0, "oracle_rate": 1.0},
        "train_city": {"subscribers": 2000, "days": 5.0},
        "judged_city": {"seed": 1007},
        "leave_one_scenario_out": [_protocol_row("refund", 8, 6, 7), _protocol_row("loan", 6, 1, 2)],
        "with_every_scenario": [_protocol_row("refund", 8, 7, 8), _protocol_row("loan", 6, 4, 5)],
        "small_to_large": [
            {
                "city": "10x larger",
                "residents": 20_000,
                "days_judged": 1.0,
                "cases_with_loss": 30,
                "flagged_before_loss": 12,
                "flagged_by_loss": 20,
                "median_lead_min": 9.0,
                "false_tasks_per_10k_residents_per_day": 4.5,
                "pr_auc": 0.4,
            }
        ],
        "below_half_by_loss": ["loan"],
        "no_cases_with_loss": [],
    }
    card = write_card_for(
        trained.version,
        trained.holdout_events,
        trained.holdout_cases,
        trained.settings,
        out_dir=tmp_path,
        protocol=protocol,
    )
    text = assert_card(card, {case["scenario"] for case in read_jsonl(trained.holdout_cases)})
    headline = text.index("## Headline: generalisation protocol")
    assert headline < text.index("## Model") < text.index("## Evaluation")  # first, and the rest kept
    assert "| loan | 6 | 1/6 (17 %) | 2/6 (33 %) | 12.5 | 1.75 | 2/6 (33 %) | 5/6 (83 %) |" in text
    assert "| 10x larger | 20,000 | 1.0 | 30 | 12/30 (40 %) | 20/30 (67 %) | 9.0 | 4.50 | 0.40 |" in text
    assert "below 50 % by the loss when left out: **loan**." in text
    assert "Stale" not in text
    # A protocol run on other features is marked as such, not passed off as this model's.
    stale = write_card_for(
        trained.version,
        trained.holdout_events,
        trained.holdout_cases,
        trained.settings,
        out_dir=tmp_path / "stale",
        protocol={**protocol, "features_hash": "0000"},
    )
    assert "**Stale:**" in stale.read_text()
    # Without a protocol result (none saved under the data folder) the card opens as before.
    plain = write_card_for(
        trained.version, trained.holdout_events, trained.holdout_cases, trained.settings, out_dir=tmp_path / "plain"
    )
    assert "## Headline" not in plain.read_text()
