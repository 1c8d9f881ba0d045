"""Does a training recipe rank the other generator's victims better? Several seeds, pooled over cold cities.

    python scripts/pooled_judge.py OUT_DIR LABEL [--config '{"num_boost_round": 300}'] [--seeds 7,8,9]
    python scripts/pooled_judge.py OUT_DIR --summary

One city of the other generator holds about 50 loss cases, and one booster's seed moves its catch at the budget
from 1 to 10 of them: a recipe judged on one city and one seed tells nothing. This trains one booster per seed
(``TrainConfig(n_models=1, threshold_folds=0, seed=S, **config)``) on the demo's default training worlds, and
judges each on ``--cities`` cold cities of the other generator (20,000 residents x 2 days each; seeds 9 and 77
are the ones `fraudwatch generalise` uses) by ``operating_curve`` at ``--rate`` false tasks per 10k residents per
day, the threshold matched on each city: the ranking, not the threshold choice. It sums the cases flagged before
and by the loss over cities and seeds (about 275 loss cases a seed on the six default cities).

World features are cached in OUT_DIR (a fresh OUT_DIR after changing features). One JSON line per (label, seed)
goes to OUT_DIR/results.jsonl; ``--summary`` prints the totals per label. About 2 minutes a seed on 2 cores after
the caches (which take about 6 minutes); run it under ``nice``.
"""

from __future__ import annotations

import argparse
import collections
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from models.dataset import concat_datasets
from models.evaluate import operating_curve
from models.registry import ModelRegistry
from models.scoring import Scorer
from models.train import TrainConfig, train_model
from sandbox.demo import DemoConfig, default_training_worlds
from sandbox.othergen import OtherConfig
from sandbox.training import World, world_dataset

OTHER_SEEDS = (9, 77, 101, 102, 103, 104)


def cached(path: Path, make: Any) -> World:
    """A world's rows and cases, computed once per OUT_DIR."""
    if path.exists():
        with path.open("rb") as f:
            world: World = pickle.load(f)
            return world
    world = make()
    with path.open("wb") as f:
        pickle.dump(world, f)
    return world


def judge(world: World, scores: np.ndarray, rate: float) -> dict[str, Any]:
    """Cases flagged at ``rate`` false tasks per 10k residents per day (matched on the city), and PR-AUC."""
    point = operating_curve(world.data, world.cases, scores, rates=(rate,), residents=world.residents[0])[0]
    events = world.data.event_rows
    y = world.data.y[events]
    return {
        "cases_with_loss": point["cases_with_loss"],
        "cases_flagged_before_loss": point["cases_flagged_before_loss"],
        "cases_flagged_by_loss": point["cases_flagged_by_loss"],
        "pr_auc": round(float(average_precision_score(y, scores[events])), 4) if y.any() else None,
    }


def run(out: Path, label: str, config: dict[str, Any], seeds: list[int], cities: list[int], rate: float) -> None:
    """Train one booster per seed and judge it on every city; one results line per seed."""
    out.mkdir(parents=True, exist_ok=True)
    worlds = default_training_worlds(DemoConfig())
    train = [cached(out / f"train-{k}.pkl", lambda w=w: world_dataset(w)) for k, w in enumerate(worlds)]
    judged = {
        seed: cached(
            out / f"other-{seed}.pkl", lambda s=seed: world_dataset(OtherConfig(residents=20_000, days=2, seed=s))
        )
        for seed in cities
    }
    data = concat_datasets([w.data for w in train])
    victims = {c["victim"] for w in train for c in w.cases}
    spans = tuple(w.residents for w in train)
    for seed in seeds:
        knobs = {"n_models": 1, "threshold_folds": 0, "seed": seed, "resident_spans": spans, **config}
        registry = ModelRegistry(out / "reg" / label)
        version = train_model(data, victims, registry, TrainConfig(**knobs), {"source": "pooled judge"})
        scorer = Scorer(version, compiled=False)
        per_city = {str(s): judge(w, scorer.score(w.data.X), rate) for s, w in judged.items()}
        line = {"label": label, "config": config, "seed": seed, "rate": rate, "cities": per_city}
        with (out / "results.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")
        by = sum(c["cases_flagged_by_loss"] for c in per_city.values())
        n = sum(c["cases_with_loss"] for c in per_city.values())
        print(f"{label} seed {seed}: {by}/{n} by the loss at {rate}/10k/day", file=sys.stderr, flush=True)


def summary(out: Path) -> None:
    """Per label: cases flagged before and by the loss over every seed and city, and the per-seed spread."""
    totals: dict[str, list[tuple[int, int, int, float]]] = collections.defaultdict(list)
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        cities = r["cities"].values()
        aps = [c["pr_auc"] for c in cities if c["pr_auc"] is not None]
        totals[r["label"]].append(
            (
                sum(c["cases_flagged_before_loss"] for c in cities),
                sum(c["cases_flagged_by_loss"] for c in cities),
                sum(c["cases_with_loss"] for c in cities),
                float(np.mean(aps)) if aps else float("nan"),
            )
        )
    print("| recipe | seeds | before the loss | by the loss | by the loss, per seed | mean PR-AUC |")
    print("|---|---|---|---|---|---|")
    for label, rows in totals.items():
        before, by, n = (sum(r[i] for r in rows) for i in range(3))
        spread = ", ".join(f"{r[1]}/{r[2]}" for r in rows)
        ap = np.mean([r[3] for r in rows])
        print(
            f"| {label} | {len(rows)} | {before}/{n} ({100 * before / n:.1f} %) | {by}/{n} ({100 * by / n:.1f} %) "
            f"| {spread} | {ap:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("label", nargs="?")
    parser.add_argument("--config", default="{}", help="TrainConfig overrides, as JSON")
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--cities", default=",".join(map(str, OTHER_SEEDS)), help="the other generator's seeds")
    parser.add_argument("--rate", type=float, default=1.0, help="false tasks per 10k residents per day")
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    if args.summary:
        summary(args.out)
        return
    if not args.label:
        parser.error("LABEL is needed to run")
    seeds = [int(s) for s in args.seeds.split(",")]
    cities = [int(s) for s in args.cities.split(",")]
    run(args.out, args.label, json.loads(args.config), seeds, cities, args.rate)


if __name__ == "__main__":
    main()
