"""``fraudwatch field-trial`` end to end on a tiny city: weekly retrains, the promotion rule, what was known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from core.settings import Settings
from features import DAY_MS
from fraudwatch import cli
from sandbox.simulate import CityConfig, simulate, write_city
from sandbox.training import train_on_worlds

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Settings, dict, str]:
    root = tmp_path_factory.mktemp("trial")
    settings = Settings(data_dir=root / "data", compile_models=False)
    worlds = [
        CityConfig(subscribers=700, days=2, seed=11, victims_per_10k_per_day=80),
        CityConfig(subscribers=900, days=2, seed=12, victims_per_10k_per_day=60, lookalike_scale=2.0),
    ]
    shipped = train_on_worlds(worlds, settings, promote=True, n_models=1, threshold_folds=0, num_boost_round=60)
    # The field city is another world: its own size, seed, rate and look-alikes, on a calendar of its own.
    city = CityConfig(subscribers=800, days=6, seed=99, victims_per_10k_per_day=70, lookalike_scale=0.5)
    city = CityConfig(**{**city.__dict__, "start_ms": city.start_ms + 30 * DAY_MS})
    paths = write_city(simulate(city), root / "city")
    return root, paths["events"], settings, {"cases": paths["cases"]}, shipped.version


def _run(monkeypatch: pytest.MonkeyPatch, settings: Settings, *args: str) -> dict:
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_field_trial_retrains_weekly_and_promotes_only_by_the_slice_rule(
    trial: tuple[Path, Path, Settings, dict, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, events, settings, files, shipped = trial
    cases_path = files["cases"]
    out = _run(
        monkeypatch,
        settings,
        "field-trial",
        str(events),
        str(cases_path),
        "--week-days",
        "2",
        "--report-delay-days",
        "1",
        "--outcome-delay-h",
        "4",
        "--slice-folds",
        "3",
        "--max-field-rows",
        "4000",
    )
    weeks = out["weeks"]
    assert [w["week"] for w in weeks] == [1, 2, 3]
    assert weeks[0]["model"] == shipped and out["shipped_model"] == shipped
    cases = [json.loads(line) for line in cases_path.read_text().splitlines() if line.strip()]
    start = min(w["from_ms"] for w in weeks)
    registry = Path(out["registry"])
    for k, week in enumerate(weeks[:-1]):
        retrain = week["retrain_after"]
        live, cand = retrain["slice_pr_auc_live"], retrain["slice_pr_auc_candidate"]
        # The rule: promoted exactly when the candidate beats the live model on the held-out slice.
        won = retrain["slice_resamples_won"]
        assert retrain["promoted"] == (cand is not None and (live is None or cand > live) and won >= 0.9)
        assert weeks[k + 1]["model"] == (retrain["candidate"] if retrain["promoted"] else week["model"])
        if retrain["promoted"]:  # it takes over at the live alert volume: a threshold per level, never descending
            handed = retrain["handover_thresholds"]
            assert len(handed) == 3 and handed == sorted(handed)
        # Only what was known at the cut-off: reports a day after the loss, outcomes 4 h after the task.
        meta = json.loads((registry / retrain["candidate"] / "meta.json").read_text())
        sources = meta["data"]["sources"]
        # A retrain stops on its ranking of the stop rows, not their log loss (see TrialConfig.stop_metric).
        assert meta["train_config"]["stop_metric"] == "average_precision"
        cutoff = start + (k + 1) * 2 * DAY_MS
        assert sources["cutoff_ms"] == cutoff
        reported = sum(1 for c in cases if c["first_loss_ms"] is not None and c["first_loss_ms"] + DAY_MS <= cutoff)
        assert sources["police_reports"]["used"] == reported
        assert (
            sources["police_reports"]["not_yet_known"]
            == sum(1 for c in cases if c["first_loss_ms"] is not None) - reported
        )
        assert sources["field_rows"] > 0 and sources["simulated"]["worlds"]
        # A city past the row cap is thinned by subscriber (known victims kept), never cut by time.
        assert 0 < sources["field_subscriber_share"] <= 1
        if sources["field_subscriber_share"] < 1:
            assert sources["field_rows"] < 4000 * 1.5
    assert sources["field_subscriber_share"] < 1  # the last retrain's city is past the cap
    # The trial's registry ends on its last promoted model; the service's own registry is untouched.
    assert (registry / "PROMOTED").read_text().strip() == out["final_model"]
    assert (settings.models_path / "PROMOTED").read_text().strip() == shipped
    for week in weeks:
        assert week["false_tasks_per_10k_per_day"] is not None and "shipped_only" in week
    kept = json.loads((settings.data_dir / "artifacts" / "field_trial.json").read_text())
    assert kept["weeks"] == weeks

    # models list shows each version's sources; a card written after the trial carries its table.
    listed = _run(
        monkeypatch, Settings(data_dir=settings.data_dir, model_dir=registry, compile_models=False), "models", "list"
    )
    by_version = {v["version"]: v for v in listed}
    assert by_version[shipped]["sources"]["simulated_worlds"] == 2
    assert all("police_reports" in by_version[w["retrain_after"]["candidate"]]["sources"] for w in weeks[:-1])
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    card = CliRunner().invoke(
        cli.app, ["models", "card", shipped, str(events), str(cases_path), "--out", str(root / "card")]
    )
    assert card.exit_code == 0, card.output
    text = (root / "card" / "card.md").read_text()
    assert "## Field trial" in text and f"| 1 | `{shipped}` |" in text


def test_train_uses_only_what_was_known_by_the_cutoff(
    trial: tuple[Path, Path, Settings, dict, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _root, events, _settings, files, _shipped = trial
    cases = [json.loads(line) for line in files["cases"].read_text().splitlines() if line.strip()]
    start = min(c["first_contact_ms"] for c in cases)
    cutoff = start + 4 * DAY_MS
    mine = Settings(data_dir=tmp_path / "data", compile_models=False)
    out = _run(
        monkeypatch,
        mine,
        "train",
        str(events),
        "--reports",
        str(files["cases"]),
        "--cutoff",
        str(cutoff),
        "--report-delay-days",
        "1",
        "--no-promote",
        "--models",
        "1",
        "--threshold-folds",
        "0",
    )
    police = out["sources"]["police_reports"]
    with_loss = [c for c in cases if c["first_loss_ms"] is not None]
    assert police["used"] == sum(1 for c in with_loss if c["first_loss_ms"] + DAY_MS <= cutoff)
    assert police["used"] + police["not_yet_known"] == len(with_loss)
    assert police["without_loss"] == len(cases) - len(with_loss)
    meta = json.loads((Path(out["path"]) / "meta.json").read_text())
    assert meta["data"]["to_ms"] < cutoff  # no event from after the cut-off was a row


def test_a_gain_on_the_slice_counts_only_when_it_holds_over_resamples_of_its_subscribers() -> None:
    from sandbox.field_trial import _share_won

    rng = np.random.default_rng(3)
    subs = np.asarray([f"s{i // 5}" for i in range(2000)])  # 400 subscribers, 5 rows each
    y = np.zeros(2000, dtype=bool)
    y[[5 * v for v in range(0, 400, 10)]] = True  # 40 victims, one positive row each
    live = rng.random(2000)
    better = np.where(y, live + 0.5, live)  # ranks every victim higher
    assert _share_won(y, better, live, subs, draws=100) == 1.0
    assert _share_won(y, live, live, subs, draws=100) == 0.0  # a tie is not a win
    # Three victims, one ranked top by luck and one bottom: far ahead on the slice (AP 0.33 against 0.004), but
    # only in about half the resamples of who was on it.
    few = np.zeros(2000, dtype=bool)
    few[[0, 500, 1000]] = True
    lucky = live.copy()
    lucky[0] = 2.0
    lucky[500] = -1.0
    won = _share_won(few, lucky, live, subs, draws=200)
    assert 0.1 < won < 0.9
