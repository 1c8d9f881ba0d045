# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # fraudwatch walkthrough: simulate, train, evaluate
#
# This notebook runs the model side of fraudwatch end to end on small simulated cities, with the same code the
# service uses (no notebook-only re-implementations):
#
# 1. simulate a **training city** and a separate **test city** (another seed, the days right after training);
# 2. turn events into feature rows with the serving feature engine (`models.dataset.build_dataset`);
# 3. train, calibrate and pick alert thresholds (`models.train.train_model`) into a throw-away registry;
# 4. evaluate the model on the test city (`models.evaluate.evaluate`), the JSON the `evaluate` command prints;
# 5. look at recall per fraud scenario, the precision-recall curve and how early cases are flagged.
#
# It is sized to run in well under a minute on two cores. The cities are tiny and the victim rate is far above
# reality (so that a few thousand subscribers yield enough cases), so read the numbers as a demonstration of
# the method, not as the model's real-world quality.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve

from core.decode import decode_obj
from models.card import write_model_card
from models.dataset import build_dataset
from models.evaluate import TASK_LEVEL, evaluate
from models.registry import ModelRegistry
from models.scoring import Scorer
from models.train import TrainConfig, train_model
from sandbox.simulate import CityConfig, simulate
from sandbox.training import holdout_city

# %% [markdown]
# ## 1. Two simulated cities
#
# `CityConfig` fixes a city's size, seed and victim rate; `simulate` is deterministic for a given config. Its
# output is contract JSON: `call.v1` and `transfer.v1` events sorted by time, and `case.v1` ground truth
# (the scenario, the victim, the fraud numbers, first contact, first loss and the ids of the case's events).
#
# The test city comes from `holdout_city`: same size and rates, a different seed (other people, other fraud
# rings) and the two days that follow the training window, so nothing of the test city was seen in training.
# Every event goes through the stream's own validator (`decode_obj`) before it reaches the features.

# %%
TRAIN_CITY = CityConfig(subscribers=2000, days=4.0, seed=21, victims_per_10k_per_day=60.0)
TEST_CITY = holdout_city(TRAIN_CITY)

train_city = simulate(TRAIN_CITY)
test_city = simulate(TEST_CITY)
train_events = [decode_obj(e) for e in train_city.events]
test_events = [decode_obj(e) for e in test_city.events]
for name, config, city in (("train", TRAIN_CITY, train_city), ("test", TEST_CITY, test_city)):
    print(
        f"{name}: seed {config.seed}, {config.subscribers} subscribers x {config.days:g} days -> "
        f"{len(city.events):,} events, {len(city.cases)} cases"
    )

# %% [markdown]
# ## 2. Feature rows
#
# `build_dataset` replays the events through `features.pipeline.FeatureEngine`, the code the stream workers run:
# exact sliding windows (10 min, 1 h, 24 h, 7 d) per subscriber and per calling number. Each event becomes one
# row, available when the event is known (a call when it ends, a transfer when it is initiated). A row is
# labelled positive when a case lists its event, so the labels are about *events*; the business figures later
# are about *cases*.

# %%
train_data = build_dataset(train_events, train_city.cases)
print(f"feature matrix {train_data.X.shape}, {int(train_data.y.sum())} positive rows ({train_data.y.mean():.3%})")

# %% [markdown]
# ## 3. Train, calibrate, pick thresholds
#
# `train_model` splits the rows **by time** (first 60 % to fit, the next 15 % for early stopping, the last 25 %
# for calibration and thresholds), fits LightGBM, calibrates its output to probabilities and picks three alert
# levels (SMS, call-centre call, face-to-face task) so that the tasks for people who are *not* victims fit the
# dispatch budget (tasks per 10,000 subscribers per day). The model is registered, not promoted, in a temporary
# registry that is deleted at the end of the notebook.
#
# `TrainConfig`'s defaults average 3 boosters and pick the thresholds on 4 subscriber folds' out-of-fold scores
# (fewer budget overspends on a new city, about 3x the training time); this walkthrough fits one booster and
# picks the thresholds on the held-out days (`n_models=1, threshold_folds=0`) to stay quick.

# %%
workdir = tempfile.TemporaryDirectory(prefix="fw-walkthrough-")
registry = ModelRegistry(Path(workdir.name) / "models")
victims = {case["victim"] for case in train_city.cases}
version = train_model(
    train_data,
    victims,
    registry,
    TrainConfig(budget_tasks_per_10k_per_day=3.0, n_models=1, threshold_folds=0),
    {"source": "notebooks/walkthrough", "city": repr(TRAIN_CITY)},
)
print("registered", version.version)
print("calibration-slice metrics:", version.meta["metrics"])
print("thresholds per level:", [round(t, 4) for t in version.meta["thresholds"]])

# %% [markdown]
# ## 4. Evaluate on the test city
#
# `evaluate` runs the serving features and the scorer over the test events in time order and judges the
# task-level alerts against the cases. Its object is the contract's `evaluate` JSON: `pr_auc` is over events;
# `cases_flagged_before_loss` counts cases whose victim got a task-level alert strictly before the first
# fraudulent transfer (`cases_flagged_by_loss`: before or at it); `median_lead_time_s` is how long before the
# loss the first alert came; `false_tasks_per_10k_per_day` is the dispatch cost spent on people who were not
# being defrauded. `lead_times_s` (an optional extra) lists every lead time behind the median.
# `false_tasks_after_fraud_contact` (another extra) counts the false tasks for people who had picked up a call
# from a number some case names: a ring's lines call far more people than become cases, and a visit to someone
# who just talked with a ring is not the same waste as a visit to someone no ring has reached.

# %%
scorer = Scorer(version)
evaluation = evaluate(test_events, test_city.cases, scorer)
for key in (
    "events",
    "cases",
    "cases_with_loss",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "median_lead_time_s",
    "pr_auc",
    "alerts_per_10k_per_day",
    "false_tasks_per_10k_per_day",
    "false_tasks_after_fraud_contact",
    "tasks",
):
    print(f"{key:>28}: {evaluation[key]}")

# %% [markdown]
# ### Recall per scenario
#
# Scenarios differ a lot: a fake "refund" agent can get the money within the hour, an investment or romance
# script runs for days. A case only counts if it had a loss; `before` is the share flagged strictly before it.
# With a small test city a scenario has a handful of cases, so these shares are noisy.


# %%
def _share(value: float | None) -> str:
    return "   –" if value is None else f"{value:4.0%}"


print(f"{'scenario':<22}{'cases':>6}{'w/ loss':>9}{'before':>8}{'by loss':>9}{'median lead':>13}")
for scenario, figures in evaluation["per_scenario"].items():
    lead = figures["median_lead_time_s"]
    print(
        f"{scenario:<22}{figures['cases']:>6}{figures['cases_with_loss']:>9}"
        f"{_share(figures['share_flagged_before_loss']):>8}{_share(figures['share_flagged_by_loss']):>9}"
        f"{'–' if lead is None else f'{lead / 60:.0f} min':>13}"
    )

# %% [markdown]
# ### Why cases were missed before the loss
#
# `missed_before_loss` sorts the cases that no alert reached strictly before the loss by what the service had
# seen by then. Paid during the first scam call: that call's record only arrives after the money moved. Only
# unanswered or short calls: what a ring's sweep gives many people who are in no case. Scored below the
# threshold: a longer call from the ring had ended and the model ranked it low. Only the last is the
# model's to win back.

# %%
for reason, count in evaluation["missed_before_loss"].items():
    print(f"{reason:>32}: {count}")

# %% [markdown]
# ## 5. Precision-recall over events
#
# The curve ranks every test event by its calibrated score. The dotted line is the share of positive events,
# what a random ranking would get. The dots are the three alert levels: the task level sits at the high-precision
# end, because a face-to-face visit is the scarcest resource.

# %%
test_data = build_dataset(test_events, test_city.cases)
scores = scorer.score(test_data.X)
precision, recall, _ = precision_recall_curve(test_data.y, scores)
fig, ax = plt.subplots(figsize=(6, 4.5))
ax.step(recall, precision, where="post", label=f"model (PR-AUC {evaluation['pr_auc']:.3f})")
ax.axhline(test_data.y.mean(), color="grey", linestyle=":", label="no skill")
for level, threshold in enumerate(scorer.thresholds, start=1):
    flagged = scores >= threshold
    if flagged.any():
        ax.plot(
            [test_data.y[flagged].sum() / test_data.y.sum()],
            [test_data.y[flagged].mean()],
            "o",
            label=f"level {level}" + (" (task)" if level == TASK_LEVEL else ""),
        )
ax.set_xlabel("recall (events)")
ax.set_ylabel("precision (events)")
ax.set_title("Test city: precision-recall over events")
ax.legend(loc="lower left")
plt.show()

# %% [markdown]
# ## 6. How early are cases flagged?
#
# For each case flagged before its loss, the lead time is the time from the first task-level alert to the first
# fraudulent transfer: the window a responder has to reach the person. Minutes matter for refund and police
# scripts; investment and romance cases usually leave hours.

# %%
lead_minutes = np.asarray(evaluation["lead_times_s"], dtype=float) / 60
fig, ax = plt.subplots(figsize=(6, 3.5))
if len(lead_minutes):
    ax.hist(lead_minutes, bins=15, color="tab:green", edgecolor="white")
    median = float(np.median(lead_minutes))
    ax.axvline(median, color="black", linestyle="--", label=f"median {median:.0f} min")
    ax.legend()
else:
    ax.text(0.5, 0.5, "no case flagged before its loss", ha="center", transform=ax.transAxes)
ax.set_xlabel("lead time before the first loss (minutes)")
ax.set_ylabel("cases")
ax.set_title(f"Cases flagged before loss: {len(lead_minutes)}")
plt.show()

# %% [markdown]
# ## 7. The model card, and clean-up
#
# The same figures are what `models.card.write_model_card` puts into a model's `card.md` and PNG plots
# (`fraudwatch models card VERSION EVENTS CASES` does it from the command line; `train_from_files(...,
# card_city=holdout_city(city))` does it right after training). Here it writes into the temporary model folder,
# which is then deleted with the rest of the temporary registry.

# %%
card = write_model_card(version, evaluation, test_data, scores)
print(card.read_text().split("## Evaluation")[1].split("### Recall per scenario")[0].strip()[:1500])
print(sorted(p.name for p in card.parent.glob("*.png")))
workdir.cleanup()
