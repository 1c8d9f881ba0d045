"""The field-trial protocol: a city served from its first day, retrained every week on what it has taught us.

A city's stream runs through the service's decisions (``models.follow_offline``, the thresholds following the
outcomes) with the shipped model. At the end of each week (``TrialConfig.week_days``):

- what would be known by then is gathered: the outcome of every task resolved by the cut-off (``label.v1``
  dicts, ``outcome_delay_h`` after the task, ``false_alarm`` for a person in no case), the police report of
  every case with a loss, made ``report_delay_days`` after the loss, and the other cases of the reported numbers
  (``ring_cases``: who answered one of them for two minutes or more);
- a model is retrained on the simulated training worlds plus the city's rows up to the cut-off, labelled by
  those labels and reports alone (rows of the last ``report_delay_days`` only for people already known to be
  victims: the others may be victims not yet reported), the field rows weighted ``field_weight``;
- it is promoted only when it beats the live model on the *slice*, the city's subscribers of one hash fold
  (``slice_folds``) that no retrain ever sees: average precision of the known labels on the slice's rows up to
  the cut-off. A worse or equal model is never promoted;
- the next week is served by the live model. A promoted model takes over at the live alert volume
  (``TrialConfig.handover``, ``models.match_alert_rate``: its thresholds alert on as many of the slice's rows of
  the past week as the live ones did), and the follower goes on from there: the window re-scored by the new
  model, the outcomes known kept.

Each week is then judged as ``evaluate`` judges a stream: the week's rows, the cases first contacted in it.
The trial never reads a case's truth except through the simulated outcomes and reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.metrics import average_precision_score

from core.events import Event
from core.levels import level_budgets
from core.outcomes import OUTCOME_TARGET
from core.settings import Settings
from features import DAY_MS
from models import (
    TASK_LEVEL,
    Dataset,
    FieldLabels,
    FieldReports,
    FollowConfig,
    FollowResult,
    ModelRegistry,
    ModelSwap,
    ModelVersion,
    ResidentSpan,
    Scorer,
    TrainConfig,
    build_dataset,
    case_labels,
    cases_from_labels,
    cases_from_reported_numbers,
    cases_from_reports,
    evaluate_dataset,
    follow_offline,
    fraud_contacts,
    labels_known_by,
    match_alert_rate,
    subscriber_folds,
    train_model,
    with_reports,
)

__all__ = [
    "FIELD_TRIAL_FILE",
    "FIELD_TRIAL_SCHEMA",
    "Known",
    "SimulatedPart",
    "TrialConfig",
    "field_trial_files",
    "field_trial_path",
    "judge_week",
    "known_by",
    "last_field_trial",
    "run_field_trial",
    "serve_city",
    "simulated_part",
    "trial_labels",
    "week_rows",
    "with_police_feed",
]

HOUR_MS = 3_600_000
FIELD_TRIAL_SCHEMA = "fraudwatch.field_trial.v1"
FIELD_TRIAL_FILE = "field_trial.json"


def field_trial_path(settings: Settings) -> Path:
    """Where the last field trial's JSON is kept, for the model card to find."""
    return settings.data_dir / "artifacts" / FIELD_TRIAL_FILE


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """The protocol's knobs (CLI ``fraudwatch field-trial``)."""

    week_days: float = 7.0
    outcome_delay_h: float = 4.0  # a task's outcome comes back this long after it, as in ``evaluate``
    report_delay_days: float = 3.0  # a victim reports a loss to the police this long after it
    # A field row counts this many simulated rows in the boosting: the city's own evidence outweighs the
    # simulator's, which has many more rows (measured in the issue #21 note).
    field_weight: float = 3.0
    slice_folds: int = 4  # one fold of the city's subscribers (by hash) is the promotion slice
    promote_margin: float = 0.0  # average precision the new model must gain on the slice
    # ... and in this share of resamples of the slice's subscribers (with replacement, ``promote_draws`` of them):
    # a slice with a handful of known victims promoted a worse model on a lucky draw (issue #21's note, stop 37).
    promote_confidence: float = 0.9
    promote_draws: int = 200
    # Where a promoted model's thresholds start: "match", the live alert volume on the slice's past week
    # (models.match_alert_rate); "carry", the live thresholds' learnt offset in log-odds put on its own
    # (models.carry_over); "own", its training thresholds. On a second city "carry" flooded a week with 23 false
    # visits per 10k a day, "own" 2.9, "match" 0.6 and found the most victims (issue #21's note, stop 39).
    handover: Literal["match", "carry", "own"] = "match"
    # The reported rings' other cases (models.cases_from_reported_numbers) label the field rows too.
    ring_cases: bool = True
    # The police reports reach the service too, as they are made (the reports topic): a reported number's later
    # calls carry it (``caller_reported``). Only when the stream has no reports of its own.
    live_reports: bool = True
    n_models: int = 1
    threshold_folds: int = 0
    num_boost_round: int | None = None  # None: TrainConfig's
    # Early stopping of a retrain on the ranking (average precision) rather than the log loss, which stopped
    # the first week's retrain after 2 rounds (its stop rows: a few weighted field positives).
    stop_metric: str = "average_precision"
    # Field rows per retrain at most (sampled by subscriber beyond it): a retrain's time and memory stay bounded
    # on a city of any size.
    max_field_rows: int = 2_000_000

    @property
    def week_ms(self) -> int:
        """A week's length (the retraining period), in ms."""
        return int(self.week_days * DAY_MS)


@dataclasses.dataclass(frozen=True)
class SimulatedPart:
    """The simulated training rows every retrain starts from: rows, victims and residents per world."""

    data: Dataset
    victims: set[str]
    spans: tuple[ResidentSpan, ...]
    info: dict[str, Any]


def trial_labels(
    data: Dataset,
    task_rows: Sequence[int],
    victims: dict[str, int | None],
    cutoff_ms: int,
    outcome_delay_ms: int,
    episode_ms: int,
) -> list[dict[str, Any]]:
    """The ``label.v1`` outcomes of the tasks resolved by ``cutoff_ms``: the responders' records, simulated.

    ``victims``: each case's victim and first loss (None: no loss). A task for anyone else is a false alarm;
    a victim's is ``dissuaded`` when it came before the loss (or there was none), else ``money_lost``.
    """
    labels = []
    for i in task_rows:
        at, sub = int(data.avail_ms[i]), data.rows[i].subscriber
        resolved = at + outcome_delay_ms
        if resolved > cutoff_ms:
            continue
        if sub not in victims:
            outcome = "false_alarm"
        else:
            loss = victims[sub]
            outcome = "dissuaded" if loss is None or at < loss else "money_lost"
        labels.append(
            {
                "format": "label.v1",
                "task_id": f"trial-{data.rows[i].event_id}",
                "subscriber": sub,
                "outcome": outcome,
                "target": OUTCOME_TARGET.get(outcome),
                "intervened": outcome == "dissuaded",
                "task_created_ms": at,
                "episode_start_ms": at - episode_ms,  # the day of evidence behind the task...
                "episode_end_ms": resolved,  # ...and what followed until the responder's record
                "resolved_ms": resolved,
            }
        )
    return labels


def _slice_mask(subscribers: list[str], folds: int) -> np.ndarray:
    """The promotion slice: the subscribers of fold 0 of ``folds`` (fixed per number), never trained on."""
    return subscriber_folds(subscribers, folds) == 0 if folds > 1 else np.zeros(len(subscribers), dtype=bool)


def _unit_hash(subscribers: list[str]) -> np.ndarray:
    """A number in [0, 1) per row, fixed per subscriber, independent of the slice's folds."""
    cache: dict[str, float] = {}
    for sub in set(subscribers):
        digest = hashlib.blake2b(b"field-sample:" + sub.encode(), digest_size=8).digest()
        cache[sub] = int.from_bytes(digest, "big") / 2**64
    return np.asarray([cache[s] for s in subscribers])


def _average_precision(y: np.ndarray, scores: np.ndarray) -> float | None:
    return float(average_precision_score(y, scores)) if y.any() and not y.all() else None


def _share_won(y: np.ndarray, new: np.ndarray, live: np.ndarray, subs: np.ndarray, draws: int) -> float:
    """Share of resamples of the subscribers (with replacement, seeded) in which ``new`` beats ``live``'s
    average precision: how far a gain on the slice is more than which few victims it happened to hold."""
    if draws <= 0:
        return 1.0
    _, group = np.unique(subs, return_inverse=True)
    n_groups = int(group.max()) + 1 if len(group) else 0
    rng = np.random.default_rng(20_261_207)
    won = 0
    for _ in range(draws):
        weight = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[group]
        kept = weight > 0
        if not y[kept].any():
            continue  # no victim drawn: this resample cannot tell the models apart (counts as not won)
        ap_new = average_precision_score(y[kept], new[kept], sample_weight=weight[kept])
        ap_live = average_precision_score(y[kept], live[kept], sample_weight=weight[kept])
        won += bool(ap_new > ap_live)
    return won / draws


@dataclasses.dataclass(frozen=True)
class Known:
    """What a city has taught the service by a cut-off: outcomes, police reports, the reported rings' other cases."""

    labels: list[dict[str, Any]]
    from_labels: FieldLabels
    reports: FieldReports
    ring: list[dict[str, Any]]
    victims: set[str]
    y: np.ndarray  # per city row: 1 for a known case's evidence, else 0


def known_by(
    data: Dataset,
    events: Sequence[Event],
    cases: list[dict[str, Any]],
    task_rows: Sequence[int],
    victims: dict[str, int | None],
    cutoff_ms: int,
    config: TrialConfig,
    episode_ms: int,
) -> Known:
    """The labels known at ``cutoff_ms`` of a city served with ``task_rows`` as its tasks (outcomes after their
    delay, reports after theirs); ``cases`` is read only as the police and the responders would learn it."""
    labels, _ = labels_known_by(
        trial_labels(data, task_rows, victims, cutoff_ms, int(config.outcome_delay_h * HOUR_MS), episode_ms),
        cutoff_ms,
    )
    from_labels = cases_from_labels(labels, (e for e in events if e.ts_ms < cutoff_ms))
    reports = cases_from_reports(cases, cutoff_ms, int(config.report_delay_days * DAY_MS))
    ring = (
        cases_from_reported_numbers(reports.cases, (e for e in events if e.available_ms < cutoff_ms))
        if config.ring_cases
        else []
    )
    known_cases = from_labels.cases + reports.cases + ring
    return Known(
        labels,
        from_labels,
        reports,
        ring,
        {c["victim"] for c in known_cases},
        case_labels(data.rows, known_cases),
    )


def with_police_feed(events: Sequence[Event], cases: list[dict[str, Any]], config: TrialConfig) -> list[Event]:
    """The city's stream with its police reports in it, as the reports topic would bring them (each case with a
    loss, ``report_delay_days`` after it): when ``live_reports`` is on and the stream carries none of its own."""
    if not config.live_reports:
        return list(events)
    return with_reports(events, cases, int(config.report_delay_days * DAY_MS))


def serve_city(
    data: Dataset,
    shipped: Scorer,
    shipped_scores: np.ndarray,
    residents: int,
    victims: Container[str],
    settings: Settings,
    config: TrialConfig,
    follow: FollowConfig,
    swaps: Sequence[ModelSwap] = (),
) -> FollowResult:
    """The city's rows decided as the service decides them: the shipped model from the first day, ``swaps`` taking
    over, the thresholds following outcomes simulated from ``victims`` (a task for anyone else comes back false)."""
    return follow_offline(
        data.subscribers,
        data.avail_ms,
        shipped_scores,
        shipped.thresholds,
        level_budgets(settings.budget_tasks_per_10k_per_day),
        residents,
        lambda sub: sub not in victims,
        task_level=TASK_LEVEL,
        kinds=data.kinds,
        episode_ms=settings.episode_ms,
        outcome_delay_ms=int(config.outcome_delay_h * HOUR_MS),
        config=follow,
        hold_base=shipped.hold_threshold,
        hold_budget=settings.budget_holds_per_10k_per_day,
        transfers=data.transfers,
        swaps=swaps,
    )


def run_field_trial(
    events: list[Event],
    cases: list[dict[str, Any]],
    residents: int,
    shipped: ModelVersion,
    simulated: SimulatedPart,
    registry: ModelRegistry,
    settings: Settings,
    config: TrialConfig | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Serve the city week by week, retraining and promoting as the module says; the per-week result."""
    config = config or TrialConfig()
    follow = FollowConfig.from_settings(settings)
    events = with_police_feed(events, cases, config)
    data = build_dataset(events, [])  # no labels: the trial learns the city's truth only as it would be known
    truth = case_labels(data.rows, cases)  # for judging alone
    if not len(data.rows):
        raise ValueError("the city has no events")
    victims = {c["victim"]: c.get("first_loss_ms") for c in cases}
    subs, avail = data.subscribers, data.avail_ms
    start, end = int(avail.min()), int(avail.max())
    n_weeks = max(math.ceil((end + 1 - start) / config.week_ms), 1)
    if n_weeks > 1 and end + 1 - (start + (n_weeks - 1) * config.week_ms) < DAY_MS // 2:
        n_weeks -= 1  # a stub of less than half a day joins the last week rather than be judged alone
    in_slice = _slice_mask(subs, config.slice_folds)
    # The slice's people are no training rows: the city trained on has that many fewer residents.
    slice_share = 1 / config.slice_folds if config.slice_folds > 1 else 0.0
    report_delay = int(config.report_delay_days * DAY_MS)
    scorers: dict[str, Scorer] = {shipped.version: Scorer(shipped, compiled=False)}
    scores: dict[str, np.ndarray] = {shipped.version: scorers[shipped.version].score(data.X)}
    live = shipped.version
    swaps: list[ModelSwap] = []
    weeks: list[dict[str, Any]] = []

    def serve(with_swaps: Sequence[ModelSwap]) -> FollowResult:
        first, first_scores = scorers[shipped.version], scores[shipped.version]
        return serve_city(data, first, first_scores, residents, victims, settings, config, follow, with_swaps)

    served_by: list[str] = []
    for week in range(n_weeks):
        served_by.append(live)
        cutoff = start + (week + 1) * config.week_ms
        if week == n_weeks - 1:
            break
        followed = serve(swaps)
        known = known_by(data, events, cases, followed.task_rows, victims, cutoff, config, settings.episode_ms)
        labels, from_labels, reports, ring = known.labels, known.from_labels, known.reports, known.ring
        known_victims, y_known = known.victims, known.y
        before = avail < cutoff
        settled = avail < cutoff - report_delay
        is_known = np.asarray([s in known_victims for s in subs], dtype=bool)
        train_rows = before & ~in_slice & (settled | is_known)
        # A big city's rows are thinned by subscriber (every known victim kept) to at most max_field_rows: a
        # smaller city of the same kind, its residents scaled alike so that the thresholds count per resident.
        share = min(1.0, config.max_field_rows / max(int(train_rows.sum()), 1))
        if share < 1.0:
            train_rows &= is_known | (_unit_hash(subs) < share)
        field = dataclasses.replace(data.subset(train_rows), y=y_known[train_rows])
        pooled = Dataset(
            simulated.data.rows + field.rows,
            np.concatenate([simulated.data.X, field.X]),
            np.concatenate([simulated.data.y, field.y]),
            np.concatenate([simulated.data.avail_ms, field.avail_ms]),
        )
        n_sim = len(simulated.data.rows)
        parts = np.concatenate([np.zeros(n_sim, dtype=np.int8), np.ones(len(field.rows), dtype=np.int8)])
        weights = np.concatenate([np.ones(n_sim), np.full(len(field.rows), config.field_weight)])
        sources = {
            "simulated": simulated.info,
            "field_labels": {**from_labels.summary(), "known_by_cutoff": len(labels)},
            "police_reports": {**reports.summary(), "reported_number_cases": len(ring)},
            "field_rows": len(field.rows),
            "field_positive_rows": int(field.y.sum()),
            "field_weight": config.field_weight,
            "field_subscriber_share": share,
            "cutoff_ms": cutoff,
        }
        train_config = TrainConfig(
            budget_tasks_per_10k_per_day=settings.budget_tasks_per_10k_per_day,
            budget_holds_per_10k_per_day=settings.budget_holds_per_10k_per_day,
            episode_ms=settings.episode_ms,
            n_models=config.n_models,
            threshold_folds=config.threshold_folds,
            stop_metric=config.stop_metric,
            resident_spans=(
                *simulated.spans,
                (max(round(residents * share * (1 - slice_share)), 1), start, cutoff),
            ),
            **({"num_boost_round": config.num_boost_round} if config.num_boost_round else {}),
        )
        say(
            f"week {week + 1}: retraining on {n_sim} simulated + {len(field.rows)} field rows "
            f"({len(labels)} outcomes, {len(reports.cases)} police reports known)"
        )
        version = train_model(
            pooled,
            simulated.victims | known_victims,
            registry,
            train_config,
            {"source": "field trial", "sources": sources, "residents": residents, "residents_source": "field city"},
            weights,
            parts,
        )
        scorers[version.version] = Scorer(version, compiled=False)
        scores[version.version] = scorers[version.version].score(data.X)
        judged = before & in_slice & (settled | is_known)
        y_slice, live_slice, new_slice = y_known[judged], scores[live][judged], scores[version.version][judged]
        ap_live = _average_precision(y_slice, live_slice)
        ap_new = _average_precision(y_slice, new_slice)
        won = (
            _share_won(y_slice, new_slice, live_slice, np.asarray(subs)[judged], config.promote_draws)
            if ap_new is not None and ap_live is not None
            else 1.0
        )
        promoted = (
            ap_new is not None
            and (ap_live is None or ap_new > ap_live + config.promote_margin)
            and won >= config.promote_confidence
        )
        retrain = {
            "candidate": version.version,
            "slice_rows": int(judged.sum()),
            "slice_positive_rows": int(y_known[judged].sum()),
            "slice_pr_auc_live": ap_live,
            "slice_pr_auc_candidate": ap_new,
            "promoted": promoted,
            "slice_resamples_won": round(won, 3),
            "outcomes_known": len(labels),
            "outcome_positives": from_labels.positives,
            "outcome_false_alarms": from_labels.negatives,
            "reports_known": len(reports.cases),
            "reported_number_cases": len(ring),
            "field_rows": len(field.rows),
            "field_positive_rows": int(field.y.sum()),
        }
        weeks.append({"retrain_after": retrain})
        say(
            f"week {week + 1}: candidate {version.version} slice PR-AUC {ap_new} against live {ap_live} "
            f"(better in {won:.0%} of resamples): " + ("promoted" if promoted else "kept the live model")
        )
        if promoted:
            registry.promote(version.version)
            new = scorers[version.version]
            start_at = tuple(new.thresholds)
            if config.handover == "match":
                recent = in_slice & before & (avail >= cutoff - config.week_ms)
                if recent.any():  # an empty slice week: its own thresholds
                    live_at = _in_force(followed, cutoff)
                    start_at = match_alert_rate(scores[live][recent], live_at, scores[version.version][recent])
            retrain["handover_thresholds"] = list(start_at)
            swaps.append(
                ModelSwap(
                    cutoff,
                    start_at,
                    new.hold_threshold,
                    scores[version.version],
                    config.handover == "carry",
                    learnt_until_ms=cutoff,  # it trained on the city's rows up to the cut-off
                )
            )
            live = version.version

    followed = serve(swaps)
    served = scores[shipped.version].copy()
    for swap in swaps:
        served[avail >= swap.at_ms] = swap.scores[avail >= swap.at_ms]
    # The same city served by the shipped model alone, thresholds following as ever: what the retrains added.
    shipped_only = serve(())
    contacts = fraud_contacts(events, cases)
    table = []
    for week in range(n_weeks):
        lo = start + week * config.week_ms
        hi = end + 1 if week == n_weeks - 1 else lo + config.week_ms
        keep, judged_cases = week_rows(data, cases, lo, hi)

        def judge(
            run: Any, scored: np.ndarray, by: str, keep: np.ndarray = keep, cases_of: list[Any] = judged_cases
        ) -> dict[str, Any]:
            return judge_week(
                data.subset(keep),
                truth[keep],
                cases_of,
                scorers[by],
                scored[keep],
                run,
                keep,
                contacts,
                settings,
                residents,
            )

        row = {"week": week + 1, "from_ms": lo, "to_ms": hi, "model": served_by[week]}
        row.update(judge(followed, served, served_by[week]))
        row["shipped_only"] = judge(shipped_only, scores[shipped.version], shipped.version)
        if week < len(weeks):
            row["retrain_after"] = weeks[week]["retrain_after"]
        table.append(row)
    return {
        "schema": FIELD_TRIAL_SCHEMA,
        "residents": residents,
        "weeks": table,
        "shipped_model": shipped.version,
        "final_model": live,
        "config": dataclasses.asdict(config),
        "thresholds_last": list(followed.history[-1][1]) if followed.history else None,
    }


def _in_force(run: FollowResult, at_ms: int) -> tuple[float, ...]:
    """The thresholds a follower's run decided with at ``at_ms``."""
    current = run.history[0][1]
    for since, thresholds in run.history:
        if since > at_ms:
            break
        current = thresholds
    return tuple(current)


_FIGURES = (
    "pr_auc",
    "tasks",
    "false_tasks",
    "false_tasks_per_10k_per_day",
    "cases",
    "cases_with_loss",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "share_flagged_before_loss",
    "share_flagged_by_loss",
    "median_lead_time_s",
    "holds",
    "false_holds_per_10k_per_day",
    "cases_held_at_loss",
    "cases_stopped",
)


def week_rows(data: Dataset, cases: list[dict[str, Any]], lo: int, hi: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The rows a week ``[lo, hi)`` is judged on (people first contacted before it left out) and its cases."""
    earlier = {c["victim"] for c in cases if c["first_contact_ms"] < lo}
    keep = (data.avail_ms >= lo) & (data.avail_ms < hi)
    keep &= np.asarray([s not in earlier for s in data.subscribers], dtype=bool)
    return keep, [c for c in cases if lo <= c["first_contact_ms"] < hi]


def judge_week(
    rows: Dataset,
    truth: np.ndarray,
    cases: list[dict[str, Any]],
    scorer: Scorer,
    scores: np.ndarray,
    run: Any,
    keep: np.ndarray,
    contacts: dict[str, list[int]],
    settings: Settings,
    residents: int,
) -> dict[str, Any]:
    """``evaluate``'s figures for one week's rows as one run of the follower decided them."""
    result = evaluate_dataset(
        dataclasses.replace(rows, y=truth),
        cases,
        scorer,
        settings.episode_ms,
        scores=scores,
        contacts=contacts,
        residents=residents,
        levels=run.levels[keep],
        held=None if run.held is None else run.held[keep],
    )
    return _week_figures(result)


def _week_figures(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result.get(key) for key in _FIGURES}


def simulated_part(worlds: Sequence[Any]) -> SimulatedPart:
    """The training worlds simulated and featurised once, for every retrain of a trial."""
    from sandbox.training import world_dataset
    from sandbox.worlds import describe_world

    done = [world_dataset(world) for world in worlds]
    rows = [row for one in done for row in one.data.rows]
    data = Dataset(
        rows,
        np.concatenate([one.data.X for one in done]),
        np.concatenate([one.data.y for one in done]),
        np.concatenate([one.data.avail_ms for one in done]),
    )
    info = {"worlds": [describe_world(w) for w in worlds], "cases": sum(len(one.cases) for one in done)}
    return SimulatedPart(data, {c["victim"] for one in done for c in one.cases}, tuple(o.residents for o in done), info)


def field_trial_files(
    events_path: Path,
    cases_path: Path,
    settings: Settings,
    config: TrialConfig,
    model: str | None = None,
    worlds: Sequence[Any] | None = None,
    residents: int | None = None,
    registry_dir: Path | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the trial on a city's files with the live (or named) model; keep the result for the model card.

    The trial's own registry (``registry_dir``, default ``DATA_DIR/artifacts/field-trial/models``) starts with
    a copy of the shipped model; the service's registry is never touched. ``worlds``: the simulated training
    worlds (default: the ones the shipped model's metadata records).
    """
    import shutil

    import orjson

    from core.errors import TrainingDataError
    from models import load_events, read_jsonl
    from sandbox.simulate import read_city_meta
    from sandbox.training import resolve_model, worlds_of

    shipped = resolve_model(settings, model)
    worlds = worlds if worlds is not None else worlds_of(shipped)
    if not worlds:
        raise TrainingDataError(
            f"model {shipped.version} records no training worlds; give --worlds N to sample the simulated part"
        )
    meta = read_city_meta(events_path)
    people = residents or (int(meta["residents"]) if meta else None) or settings.residents
    if not people:
        raise TrainingDataError("the city's residents are unknown: give --residents, city.json or FW_RESIDENTS")
    root = registry_dir or settings.data_dir / "artifacts" / "field-trial" / "models"
    if root.exists():
        shutil.rmtree(root)  # one trial per folder: its versions and promotions are this trial's alone
    root.mkdir(parents=True)
    shutil.copytree(shipped.path, root / shipped.version)
    registry = ModelRegistry(root)
    registry.promote(shipped.version)
    say(f"simulating and featurising {len(worlds)} training worlds")
    simulated = simulated_part(worlds)
    loaded = load_events(events_path)
    result = run_field_trial(
        loaded.events,
        read_jsonl(cases_path),
        people,
        registry.get(shipped.version),
        simulated,
        registry,
        settings,
        config,
        say,
    )
    result["city"] = {
        "source": f"`{events_path}` with cases `{cases_path}`",
        "rejected_lines": loaded.rejected,
        "meta": meta,
    }
    result["registry"] = str(root)
    out = field_trial_path(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return result


def last_field_trial(settings: Settings) -> dict[str, Any] | None:
    """The last ``fraudwatch field-trial`` result kept under the data folder, or None."""
    import orjson

    path = field_trial_path(settings)
    if not path.exists():
        return None
    result = orjson.loads(path.read_bytes())
    return result if isinstance(result, dict) and result.get("schema") == FIELD_TRIAL_SCHEMA else None
