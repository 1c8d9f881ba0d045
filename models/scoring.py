"""Scoring: a loaded model version turns feature rows into calibrated risk and a risk level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import lightgbm as lgb
import numpy as np

from features import FEATURE_NAMES
from models.compiled import load_compiled
from models.registry import ModelRegistry, ModelVersion, check_features

_EPS = 1e-12


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(q / (1 - q)))


def sigmoid_calibrate(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Platt scaling on the log-odds of the raw model probability."""
    return np.asarray(1.0 / (1.0 + np.exp(-(slope * logit(raw) + intercept))))


Rows: TypeAlias = Sequence[Sequence[float]] | np.ndarray


class Scorer:
    """One model version ready to score: booster, probability calibration and per-level thresholds."""

    def __init__(self, model: ModelVersion, compiled: bool = True) -> None:
        check_features(model)  # before anything is fed to it: raises FeatureMismatch
        meta = model.meta
        self.version = model.version
        self.meta = meta
        self.booster = lgb.Booster(model_file=str(model.path / "model.txt"))
        calibration = meta["calibration"]
        self._sigmoid: tuple[float, float] | None = None
        if calibration.get("method") == "sigmoid":
            self._sigmoid = (float(calibration["slope"]), float(calibration["intercept"]))
        else:  # isotonic, as stored by older versions
            self._calib_x = np.asarray(calibration["x"], dtype=np.float64)
            self._calib_y = np.asarray(calibration["y"], dtype=np.float64)
        # The compiled model (when one was built for this version) scores identically and faster.
        self._compiled = load_compiled(model) if compiled else None
        # thresholds[i] is the lowest calibrated score of level i + 1
        self.thresholds: tuple[float, ...] = tuple(meta["thresholds"])
        # The lowest calibrated score of a transfer that is held; None (a model trained before holds): no holds.
        hold = meta.get("hold_threshold")
        self.hold_threshold: float | None = float(hold) if hold is not None else None

    def _matrix(self, rows: Rows) -> np.ndarray:
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))

    def raw(self, rows: Rows) -> np.ndarray:
        """Uncalibrated model probabilities; one thread, so the event loop keeps the other core."""
        if self._compiled is not None:
            return self._compiled(self._matrix(rows))
        return np.asarray(self.booster.predict(self._matrix(rows), num_threads=1), dtype=np.float64)

    @property
    def is_compiled(self) -> bool:
        """True when predictions come from the compiled model."""
        return self._compiled is not None

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Map raw probabilities through the calibration fitted at training time."""
        if self._sigmoid is not None:
            return sigmoid_calibrate(raw, *self._sigmoid)
        return np.interp(raw, self._calib_x, self._calib_y)

    def score(self, rows: Rows) -> np.ndarray:
        """Calibrated fraud probabilities of a batch of feature rows."""
        if len(rows) == 0:
            return np.zeros(0)
        return self.calibrate(self.raw(rows))

    def level(self, score: float) -> int:
        """Risk level 0-3 of a calibrated score."""
        level = 0
        for i, threshold in enumerate(self.thresholds):
            if score >= threshold:
                level = i + 1
        return level

    def contributions(self, row: Sequence[float]) -> np.ndarray:
        """Per-feature SHAP contributions (LightGBM ``pred_contrib``) of one row, bias dropped."""
        return self.contributions_many([row])[0]

    def contributions_many(self, rows: Rows) -> np.ndarray:
        """:meth:`contributions` of several rows in one call (one row each; LightGBM's per-call cost once)."""
        contrib = self.booster.predict(self._matrix(rows), pred_contrib=True, num_threads=1)
        return np.asarray(contrib, dtype=np.float64)[:, :-1]


def load_live(registry: ModelRegistry) -> Scorer:
    """The promoted (else newest) model of a registry."""
    return Scorer(registry.live())
