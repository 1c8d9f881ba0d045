"""Issue #21's study: a shipped model meets a city of another simulated world and is retrained weekly on it.

    python scripts/field_trial_study.py OUT_DIR [--field-weight W] [--weeks 4] [--residents 2500]
        [--no-live-reports] [--train-reports]

Trains the shipped model on sampled worlds (world seed 7), simulates a 4-week city from another sampler seed
(its own size, rates, scripts mix and look-alikes), runs ``fraudwatch field-trial``'s protocol on it and prints
the per-week table. The result is kept under OUT_DIR/data/artifacts/field_trial.json, where model cards of that
data folder find it; a card of the shipped model is written last.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from core.settings import Settings
from models import field_trial_table
from sandbox.field_trial import TrialConfig, field_trial_files
from sandbox.simulate import simulate, write_city
from sandbox.training import holdout_city, train_on_worlds, write_card_on_city
from sandbox.worlds import WorldRanges, sample_worlds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--field-weight", type=float, default=TrialConfig.field_weight)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--residents", type=int, default=2500)
    parser.add_argument("--train-subscriber-days", type=float, default=24_000)
    parser.add_argument("--city-seed", type=int, default=2121)
    parser.add_argument("--no-ring-cases", action="store_true", help="Label field rows by reports and outcomes alone")
    parser.add_argument("--handover", choices=("match", "carry", "own"), default=TrialConfig.handover)
    parser.add_argument("--no-live-reports", action="store_true", help="Police reports train the retrains only")
    parser.add_argument(
        "--train-reports", action="store_true", help="Half the training worlds carry a police feed (3-day delay)"
    )
    args = parser.parse_args()
    settings = Settings(data_dir=args.out / "data", compile_models=False)
    t0 = time.monotonic()
    train_worlds = sample_worlds(
        3,
        7,
        WorldRanges(
            subscribers=(2000, 10_000),
            subscriber_days=args.train_subscriber_days,
            days=(2.0, 7.0),
            report_delays=(3.0, None) if args.train_reports else (None,),
        ),
    )
    shipped = train_on_worlds(train_worlds, settings, promote=True, n_models=1, threshold_folds=0)
    print(f"shipped {shipped.version} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    days = 7.0 * args.weeks
    (world,) = sample_worlds(
        1,
        args.city_seed,
        WorldRanges(
            subscribers=(args.residents, args.residents), subscriber_days=args.residents * days, days=(days, days)
        ),
    )
    city_dir = args.out / "city"
    write_city(simulate(world), city_dir)
    print(f"city: {world}", file=sys.stderr)
    t1 = time.monotonic()
    result = field_trial_files(
        city_dir / "events.jsonl",
        city_dir / "cases.jsonl",
        settings,
        TrialConfig(
            field_weight=args.field_weight,
            handover=args.handover,
            ring_cases=not args.no_ring_cases,
            live_reports=not args.no_live_reports,
        ),
        say=lambda m: print(m, file=sys.stderr),
    )
    print(f"trial in {time.monotonic() - t1:.0f} s", file=sys.stderr)
    print("\n".join(field_trial_table(result)))
    card = write_card_on_city(shipped, holdout_city(dataclasses.replace(train_worlds[0], days=3.0)), settings)
    print(f"card: {card}", file=sys.stderr)


if __name__ == "__main__":
    main()
