"""Model card: a Markdown summary of one registered model and its evaluation, with PNG plots beside it.

Files written into the model's folder (or ``out_dir``): ``card.md``, ``pr_curve.png``, ``lead_time_hist.png``,
``feature_importance.png`` and ``per_scenario_recall.png``. Plots use matplotlib's object API on an Agg
canvas, so nothing needs a display and the process-wide pyplot backend is left alone (a notebook keeps
its inline backend). Every file goes through a temporary name and ``os.replace``, like the registry.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from core.levels import decide_levels, levels
from models.dataset import Dataset
from models.evaluate import MISS_REASONS
from models.registry import ModelVersion

CARD_FILE = "card.md"
PLOT_FILES = ("pr_curve.png", "lead_time_hist.png", "feature_importance.png", "per_scenario_recall.png")
TOP_FEATURES = 25
# The evaluation figures shown in the card's metrics table, in order, with a short explanation.
METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("events", "feature rows scored (one per valid event)"),
    ("subscribers", "distinct subscribers seen"),
    ("days", "days spanned by the events"),
    ("cases", "fraud cases"),
    ("cases_with_loss", "cases whose victim paid"),
    ("cases_observable_before_loss", "cases with a loss where a case call to the victim had ended before it"),
    ("cases_observable_by_loss", "cases with a loss where a case call to the victim had ended by it"),
    ("cases_flagged_before_loss", "cases alerted at task level strictly before the first loss"),
    ("cases_flagged_by_loss", "cases alerted at task level before or at the first loss"),
    ("observable_flagged_before_loss", "of the cases observable before the loss, those flagged before it"),
    ("observable_flagged_by_loss", "of the cases observable by the loss, those flagged by it"),
    ("share_flagged_before_loss", "recall before loss"),
    ("share_flagged_by_loss", "recall by loss"),
    ("median_lead_time_s", "median time from first alert to first loss, s"),
    ("pr_auc", "average precision over events"),
    ("task_threshold", "calibrated score of a task-level alert"),
    ("alerts", "task-level alerts"),
    ("alerts_per_10k_per_day", "task-level alerts per 10k subscribers per day"),
    ("tasks", "tasks (one per subscriber episode)"),
    ("false_tasks", "tasks for subscribers who are no case's victim"),
    ("false_tasks_per_10k_per_day", "false tasks per 10k subscribers per day"),
    (
        "false_tasks_after_fraud_contact",
        "of the false tasks, those for someone who had picked up a fraud number's call",
    ),
    ("false_tasks_after_fraud_contact_per_10k_per_day", "the same per 10k subscribers per day"),
)


# The headline figures a warm-up card repeats for the same events judged from their first day.
COLD_START_KEYS = (
    "cases_with_loss",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "share_flagged_before_loss",
    "share_flagged_by_loss",
    "median_lead_time_s",
    "false_tasks_per_10k_per_day",
    "false_tasks_after_fraud_contact_per_10k_per_day",
)


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _atomic_bytes(path, buf.getvalue())


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def _iso(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return "–"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return out


def _share(figures: dict[str, Any], key: str) -> float:
    value = figures.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def feature_importance(version: ModelVersion) -> dict[str, float]:
    """Gain importance per feature: from the model's metadata, else from its booster."""
    stored = version.meta.get("feature_importance_gain")
    if isinstance(stored, dict) and stored:
        return {str(k): float(v) for k, v in stored.items()}
    booster = lgb.Booster(model_file=str(version.path / "model.txt"))
    gains = booster.feature_importance(importance_type="gain")
    return {name: float(g) for name, g in zip(booster.feature_name(), gains, strict=True)}


def plot_pr_curve(
    y: np.ndarray, scores: np.ndarray, thresholds: Sequence[float], path: Path, kinds: Sequence[str] | None = None
) -> None:
    """Precision-recall over events, with the operating point of each alert level marked (``kinds``: the rows'
    event kinds, so a level counts only the rows that may reach it)."""
    decided = np.asarray(
        decide_levels(scores.tolist(), thresholds, kinds if kinds is not None else [""] * len(scores)), dtype=np.int64
    )
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    if len(y) and y.any() and not y.all():
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.step(recall, precision, where="post", color="tab:blue", label="model")
        ax.axhline(float(y.mean()), color="grey", linestyle=":", label=f"no skill ({y.mean():.2%} positive)")
        for level, threshold in enumerate(thresholds, start=1):
            flagged = decided >= level
            if not flagged.any():
                continue
            p = float(y[flagged].mean())
            r = float(y[flagged].sum() / y.sum())
            ax.plot([r], [p], "o", label=f"level {level} (score ≥ {threshold:.3g})")
    else:
        ax.text(0.5, 0.5, "no positive and negative events to draw", ha="center", va="center")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize="small")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (events)")
    ax.set_ylabel("precision (events)")
    ax.set_title("Precision-recall over events")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_lead_times(lead_times_s: Sequence[float], path: Path) -> None:
    """Histogram of lead times (first alert to first loss) of the cases flagged before the loss, in minutes."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    minutes = np.asarray([t / 60 for t in lead_times_s if t > 0], dtype=np.float64)
    if len(minutes):
        lo, hi = float(minutes.min()), float(minutes.max())
        if hi / max(lo, 1e-9) > 100:
            # Scenarios run from minutes (refund) to days (romance): spread the bins evenly on a log axis.
            bins: list[float] = np.geomspace(lo * 0.999, hi * 1.001, 20).tolist()
            ax.set_xscale("log")
        else:
            bins = np.linspace(0, hi * 1.05 + 1e-9, 20).tolist()
        ax.hist(minutes, bins=bins, color="tab:green", edgecolor="white")
        median = float(np.median(minutes))
        ax.axvline(median, color="black", linestyle="--", label=f"median {median:.0f} min")
        ax.legend(loc="upper right", fontsize="small", framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no case was flagged before its loss", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("lead time before the first loss (minutes)")
    ax.set_ylabel("cases")
    ax.set_title(f"Lead time of cases flagged before loss (n={len(minutes)})")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_feature_importance(importance: dict[str, float], path: Path, top: int = TOP_FEATURES) -> None:
    """Horizontal bars of the ``top`` features by total gain, largest at the top."""
    total = sum(importance.values()) or 1.0
    ranked = [(name, 100 * gain / total) for name, gain in sorted(importance.items(), key=lambda kv: -kv[1])[:top]]
    fig = Figure(figsize=(7.0, max(3.0, 0.28 * len(ranked) + 1.2)))
    ax = fig.add_subplot()
    if ranked:
        names = [name for name, _ in reversed(ranked)]
        gains = [gain for _, gain in reversed(ranked)]
        ax.barh(names, gains, color="tab:purple")
        ax.tick_params(axis="y", labelsize="small")
    ax.set_xlabel("share of the model's total gain (%)")
    ax.set_title(f"Top {len(ranked)} features by gain")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_per_scenario(per_scenario: dict[str, dict[str, Any]], path: Path) -> None:
    """Per scenario: share of cases (with a loss) flagged strictly before the loss, and by the loss."""
    names = sorted(per_scenario)
    fig = Figure(figsize=(max(6.4, 1.3 * len(names) + 2), 4.4))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    before = [_share(per_scenario[n], "share_flagged_before_loss") for n in names]
    by = [_share(per_scenario[n], "share_flagged_by_loss") for n in names]
    ax.bar(x - 0.2, before, width=0.4, label="flagged before loss", color="tab:green")
    ax.bar(x + 0.2, by, width=0.4, label="flagged by loss", color="tab:orange")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}\n(n={per_scenario[n].get('cases_with_loss', 0)})" for n in names], fontsize="small")
    ax.set_ylim(0, 1.2)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("share of cases with a loss")
    ax.set_title("Recall per scenario (n = cases with a loss)")
    ax.legend(loc="upper left", ncols=2, fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def _pcell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _count_share(n: int, of: int) -> str:
    return f"{n}/{of} ({100 * n / of:.0f} %)" if of else "0/0"


def _city_line(row: dict[str, Any]) -> str:
    """One judged city of a protocol result as a table row (a city of either generator)."""
    return (
        f"| {row['city']} | {row['residents']:,} | {_pcell(row['days_judged'])} | {row['cases_with_loss']} | "
        f"{_count_share(row['flagged_before_loss'], row['cases_with_loss'])} | "
        f"{_count_share(row['flagged_by_loss'], row['cases_with_loss'])} | {_pcell(row['median_lead_min'])} | "
        f"{_pcell(row['false_tasks_per_10k_residents_per_day'], 2)} | {_pcell(row['pr_auc'], 2)} |"
    )


def generalisation_tables(result: dict[str, Any]) -> list[str]:
    """A generalisation protocol result's tables as Markdown lines (``fraudwatch generalise`` prints them too)."""
    lines = [
        "| left-out scenario | with loss | flagged before loss | by the loss | median lead (min) | "
        "false tasks /10k residents/day | oracle by the loss | seen in training: by the loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen = {r["scenario"]: r for r in result.get("with_every_scenario", [])}
    for row in result.get("leave_one_scenario_out", []):
        oracle = row.get("oracle") or {}
        ref = seen.get(row["scenario"], {})
        lines.append(
            f"| {row['scenario']} | {row['cases_with_loss']} | "
            f"{_count_share(row['flagged_before_loss'], row['cases_with_loss'])} | "
            f"{_count_share(row['flagged_by_loss'], row['cases_with_loss'])} | {_pcell(row['median_lead_min'])} | "
            f"{_pcell(row['false_tasks_per_10k_residents_per_day'], 2)} | "
            f"{_count_share(oracle.get('flagged_by_loss', 0), oracle.get('cases_with_loss', 0)) if oracle else '–'} | "
            f"{_count_share(ref.get('flagged_by_loss', 0), ref.get('cases_with_loss', 0)) if ref else '–'} |"
        )
    lines += [
        "",
        "| trained on every scenario, judged on | residents | days judged | with loss | flagged before loss | "
        "by the loss | median lead (min) | false tasks /10k residents/day | PR-AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_city_line(row) for row in result.get("small_to_large", [])]
    others = result.get("other_generator") or []
    if others:
        lines += [
            "",
            "| every-scenario model on another generator's city | residents | days judged | with loss | "
            "flagged before loss | by the loss | median lead (min) | false tasks /10k residents/day | PR-AUC |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [_city_line(row) for row in others]
        lines += [
            "",
            "| other generator's scenario (unknown to our simulator unless named alike) | "
            + " | ".join(f"{row['city'].removeprefix('other generator, ')}: by the loss" for row in others)
            + " |",
            "|---|" + "---|" * len(others),
        ]
        names = sorted({name for row in others for name in row.get("per_scenario", {})})
        for name in names:
            cells = []
            for row in others:
                fig = row.get("per_scenario", {}).get(name) or {}
                with_loss = fig.get("cases_with_loss", 0)
                cells.append(_count_share(fig.get("flagged_by_loss", 0), with_loss) if with_loss else "–")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _training_cities(result: dict[str, Any], train: dict[str, Any]) -> str:
    cities = result.get("train_cities") or [train]
    if len(cities) == 1:
        return f"a {_fmt(cities[0].get('subscribers'))}-resident city x {_fmt(cities[0].get('days'))} days"
    sizes = ", ".join(f"{_fmt(c.get('subscribers'))} x {_fmt(c.get('days'))} d" for c in cities)
    return f"{len(cities)} sampled worlds ({sizes})"


def generalisation_headline(result: dict[str, Any], features_hash: str | None) -> list[str]:
    """The card's opening section: the protocol's tables and the scenarios below half by the loss."""
    config = result.get("config") or {}
    train = result.get("train_city") or {}
    judged = result.get("judged_city") or {}
    created = result.get("created_s")
    lines = [
        "## Headline: generalisation protocol",
        "",
        f"`fraudwatch generalise` ({_iso(created * 1000) if isinstance(created, int | float) else 'undated'}): "
        f"models trained by this recipe ({config.get('n_models')} booster(s), {config.get('threshold_folds')} "
        f"threshold folds) on {_training_cities(result, train)}, "
        "each without one scenario (its cases and their events removed), judged at their own thresholds "
        "(following the simulated outcomes from the first event) on "
        + (
            "a held-out city of that scenario's cases only"
            if result.get("judged_per_scenario")
            else "a held-out city, on the left-out scenario's cases"
        )
        + f" (seed {judged.get('seed')}, {_fmt(judged.get('subscribers'))} residents) after a "
        f"{_fmt(config.get('judge_warmup_days'))}-day warm-up; false face-to-face tasks are the whole judged city's, "
        "per 10k residents per day. Oracle: the threshold matched on the judged city to "
        f"{_fmt(config.get('oracle_rate'))} false task per 10k residents per day (a live threshold never has it).",
        "",
    ]
    if features_hash is not None and result.get("features_hash") not in (None, features_hash):
        lines += [
            f"**Stale:** the protocol ran on features `{result.get('features_hash')}`, this model serves "
            f"`{features_hash}`; run `fraudwatch generalise` again.",
            "",
        ]
    lines += generalisation_tables(result)
    below = result.get("below_half_by_loss") or []
    empty = result.get("no_cases_with_loss") or []
    lines += [
        "",
        "Scenarios below 50 % by the loss when left out: "
        + (", ".join(f"**{name}**" for name in below) if below else "none")
        + "."
        + (f" Without a case with a loss in the judged city (not measured): {', '.join(empty)}." if empty else ""),
        "",
    ]
    return lines


def field_trial_table(result: dict[str, Any]) -> list[str]:
    """A field trial's per-week table as Markdown lines (``fraudwatch field-trial`` prints it too)."""
    lines = [
        "| week | served by | retrained after it: promoted? (slice PR-AUC new vs live); labels known "
        "| false visits /10k/day "
        "| before loss | by loss | stopped | false holds /10k/day | PR-AUC | shipped model alone: false visits, "
        "before, by |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result.get("weeks", []):
        retrain = row.get("retrain_after")
        after = "–"
        if retrain is not None:
            verdict = "yes" if retrain["promoted"] else "no"
            after = (
                f"{verdict} ({_fixed(retrain['slice_pr_auc_candidate'])} vs {_fixed(retrain['slice_pr_auc_live'])}); "
                f"{retrain.get('outcome_positives', 0)} of {retrain.get('outcomes_known', 0)} outcomes positive, "
                f"{retrain.get('reports_known', 0)} reports, {retrain.get('reported_number_cases', 0)} cases of "
                "reported numbers"
            )
        n = row.get("cases_with_loss") or 0
        lines.append(
            f"| {row['week']} | `{row['model']}` | {after} | {_fixed(row.get('false_tasks_per_10k_per_day'))} "
            f"| {row.get('cases_flagged_before_loss')}/{n} | {row.get('cases_flagged_by_loss')}/{n} "
            f"| {row.get('cases_stopped')}/{n} | {_fixed(row.get('false_holds_per_10k_per_day'))} "
            f"| {_fixed(row.get('pr_auc'))} | {_shipped_only(row.get('shipped_only'), n)} |"
        )
    return lines


def _shipped_only(figures: dict[str, Any] | None, n: int) -> str:
    if not figures:
        return "–"
    return (
        f"{_fixed(figures.get('false_tasks_per_10k_per_day'))}, {figures.get('cases_flagged_before_loss')}/{n}, "
        f"{figures.get('cases_flagged_by_loss')}/{n}"
    )


def _fixed(x: Any) -> str:
    return "–" if x is None else f"{float(x):.2f}"


def field_trial_section(result: dict[str, Any]) -> list[str]:
    """The card's field-trial section: where the trial ran, and its per-week table."""
    city = result.get("city") or {}
    where = city.get("source", "a city's stream")
    return [
        "## Field trial: a city served from its first day, retrained every week",
        "",
        f"On {where} ({result.get('residents')} residents), shipped model `{result.get('shipped_model')}`; "
        f"each week's outcomes, police reports and the reported numbers' other cases retrain it, promoted only "
        f"when it beats the live model on a slice of subscribers no retrain sees, taking over at the live alert "
        f"volume (`fraudwatch field-trial`).",
        "",
        *field_trial_table(result),
        "",
    ]


def _card_text(
    version: ModelVersion,
    evaluation: dict[str, Any],
    data: Dataset,
    importance: dict[str, float],
    evaluation_source: str | None,
    protocol: dict[str, Any] | None = None,
    field_trial: dict[str, Any] | None = None,
) -> str:
    meta = version.meta
    info = meta.get("data", {})
    rejected: dict[str, int] = info.get("rejected_lines") or {}
    metrics = meta.get("metrics", {})
    params = meta.get("params", {})
    train_config = meta.get("train_config", {})
    thresholds = list(meta.get("thresholds", []))
    budget = train_config.get("budget_tasks_per_10k_per_day")
    lines = [f"# Model card — `{version.version}`", ""]
    if protocol:
        lines += generalisation_headline(protocol, meta.get("features_hash"))
    if field_trial:
        lines += field_trial_section(field_trial)
    created = meta.get("created_s")
    calibration = (meta.get("calibration") or {}).get("method", "isotonic")
    lines += [
        f"LightGBM binary classifier over the serving feature vector, {calibration} calibration, with",
        "per-level alert thresholds chosen from a dispatch budget. Scores every call and transfer of a subscriber.",
        "",
        "## Model",
        "",
        *_table(
            ("field", "value"),
            [
                ("version", version.version),
                ("created", _iso(created * 1000) if isinstance(created, int | float) else None),
                ("calibration", calibration),
                ("features hash", meta.get("features_hash")),
                ("features", len(meta.get("feature_names", []))),
                ("best iteration", metrics.get("best_iteration")),
            ],
        ),
        "",
        "## Training data",
        "",
        *_table(
            ("field", "value"),
            [
                ("from", _iso(info.get("from_ms"))),
                ("to", _iso(info.get("to_ms"))),
                ("rows (events)", info.get("rows")),
                ("cases", info.get("cases")),
                ("events file", info.get("events_file")),
                ("rejected lines", ", ".join(f"{k}: {v}" for k, v in rejected.items()) or "none"),
                ("data hash", info.get("data_hash")),
            ],
        ),
        "",
        "Split by event time: first 60 % train, next 15 % early stopping, last 25 % calibration. "
        + _threshold_method(meta.get("threshold_info") or {}),
        "",
        "## Parameters",
        "",
        *_table(("parameter", "value"), sorted((str(k), v) for k, v in {**params, **train_config}.items())),
        "",
        "## Training metrics (calibration slice)",
        "",
        *_table(
            ("metric", "value"),
            [
                ("PR-AUC", metrics.get("calibration_pr_auc")),
                ("ROC-AUC", metrics.get("calibration_roc_auc")),
                ("positive events, train", (metrics.get("positives") or {}).get("train")),
                ("positive events, calibration", (metrics.get("positives") or {}).get("calibration")),
            ],
        ),
        "",
        "## Thresholds per level",
        "",
    ]
    level_rows = []
    table = levels()
    for i, threshold in enumerate(thresholds):
        # A model trained before the table grew has fewer thresholds; one from a larger table shows no name.
        lv = table[i] if i < len(table) else None
        level_budget = lv.budget(budget) if lv is not None and isinstance(budget, int | float) else None
        level_rows.append((i + 1, lv.summary if lv is not None else "", threshold, level_budget))
    lines += _table(("level", "action", "calibrated score ≥", "budget, per 10k subscribers per day"), level_rows)
    grid = meta.get("budget_thresholds") or []
    if grid:
        lines += ["", "Task-level threshold for other budgets (`evaluate --budget`):", ""]
        lines += _table(("tasks per 10k per day", "threshold"), [tuple(pair) for pair in grid])
    lines += ["", "## Evaluation", ""]
    if evaluation_source:
        lines += [f"Evaluated on {evaluation_source}.", ""]
    if evaluation.get("warmup_days"):
        lines += [
            f"Judged after a {evaluation['warmup_days']:g}-day warm-up: features run over every event, but only "
            "rows after the warm-up and cases first contacted after it count (a live service's callers and "
            "subscribers have a history; a simulated city starts from nothing).",
            "",
        ]
    cold = evaluation.get("cold_start")
    if cold:
        lines += [
            "The same events judged from their first day (cold start: every number is new at first):",
            "",
            *_table(
                ("figure", "after the warm-up", "from the first day"),
                [(key, evaluation.get(key), cold.get(key)) for key in COLD_START_KEYS],
            ),
            "",
        ]
    lines += [
        f"{_fmt(evaluation.get('events'))} events, {_fmt(int(data.y[data.event_rows].sum()))} of them positive "
        f"(listed in a case); model `{evaluation.get('model_version', version.version)}`.",
        "",
        *_table(("metric", "value", "meaning"), [(key, evaluation.get(key), what) for key, what in METRIC_ROWS]),
        "",
        "### Recall per scenario",
        "",
    ]
    per_scenario: dict[str, dict[str, Any]] = evaluation.get("per_scenario", {})
    lines += _table(
        (
            "scenario",
            "cases",
            "with loss",
            "observable before loss",
            "flagged before loss",
            "observable & flagged before",
            "flagged by loss",
            "share before",
            "share by",
            "median lead (min)",
        ),
        [
            (
                name,
                fig.get("cases"),
                fig.get("cases_with_loss"),
                fig.get("cases_observable_before_loss"),
                fig.get("cases_flagged_before_loss"),
                fig.get("observable_flagged_before_loss"),
                fig.get("cases_flagged_by_loss"),
                fig.get("share_flagged_before_loss"),
                fig.get("share_flagged_by_loss"),
                fig["median_lead_time_s"] / 60 if fig.get("median_lead_time_s") is not None else None,
            )
            for name, fig in sorted(per_scenario.items())
        ],
    )
    if "missed_before_loss" in evaluation:
        lines += [
            "",
            "### Cases not reached before the loss, and why",
            "",
            "What the service had seen of each missed case by its loss: no case call had ended (the money moved",
            "during the first scam call), only unanswered calls or calls under 2 min (what anybody a ring's lines",
            "sweep gets), or an answered call of at least 2 min that the model scored below the task threshold.",
            "Only the last column is the ranking's to win back.",
            "",
        ]
        groups = [("all", evaluation), *sorted(per_scenario.items())]
        lines += _table(
            ("scenario", "with loss", "flagged before loss", *(r.replace("_", " ") for r in MISS_REASONS)),
            [
                (
                    name,
                    fig.get("cases_with_loss"),
                    fig.get("cases_flagged_before_loss"),
                    *(fig.get("missed_before_loss", {}).get(r) for r in MISS_REASONS),
                )
                for name, fig in groups
            ],
        )
    curve: list[dict[str, Any]] = evaluation.get("operating_curve") or []
    if curve:
        lines += [
            "",
            "### Cases reached at other false-task rates",
            "",
            "The task threshold matched on this evaluation history to each rate of false face-to-face tasks: how",
            "much budget a target would take at this model's ranking (a live threshold is not matched this well).",
            "",
        ]
        lines += _table(
            (
                "false tasks per 10k per day, at most",
                "threshold",
                "cases with loss",
                "flagged before loss",
                "flagged by loss",
                "median lead (min)",
            ),
            [
                (
                    point["false_tasks_per_10k_per_day_at_most"],
                    point["task_threshold"],
                    point["cases_with_loss"],
                    point["cases_flagged_before_loss"],
                    point["cases_flagged_by_loss"],
                    point["median_lead_time_s"] / 60 if point.get("median_lead_time_s") is not None else None,
                )
                for point in curve
            ],
        )
    top = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:10]
    lines += [
        "",
        "## Plots",
        "",
        "![Precision-recall over events](pr_curve.png)",
        "",
        "![Lead time before loss](lead_time_hist.png)",
        "",
        "![Recall per scenario](per_scenario_recall.png)",
        "",
        "![Feature importance (gain)](feature_importance.png)",
        "",
        "Top features by gain: " + ", ".join(f"`{name}`" for name, _ in top) + ".",
        "",
        "## Intended use",
        "",
        "- Rank calls and transfers by the risk that the subscriber is being defrauded over the phone right now,",
        "  so that a warning (SMS, call-centre call or a visit by the nearest police officer or grid worker) can",
        "  reach them before money leaves. One task per subscriber episode; the level thresholds fit a budget.",
        "- A decision aid for responders, with plain-language reasons; never an automatic block of a transfer or",
        "  a number, and never evidence against the subscriber or the caller.",
        "",
        "## Known limits",
        "",
        "- Trained and evaluated on simulated cities. The simulator's fraud scripts, look-alike legitimate traffic",
        "  and victim rate (far above the real ≈ 1 per 30,000 people per day) shape every figure here; on real",
        "  traffic precision will be much lower at the same threshold. Retrain and re-pick thresholds on real data.",
        "- Thresholds come from a false-task rate on the training history; a city with another base rate or size",
        "  spends a different budget at the same threshold (see `alerts_per_10k_per_day` above).",
        "- PR-AUC is over events, recall is over cases: a case counts once its victim gets any task-level alert.",
        "- A call is reported when it ends: a victim who pays during the first scam call cannot be warned before",
        "  the loss by any model (`cases_observable_before_loss` counts those who could; the transfer itself is",
        "  still seen at the loss, which is why `cases_flagged_by_loss` may exceed `cases_observable_by_loss`).",
        "- A victim whose only calls before the loss were unanswered or under 2 min had what a ring's sweep gives",
        "  many people who are in no case; the table of missed cases counts them apart from the model's misses.",
        "- A false task is one for a subscriber in no case, but a ring's lines talk with many people who never",
        "  become cases; `false_tasks_after_fraud_contact` counts the false tasks for someone who had already",
        "  picked up a call from a case's fraud number (a visit there is not wasted the way others are).",
        "- Cases whose first contact lies before the data window, or whose loss lies after it (long romance and",
        "  investment scripts), are only partly seen; small scenarios make the per-scenario shares noisy.",
        "- New scripts (a scenario the simulator does not have, numbers from unseen ranges) are not covered.",
        f"- The model must be served with the same features (hash `{meta.get('features_hash')}`); the scorer",
        "  refuses a mismatch.",
        "",
    ]
    return "\n".join(lines)


def _threshold_method(info: dict[str, Any]) -> str:
    """How the thresholds were picked, from the model's ``threshold_info``."""
    if info.get("method") == "subscriber_folds":
        text = (
            f"Thresholds are chosen on scores from {info.get('folds')} subscriber folds: each fold's subscribers "
            "are scored, over every day, by a model fitted like this one without them."
        )
    else:
        text = "Thresholds are chosen on the last 40 % (both held-out slices)."
    if info.get("warmup_days"):
        text += f" Only rows from day {info['warmup_days']:g} of the history on count for the thresholds."
    if info.get("per") == "resident":
        text += " The budget counts false tasks per resident."
    elif info.get("per") == "distinct_subscriber":
        text += " The residents were unknown: the budget counts per distinct number seen (outsiders too)."
    return text


def write_model_card(
    version: ModelVersion,
    evaluation: dict[str, Any],
    data: Dataset,
    scores: np.ndarray,
    out_dir: Path | None = None,
    *,
    evaluation_source: str | None = None,
    protocol: dict[str, Any] | None = None,
    field_trial: dict[str, Any] | None = None,
) -> Path:
    """Write ``card.md`` and its four PNG plots next to the model (or into ``out_dir``); the card's path.

    ``evaluation`` is :func:`models.evaluate.evaluate`'s object for ``data`` (the feature rows of the
    evaluation events) and ``scores`` the model's calibrated scores of those rows.
    """
    if len(scores) != len(data.y):
        raise ValueError(f"{len(scores)} scores for {len(data.y)} feature rows")
    target = out_dir if out_dir is not None else version.path
    target.mkdir(parents=True, exist_ok=True)
    importance = feature_importance(version)
    thresholds = [float(t) for t in version.meta.get("thresholds", [])]
    plot_pr_curve(
        data.y.astype(np.int64),
        np.asarray(scores, dtype=np.float64),
        thresholds,
        target / PLOT_FILES[0],
        data.kinds,
    )
    plot_lead_times(evaluation.get("lead_times_s") or [], target / PLOT_FILES[1])
    plot_feature_importance(importance, target / PLOT_FILES[2])
    plot_per_scenario(evaluation.get("per_scenario", {}), target / PLOT_FILES[3])
    card = target / CARD_FILE
    _atomic_bytes(
        card, _card_text(version, evaluation, data, importance, evaluation_source, protocol, field_trial).encode()
    )
    return card
