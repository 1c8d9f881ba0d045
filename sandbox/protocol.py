"""The generalisation protocol: does the training recipe catch scripts and cities it never saw?

Two parts, each judged at the model's own thresholds (what the service would do) on held-out simulated cities:

- leave-one-scenario-out: for each scenario S, a model trained on cities with S's cases and every event they
  list removed (S is never seen as fraud nor as legitimate traffic), judged on a held-out city (another seed,
  the days after, judged after a warm-up) on S's cases only, with the false face-to-face tasks of the whole
  judged city per 10k residents per day; the oracle point (threshold matched on the judged city to
  ``oracle_rate`` false tasks) beside it tells the ranking from the threshold;
- small to large: a model trained on the small city with every scenario, judged on a city of the same size
  and on one many times larger.

Training and judging come in through two seams (``TrainFn``, ``EvaluateFn``) so that another training run
(many worlds) or another evaluation (a feedback-driven threshold) plugs in without touching the protocol.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from core.decode import decode
from core.events import Event
from core.settings import Settings
from features import FEATURES_HASH
from models import (
    OUTCOME_DELAY_MS,
    Dataset,
    FollowConfig,
    ModelRegistry,
    ModelVersion,
    Scorer,
    TrainConfig,
    build_dataset,
    evaluate_dataset,
    followed_levels,
    followed_summary,
    fraud_contacts,
    judged_after_warmup,
    operating_curve,
)
from sandbox.othergen import OtherConfig, simulate_other
from sandbox.simulate import DAY_MS, SCENARIOS, CityConfig, simulate
from sandbox.training import train_on_worlds
from sandbox.worlds import AnyWorld, WorldRanges, sample_other_worlds, sample_worlds

__all__ = [
    "PROTOCOL_FILE",
    "PROTOCOL_SCHEMA",
    "EvaluateFn",
    "JudgedCity",
    "ProtocolConfig",
    "TrainFn",
    "evaluate_on_city",
    "format_table",
    "judge_city",
    "protocol_path",
    "run_protocol",
    "train_on_cities",
]

_T = TypeVar("_T")

PROTOCOL_SCHEMA = "fraudwatch.generalise.v1"
PROTOCOL_FILE = "generalisation.json"

# (training cities, scenarios to leave out) -> a registered model. Today's default is ``train_on_cities``.
TrainFn = Callable[[Sequence[AnyWorld], Collection[str]], ModelVersion]


@dataclass(frozen=True)
class JudgedCity:
    """A held-out city simulated and featurised once, judged by every model of a protocol run."""

    config: CityConfig | OtherConfig
    residents: int
    warmup_days: float
    events: list[Event]
    cases: list[dict[str, Any]]  # every case of the city (the warm-up's too)
    data: Dataset  # feature rows over every event
    keep: np.ndarray  # rows judged: after the warm-up, victims of half-seen cases left out
    judged_cases: list[dict[str, Any]]
    contacts: dict[str, list[int]]


# (model, judged city) -> an evaluation object like ``models.evaluate``'s, with ``per_scenario``, false tasks
# per 10k residents per day and, optionally, an ``oracle`` evaluation at a threshold matched on the city.
EvaluateFn = Callable[[ModelVersion, JudgedCity], dict[str, Any]]


@dataclass(frozen=True)
class ProtocolConfig:
    """Sizes and seeds of one protocol run.

    The defaults cost about 5 CPU minutes (23 min wall on 2 cores shared with three other jobs; the large
    city's features are a third of it).
    """

    train_subscribers: int = 2000
    train_days: float = 5.0
    train_seed: int = 7
    # Victim rates far above reality: at 40 per 10k per day a 2,000 x 5-day city held ~40 cases and its judged
    # days ~3 per scenario (cases cluster in a city's first days, the warm-up), too few to tell 0 % from 50 %.
    train_victims_per_10k_per_day: float = 100.0
    judge_days: float = 3.0
    judge_warmup_days: float = 2.0
    judge_seed: int = 1007
    judge_victims_per_10k_per_day: float = 150.0
    large_subscribers: int = 20_000
    large_days: float = 1.0
    large_warmup_days: float = 1.0
    large_seed: int = 2007
    scenarios: tuple[str, ...] = SCENARIOS
    # One booster, thresholds on held-out days: 5x cheaper than the service's default (3 boosters, 4 folds).
    n_models: int = 1
    threshold_folds: int = 0
    num_boost_round: int = TrainConfig.num_boost_round
    oracle_rate: float = 1.0  # false face-to-face tasks per 10k residents per day of the reference point
    # Each left-out scenario judged on a held-out city of its own whose every case is that scenario (same size,
    # seed and legitimate traffic): ~50 cases with a loss each instead of the mixed city's 2-12, which could
    # not tell 0 % from 50 %. The mixed city still judges the every-scenario model.
    judge_per_scenario: bool = True
    # Train on this many sampled worlds (``sandbox.worlds``) of the training city's subscriber-days in all,
    # 1/2x to 2x its size, instead of the one training city: the recipe the service ships (``train --worlds``).
    worlds: int = 0
    # The every-scenario model judged on cities of another generator (``sandbox.othergen``: written apart from
    # our simulator, from the contract alone, with its own look-alikes and twelve scripts, most of them unknown
    # to ours): the nearest thing to the streams the service is judged on. A cold city (no history: every
    # number and payee is new on its first day) and a warm one with a full signalling feed judged after its
    # warm-up. (residents, days judged, warm-up days, signalling share, seed); () leaves this part out.
    other_cities: tuple[tuple[int, float, float, float, int], ...] = (
        (20_000, 2.0, 0.0, 0.0, 3007),
        (5_000, 2.0, 3.0, 1.0, 3008),
    )
    other_victims_per_10k_per_day: float = 14.0
    # Training worlds from the other generator beside ours (``sample_other_worlds``, same ranges): with them its
    # judged cities are no longer a generator the models never met (its scripts left out still are).
    other_worlds: int = 0

    @classmethod
    def quick(cls) -> ProtocolConfig:
        """Tiny cities, for a test that proves the machinery (its figures mean little)."""
        return cls(
            train_subscribers=400,
            train_days=2.0,
            train_victims_per_10k_per_day=300.0,
            judge_days=1.0,
            judge_warmup_days=0.5,
            judge_victims_per_10k_per_day=300.0,
            large_subscribers=1200,
            large_days=0.5,
            large_warmup_days=0.5,
            num_boost_round=80,
            other_cities=((600, 1.0, 0.0, 0.0, 3007), (400, 0.5, 0.5, 1.0, 3008)),
            other_victims_per_10k_per_day=150.0,
        )

    def train_city(self) -> CityConfig:
        """The small training city."""
        return CityConfig(
            subscribers=self.train_subscribers,
            days=self.train_days,
            seed=self.train_seed,
            victims_per_10k_per_day=self.train_victims_per_10k_per_day,
        )

    def training_worlds(self) -> list[AnyWorld]:
        """The training cities: the one small city, or ``worlds`` sampled worlds of its subscriber-days, and
        ``other_worlds`` of the other generator's."""
        ours = self._our_worlds()
        if self.other_worlds <= 0:
            return list(ours)
        return [
            *ours,
            *sample_other_worlds(self.other_worlds, self.train_seed, self._ranges(), start_ms=ours[0].start_ms),
        ]

    def _ranges(self) -> WorldRanges:
        rate = self.train_victims_per_10k_per_day
        # At least 2 days a world: a first try with 1/2x-5x sizes gave three 1-day worlds (the 7-day features
        # never filled), and its models caught 6 % by the loss on the mixed city where one 5-day city's caught 65 %.
        return WorldRanges(
            subscribers=(max(self.train_subscribers // 2, 50), self.train_subscribers * 2),
            subscriber_days=self.train_subscribers * self.train_days,
            days=(2.0, self.train_days * 2),
            victims_per_10k_per_day=(rate / 2, rate * 1.5),
        )

    def _our_worlds(self) -> list[CityConfig]:
        if self.worlds <= 0:
            return [self.train_city()]
        return sample_worlds(self.worlds, self.train_seed, self._ranges())

    def judge_city(self, subscribers: int, days: float, warmup_days: float, seed: int) -> CityConfig:
        """A held-out city: another seed, starting the day after the training city ends."""
        train = self.train_city()
        return dataclasses.replace(
            train,
            subscribers=subscribers,
            days=days + warmup_days,
            seed=seed,
            victims_per_10k_per_day=self.judge_victims_per_10k_per_day,
            start_ms=train.start_ms + int(np.ceil(train.days)) * DAY_MS,
        )


def protocol_path(settings: Settings) -> Path:
    """Where a protocol run's JSON is kept, for the model card to find."""
    return settings.data_dir / "artifacts" / PROTOCOL_FILE


def _decoded(events: list[dict[str, Any]]) -> list[Event]:
    # Through the stream's own decoder, as a file of these events would be read.
    return [decode(orjson.dumps(e)) for e in events]


def train_on_cities(
    configs: Sequence[AnyWorld],
    exclude_scenarios: Collection[str],
    *,
    settings: Settings,
    registry: ModelRegistry,
    n_models: int = 1,
    threshold_folds: int = 0,
    num_boost_round: int = TrainConfig.num_boost_round,
) -> ModelVersion:
    """The default ``TrainFn``: :func:`train_on_worlds` without the excluded scenarios in any city's mix (the
    model meets them neither as fraud nor as anything else), in the protocol's registry; not promoted, no card.
    """
    return train_on_worlds(
        configs,
        settings,
        exclude_scenarios=exclude_scenarios,
        n_models=n_models,
        threshold_folds=threshold_folds,
        registry=registry,
        num_boost_round=num_boost_round,
        compile_model=False,  # judged a few times and thrown away: compiling would cost more than it saves
        data_info={"protocol": PROTOCOL_SCHEMA},
    )


def judge_city(config: CityConfig, warmup_days: float) -> JudgedCity:
    """Simulate and featurise a held-out city once; its residents are its subscribers."""
    city = simulate(config)
    return _judged(config, config.subscribers, warmup_days, city.events, city.cases)


def judge_other_city(config: OtherConfig, warmup_days: float) -> JudgedCity:
    """Generate and featurise a city of the other generator once; judged like :func:`judge_city`'s."""
    city = simulate_other(config)
    return _judged(config, config.residents, warmup_days, city.events, city.cases)


def _judged(
    config: CityConfig | OtherConfig,
    residents: int,
    warmup_days: float,
    raw: list[dict[str, Any]],
    cases: list[dict[str, Any]],
) -> JudgedCity:
    events = _decoded(raw)
    data = build_dataset(events, cases)
    keep, judged = judged_after_warmup(data, cases, warmup_days)
    return JudgedCity(config, residents, warmup_days, events, cases, data, keep, judged, fraud_contacts(events, cases))


def _other_label(residents: int, days: float, warmup: float, signalling: float) -> str:
    history = f"judged after {warmup:g} d" if warmup > 0 else "cold"
    feed = "no signalling" if signalling <= 0 else f"{signalling:.0%} signalled"
    return f"other generator, {residents:,} x {days:g} d, {history}, {feed}"


def evaluate_on_city(
    version: ModelVersion,
    judged: JudgedCity,
    oracle_rate: float = 1.0,
    episode_ms: int = DAY_MS,
    follow: FollowConfig | None = None,
    budget: float = 1.0,
) -> dict[str, Any]:
    """The default ``EvaluateFn``: the city decided as the service would (thresholds following simulated
    outcomes from its first event, ``follow``; None: the model's own), judged after the warm-up, per resident.

    ``oracle``: the same city judged at the threshold that spends ``oracle_rate`` false tasks per 10k residents
    per day on it (None when even the top score spends more).
    """
    scorer = Scorer(version)
    everything = judged.data
    all_scores = scorer.score(everything.X) if len(everything.rows) else np.zeros(0)
    followed = None
    if follow is not None:
        followed = followed_levels(
            everything, judged.cases, scorer, all_scores, judged.residents, budget, episode_ms, follow
        )
    data, scores = everything.subset(judged.keep), all_scores[judged.keep]
    result = evaluate_dataset(
        data,
        judged.judged_cases,
        scorer,
        episode_ms,
        scores=scores,
        contacts=judged.contacts,
        residents=judged.residents,
        levels=None if followed is None else followed.levels[judged.keep],
        held=None if followed is None or followed.held is None else followed.held[judged.keep],
    )
    if followed is not None:
        result["thresholds_followed"] = followed_summary(followed, OUTCOME_DELAY_MS)
    result["false_tasks_per_10k_residents_per_day"] = result["false_tasks_per_10k_per_day"]
    point = operating_curve(
        data, judged.judged_cases, scores, episode_ms, rates=(oracle_rate,), residents=judged.residents
    )[0]
    oracle = None
    if point["task_threshold"] is not None:
        oracle = evaluate_dataset(
            data,
            judged.judged_cases,
            scorer,
            episode_ms,
            point["task_threshold"],
            scores=scores,
            residents=judged.residents,
        )
        oracle["false_tasks_per_10k_residents_per_day"] = oracle["false_tasks_per_10k_per_day"]
    result["oracle"] = oracle
    return result


def _minutes(seconds: Any) -> float | None:
    return round(float(seconds) / 60, 1) if seconds is not None else None


def _figures(group: dict[str, Any] | None) -> dict[str, Any]:
    group = group or {}
    with_loss = int(group.get("cases_with_loss") or 0)
    before, by = int(group.get("cases_flagged_before_loss") or 0), int(group.get("cases_flagged_by_loss") or 0)
    return {
        "cases": int(group.get("cases") or 0),
        "cases_with_loss": with_loss,
        "flagged_before_loss": before,
        "flagged_by_loss": by,
        "share_before_loss": before / with_loss if with_loss else None,
        "share_by_loss": by / with_loss if with_loss else None,
        "median_lead_min": _minutes(group.get("median_lead_time_s")),
    }


def _scenario_row(scenario: str, version: ModelVersion, result: dict[str, Any]) -> dict[str, Any]:
    oracle = result.get("oracle")
    return {
        "scenario": scenario,
        "model_version": version.version,
        **_figures(result.get("per_scenario", {}).get(scenario)),
        "task_threshold": result.get("task_threshold"),
        "false_tasks": result.get("false_tasks"),
        "false_tasks_per_10k_residents_per_day": result.get("false_tasks_per_10k_residents_per_day"),
        "oracle": None
        if oracle is None
        else {
            "task_threshold": oracle.get("task_threshold"),
            "false_tasks_per_10k_residents_per_day": oracle.get("false_tasks_per_10k_residents_per_day"),
            **_figures(oracle.get("per_scenario", {}).get(scenario)),
        },
    }


def _city_row(label: str, judged: JudgedCity, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "city": label,
        "residents": judged.residents,
        "days_judged": result.get("days"),
        "warmup_days": judged.warmup_days,
        **_figures(result),
        "false_tasks": result.get("false_tasks"),
        "false_tasks_per_10k_residents_per_day": result.get("false_tasks_per_10k_residents_per_day"),
        "pr_auc": result.get("pr_auc"),
        "oracle_flagged_by_loss": (result.get("oracle") or {}).get("cases_flagged_by_loss"),
    }


def _say(message: str) -> None:
    import sys

    print(f"[generalise] {message}", file=sys.stderr, flush=True)


def run_protocol(
    settings: Settings,
    config: ProtocolConfig,
    train_fn: TrainFn | None = None,
    evaluate_fn: EvaluateFn | None = None,
    residents: int | None = None,
    out: Path | None = None,
    train_cities: Sequence[AnyWorld] | None = None,
) -> dict[str, Any]:
    """Run both parts and write the result JSON (default :func:`protocol_path`); return it.

    Models go to their own registry under ``data_dir/protocol-models`` (never promoted: the live one stays).
    ``residents`` overrides the judged small city's residents (default: its subscribers). ``train_cities``
    (default: the config's one small city) are handed to ``train_fn``, e.g. a sample of many worlds.
    """
    started = time.monotonic()
    timings: dict[str, float] = {}
    if train_fn is None:
        registry = ModelRegistry(settings.data_dir / "protocol-models")
        train_fn = functools.partial(
            train_on_cities,
            settings=settings,
            registry=registry,
            n_models=config.n_models,
            threshold_folds=config.threshold_folds,
            num_boost_round=config.num_boost_round,
        )
    if evaluate_fn is None:
        evaluate_fn = functools.partial(
            evaluate_on_city,
            oracle_rate=config.oracle_rate,
            episode_ms=settings.episode_ms,
            follow=FollowConfig.from_settings(settings) if settings.budget_follow else None,
            budget=settings.budget_tasks_per_10k_per_day,
        )
    train_city = config.train_city()
    cities = list(train_cities) if train_cities is not None else config.training_worlds()
    small_config = config.judge_city(
        config.train_subscribers, config.judge_days, config.judge_warmup_days, config.judge_seed
    )

    def timed(name: str, fn: Callable[..., _T], *args: Any) -> _T:
        t0 = time.monotonic()
        value = fn(*args)
        timings[name] = round(time.monotonic() - t0, 1)
        _say(f"{name}: {timings[name]:.0f} s")
        return value

    small = timed("judged city", judge_city, small_config, config.judge_warmup_days)
    if residents is not None:
        small = dataclasses.replace(small, residents=residents)
    loso = []
    scenario_cities: dict[str, JudgedCity] = {}
    for scenario in config.scenarios:
        version = timed(f"train without {scenario}", train_fn, cities, [scenario])
        on = small
        if config.judge_per_scenario:
            only = dataclasses.replace(small_config, scenario_weights=((scenario, 1.0),))
            on = timed(f"{scenario} city", judge_city, only, config.judge_warmup_days)
            if residents is not None:
                on = dataclasses.replace(on, residents=residents)
            scenario_cities[scenario] = on
        result = timed(f"judge without {scenario}", evaluate_fn, version, on)
        loso.append(_scenario_row(scenario, version, result))
    full = timed("train on every scenario", train_fn, cities, [])
    seen = timed("judge with every scenario", evaluate_fn, full, small)
    # The every-scenario model on each scenario's own city: what the left-out model is compared with.
    with_every = [
        _scenario_row(
            s,
            full,
            timed(f"judge {s} city with every scenario", evaluate_fn, full, scenario_cities[s])
            if s in scenario_cities
            else seen,
        )
        for s in config.scenarios
    ]
    large_config = config.judge_city(
        config.large_subscribers, config.large_days, config.large_warmup_days, config.large_seed
    )
    large = timed("large city", judge_city, large_config, config.large_warmup_days)
    on_large = timed("judge the large city", evaluate_fn, full, large)
    other_rows = []
    for residents_o, days_o, warmup_o, signalling_o, seed_o in config.other_cities:
        label = _other_label(residents_o, days_o, warmup_o, signalling_o)
        other_config = OtherConfig(
            residents=residents_o,
            days=days_o + warmup_o,
            seed=seed_o,
            victims_per_10k_per_day=config.other_victims_per_10k_per_day,
            signalling=signalling_o,
        )
        other = timed(label, judge_other_city, other_config, warmup_o)
        judged_other = timed(f"judge {label}", evaluate_fn, full, other)
        row = _city_row(label, other, judged_other)
        row["per_scenario"] = {
            name: _figures(group) for name, group in sorted((judged_other.get("per_scenario") or {}).items())
        }
        other_rows.append(row)
    below = [r["scenario"] for r in loso if r["share_by_loss"] is not None and r["share_by_loss"] < 0.5]
    result = {
        "schema": PROTOCOL_SCHEMA,
        "created_s": round(time.time(), 1),
        "features_hash": FEATURES_HASH,
        "config": dataclasses.asdict(config),
        "train_city": dataclasses.asdict(train_city),
        "train_cities": [dataclasses.asdict(c) for c in cities],
        "judged_city": dataclasses.asdict(small_config),
        "judged_per_scenario": config.judge_per_scenario,
        "large_city": dataclasses.asdict(large_config),
        "thresholds": "the model's own (as served), oracle: matched on the judged city",
        "leave_one_scenario_out": loso,
        "with_every_scenario": with_every,
        "small_to_large": [
            _city_row("same size as training", small, seen),
            _city_row(f"{large.residents // max(small.residents, 1)}x larger", large, on_large),
        ],
        "other_generator": other_rows,
        "below_half_by_loss": below,
        "no_cases_with_loss": [r["scenario"] for r in loso if r["cases_with_loss"] == 0],
        "timings_s": timings,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = out if out is not None else protocol_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    tmp.replace(path)
    result["path"] = str(path)
    return result


def format_table(result: dict[str, Any]) -> list[str]:
    """The protocol's headline tables as Markdown lines, as the model card opens with them."""
    from models import generalisation_tables  # the card's renderer (one table, two readers)

    return generalisation_tables(result)
