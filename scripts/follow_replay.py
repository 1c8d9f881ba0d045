"""Replay a finished field trial's follower with its own models under other follower settings, in minutes.

    python scripts/follow_replay.py STUDY_DIR [--variant '{"evidence_sd": 1.0}' ...] [--oracle] [--per-day]

STUDY_DIR is a ``scripts/field_trial_study.py`` output folder (its ``city/`` and ``data/``). The trial's
promotions are taken as they happened (the swaps at each cut-off with the recorded hand-over thresholds and
training cut-offs); only ``FollowConfig`` changes, so each variant's per-week figures are what the trial would have
printed with it (with no variant this reproduces the trial's table). A whole trial takes ~20 minutes; a variant
here about two. ``--oracle``: per week, the cases the serving model's ranking reaches at a threshold matched on
that week itself (``operating_curve``), what no follower can do but what tells ranking from threshold-following.
``--per-day``: per day of each variant, the face-to-face threshold's range and its tasks, false ones among them.
The city's feature rows are cached in STUDY_DIR/rows.pkl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

from core.settings import Settings
from features import DAY_MS
from models import ModelRegistry, Scorer, fraud_contacts, load_events, read_jsonl
from models.dataset import Dataset, build_dataset, case_labels
from models.evaluate import TASK_LEVEL, operating_curve
from models.feedback import FollowConfig, FollowResult, ModelSwap
from sandbox.field_trial import (
    TrialConfig,
    field_trial_path,
    judge_week,
    serve_city,
    week_rows,
    with_police_feed,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("study", type=Path)
    parser.add_argument("--variant", action="append", default=[], help="FollowConfig fields as JSON; repeatable")
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--per-day", action="store_true")
    args = parser.parse_args()
    settings = Settings(data_dir=args.study / "data", compile_models=False)
    trial = json.loads(field_trial_path(settings).read_text())
    events = load_events(args.study / "city" / "events.jsonl").events
    cases = list(read_jsonl(args.study / "city" / "cases.jsonl"))
    # A trial from before the police feed recorded no ``live_reports``: it served the stream without one.
    config = TrialConfig(**{"live_reports": False, **trial["config"]})
    events = with_police_feed(events, cases, config)  # the stream as the trial served it
    data = _rows(args.study / "rows.pkl", events)
    registry = ModelRegistry(settings.data_dir / "artifacts" / "field-trial" / "models")
    scorers = {v: Scorer(registry.get(v), compiled=False) for v in {trial["shipped_model"], *_served(trial)}}
    scores = {v: s.score(data.X) for v, s in scorers.items()}
    swaps = [
        ModelSwap(w["to_ms"], tuple(r["handover_thresholds"]), scorers[r["candidate"]].hold_threshold,
                  scores[r["candidate"]], config.handover == "carry", learnt_until_ms=w["to_ms"])
        for w in trial["weeks"]
        if (r := w.get("retrain_after")) and r.get("promoted")
    ]  # fmt: skip
    served = scores[trial["shipped_model"]].copy()  # each row as the model serving it scores it
    for swap in swaps:
        served[data.avail_ms >= swap.at_ms] = swap.scores[data.avail_ms >= swap.at_ms]
    victims = {c["victim"] for c in cases}
    truth = case_labels(data.rows, cases)
    contacts = fraud_contacts(events, cases)
    shipped = trial["shipped_model"]
    follow = FollowConfig.from_settings(settings)
    for variant in [{}, *(json.loads(v) for v in args.variant)]:
        run = serve_city(
            data, scorers[shipped], scores[shipped], trial["residents"], victims, settings, config,
            dataclasses.replace(follow, **variant), swaps,
        )  # fmt: skip
        for week in trial["weeks"]:
            keep, judged = week_rows(data, cases, week["from_ms"], week["to_ms"])
            figures = judge_week(
                data.subset(keep), truth[keep], judged, scorers[week["model"]], served[keep], run, keep, contacts,
                settings, trial["residents"],
            )  # fmt: skip
            print(json.dumps({"variant": variant, "week": week["week"], **_short(figures)}))
        if args.per_day:
            for day in _per_day(run, data, victims):
                print(json.dumps({"variant": variant, **day}))
    if args.oracle:
        for week in trial["weeks"]:
            keep, judged = week_rows(data, cases, week["from_ms"], week["to_ms"])
            curve = operating_curve(
                data.subset(keep), judged, served[keep], rates=(0.0, 0.5, 1.0, 2.0), residents=trial["residents"]
            )
            print(json.dumps({"oracle_week": week["week"], "at": [_short(p) for p in curve]}))


def _rows(cache: Path, events: list[Any]) -> Dataset:
    if cache.exists():
        with cache.open("rb") as f:
            data: Dataset = pickle.load(f)
            return data
    data = build_dataset(events, [])
    with cache.open("wb") as f:
        pickle.dump(data, f)
    return data


def _per_day(run: FollowResult, data: Dataset, victims: set[str]) -> list[dict[str, Any]]:
    """Per day from the first row: the face-to-face threshold's lowest and highest, its tasks, false ones."""
    start = int(data.avail_ms.min())
    level = TASK_LEVEL - 1
    out = []
    in_force = run.history[0][1][level]
    changes = iter(run.history)
    change = next(changes, None)
    for day in range(int((int(data.avail_ms.max()) - start) // DAY_MS) + 1):
        hi_ms = start + (day + 1) * DAY_MS
        seen = [in_force]
        while change is not None and change[0] < hi_ms:
            in_force = change[1][level]
            seen.append(in_force)
            change = next(changes, None)
        tasks = [r for r in run.task_rows if start + day * DAY_MS <= data.avail_ms[r] < hi_ms]
        false = sum(1 for r in tasks if data.subscribers[r] not in victims)
        out.append(
            {"day": day, "threshold": [round(min(seen), 3), round(max(seen), 3)], "tasks": len(tasks), "false": false}
        )
    return out


def _served(trial: dict[str, Any]) -> set[str]:
    return {w["model"] for w in trial["weeks"]} | {
        r["candidate"] for w in trial["weeks"] if (r := w.get("retrain_after")) and r.get("promoted")
    }


def _short(figures: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "false_tasks_per_10k_per_day",
        "cases_with_loss",
        "cases_flagged_before_loss",
        "cases_flagged_by_loss",
        "false_holds_per_10k_per_day",
        "cases_stopped",
    )
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items() if k in keys}


if __name__ == "__main__":
    main()
