"""Does the face-to-face budget hold on new cities? Train with several seeds, evaluate each at ``--budget``.

    python scripts/threshold_study.py run OUT_DIR LABEL --config '{"threshold_folds": 4}' --seeds 7,8,9,10
    python scripts/threshold_study.py summary OUT_DIR [--label LABEL]

``run`` expects in OUT_DIR ``fraudwatch simulate`` folders: the train city (``--train``, default train21:
3000 subscribers x 14 days, seed 21) and the cold eval cities eval555, eval777, eval999 (3000 x 7 days), all at
40 victims per 10k per day. With ``--warm-days D`` it also judges warm555, warm777, warm999 (3000 x 14 days,
same seeds) after a D-day warm-up, as ``evaluate --warmup-days D`` does: a city whose callers and subscribers
already have a history, as a live service's have. It caches the feature rows in OUT_DIR (the caches hold the
feature set of the code that built them: use a fresh OUT_DIR after changing features), registers the models
under OUT_DIR/reg/LABEL and appends one JSON line per (seed, city, protocol) to OUT_DIR/results.jsonl.
Run it under ``nice``: each training run takes minutes.

``--config`` overrides TrainConfig's defaults: ``'{}'`` is the default setup (3 models, thresholds on 4
subscriber folds); ``'{"threshold_warmup_days": 7}'`` picks the thresholds on the training city's second week.

``summary`` sums the lines per (label, protocol): cases flagged before / by the loss at each model's own
threshold, pairs over budget, and the operating curve (cases reached at matched false-task rates).
"""

from __future__ import annotations

import argparse
import collections
import json
import pickle
import time
from pathlib import Path
from typing import Any

from models.budget import threshold_for_budget
from models.dataset import Dataset, build_dataset, load_events, read_jsonl
from models.evaluate import after_warmup, evaluate_dataset, fraud_contacts
from models.registry import ModelRegistry
from models.scoring import Scorer
from models.train import TrainConfig, train_model

EVAL_SEEDS = (555, 777, 999)
FIELDS = (
    "false_tasks",
    "false_tasks_per_10k_per_day",
    "false_tasks_after_fraud_contact",
    "false_tasks_after_fraud_contact_per_10k_per_day",
    "cases_with_loss",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "cases_observable_before_loss",
    "cases_observable_by_loss",
    "observable_flagged_before_loss",
    "observable_flagged_by_loss",
    "missed_before_loss",
    "median_lead_time_s",
    "pr_auc",
    "tasks",
)


def city(root: Path, name: str) -> tuple[Dataset, list[dict[str, Any]]]:
    """Feature rows and cases of the simulated city in ``root/name``, cached next to it."""
    cache = root / f"ds_{name}.pkl"
    if cache.exists():
        data, cases = pickle.loads(cache.read_bytes())
        return data, cases
    cases = read_jsonl(root / name / "cases.jsonl")
    data = build_dataset(load_events(root / name / "events.jsonl").events, cases)
    cache.write_bytes(pickle.dumps((data, cases)))
    return data, cases


def contacts(root: Path, name: str, cases: list[dict[str, Any]]) -> dict[str, list[int]]:
    """When the city's subscribers picked up calls from fraud numbers (``evaluate.fraud_contacts``), cached."""
    cache = root / f"contacts_{name}.pkl"
    if cache.exists():
        found: dict[str, list[int]] = pickle.loads(cache.read_bytes())
        return found
    found = fraud_contacts(load_events(root / name / "events.jsonl").events, cases)
    cache.write_bytes(pickle.dumps(found))
    return found


def judged(root: Path, name: str, warm_days: float = 0.0) -> tuple[Dataset, list[dict[str, Any]], dict[str, list[int]]]:
    """What to judge in one eval city: its rows and cases after ``warm_days``, and its fraud contacts."""
    data, cases = city(root, name)
    found = contacts(root, name, cases)
    data, cases = after_warmup(data, cases, warm_days)
    return data, cases, found


def run(
    root: Path, label: str, config: dict[str, Any], seeds: list[int], train: str, budget: float, warm_days: float
) -> None:
    """Train one model per seed and append its evaluation on every eval city to ``root/results.jsonl``."""
    train_data, train_cases = city(root, train)
    evals = [("cold", seed, *judged(root, f"eval{seed}")) for seed in EVAL_SEEDS]
    if warm_days > 0:
        evals += [("warm", seed, *judged(root, f"warm{seed}", warm_days)) for seed in EVAL_SEEDS]
    registry = ModelRegistry(root / "reg" / (label if train == "train21" else f"{label}-{train}"))
    defaults = TrainConfig().__dict__
    for seed in seeds:
        start = time.time()
        train_config = TrainConfig(seed=seed, **config)
        # Training is deterministic: a model registered earlier with the same knobs is the same model.
        # Knobs added since an older model was trained count at their defaults.
        known = [v for v in registry.versions() if {**defaults, **v.meta["train_config"]} == train_config.__dict__]
        if known:
            version = known[-1]
        else:
            version = train_model(train_data, {c["victim"] for c in train_cases}, registry, train_config, {})
        seconds = round(time.time() - start, 1)
        scorer = Scorer(version, compiled=False)
        threshold = threshold_for_budget(scorer.meta, budget)
        for protocol, eval_seed, data, cases, found in evals:
            result = evaluate_dataset(data, cases, scorer, threshold=threshold, contacts=found)
            line = {key: result[key] for key in FIELDS}
            line.update(
                label=label,
                protocol=protocol,
                warmup_days=warm_days if protocol == "warm" else 0,
                train=train,
                seed=seed,
                city=eval_seed,
                threshold=threshold,
                train_s=seconds,
                threshold_info=version.meta.get("threshold_info"),
                curve=[
                    [
                        p["false_tasks_per_10k_per_day_at_most"],
                        p["cases_flagged_before_loss"],
                        p["cases_flagged_by_loss"],
                    ]
                    for p in result["operating_curve"]
                ],
            )
            print(json.dumps(line), flush=True)
            with open(root / "results.jsonl", "a") as out:
                out.write(json.dumps(line) + "\n")


def summary(root: Path, label: str | None, budget: float) -> None:
    """Print, per (label, protocol), the sums over the (seed, city) pairs of ``root/results.jsonl``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for text in (root / "results.jsonl").read_text().splitlines():
        line = json.loads(text)
        if label is None or line["label"] == label:
            groups[(line["label"], line.get("protocol", "cold"))].append(line)
    for (name, protocol), lines in sorted(groups.items()):
        cases = sum(x["cases_with_loss"] for x in lines)
        before = sum(x["cases_flagged_before_loss"] for x in lines)
        by = sum(x["cases_flagged_by_loss"] for x in lines)
        falses = sorted(round(x["false_tasks_per_10k_per_day"], 2) for x in lines)
        over = sum(x["false_tasks_per_10k_per_day"] > budget for x in lines)
        missed: collections.Counter[str] = collections.Counter()
        curve: dict[float, list[int]] = collections.defaultdict(lambda: [0, 0])
        for x in lines:
            missed.update(x.get("missed_before_loss") or {})
            for rate, b, y in x.get("curve") or []:
                curve[rate][0] += b
                curve[rate][1] += y
        print(f"{name} [{protocol}] {len(lines)} pairs, {cases} cases with a loss")
        print(f"  own threshold: before {before} ({before / max(cases, 1):.1%}), by {by} ({by / max(cases, 1):.1%})")
        contacted = sum(x.get("false_tasks_after_fraud_contact", 0) for x in lines)
        print(f"  false tasks/10k/day per pair {falses}; over {budget:g}: {over}")
        print(f"  false tasks {sum(x['false_tasks'] for x in lines)}, after a fraud number's call: {contacted}")
        print(f"  missed before the loss: {dict(missed)}")
        if curve:
            print("  matched rate: before|by  " + "  ".join(f"{r:g}: {b}|{y}" for r, (b, y) in sorted(curve.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run")
    run_cmd.add_argument("root", type=Path)
    run_cmd.add_argument("label")
    run_cmd.add_argument("--config", default="{}", help="TrainConfig overrides as JSON")
    run_cmd.add_argument("--seeds", default="7,8,9,10")
    run_cmd.add_argument("--train", default="train21")
    run_cmd.add_argument("--budget", type=float, default=1.0)
    run_cmd.add_argument("--warm-days", type=float, default=0.0, help="also judge warm555.. after this warm-up")
    sum_cmd = commands.add_parser("summary")
    sum_cmd.add_argument("root", type=Path)
    sum_cmd.add_argument("--label")
    sum_cmd.add_argument("--budget", type=float, default=1.0)
    args = parser.parse_args()
    if args.command == "run":
        seeds = [int(s) for s in args.seeds.split(",")]
        run(args.root, args.label, json.loads(args.config), seeds, args.train, args.budget, args.warm_days)
    else:
        summary(args.root, args.label, args.budget)


if __name__ == "__main__":
    main()
