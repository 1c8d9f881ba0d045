"""Transfers weigh more than calls in the boosting (TrainConfig.transfer_weight), and the weights reach the fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from features import FEATURE_NAMES, FeatureRow
from models import TrainConfig
from models import train as train_module
from models.dataset import Dataset
from models.train import row_weights

pytestmark = pytest.mark.unit


def _data(is_call: list[bool]) -> Dataset:
    n = len(is_call)
    rows = [
        FeatureRow(f"e{i}", f"+8613000000{i:03d}", 1000 * i, call, (0.0,) * len(FEATURE_NAMES), None, None)
        for i, call in enumerate(is_call)
    ]
    X = np.zeros((n, len(FEATURE_NAMES)))
    y = np.asarray([i % 4 == 0 for i in range(n)], dtype=np.int8)
    return Dataset(rows, X, y, np.arange(n, dtype=np.int64) * 60_000)


def test_transfers_get_the_configured_weight() -> None:
    data = _data([True, False, True, False])
    w = row_weights(data, TrainConfig(transfer_weight=5.0))
    assert w is not None and w.tolist() == [1.0, 5.0, 1.0, 5.0]


def test_given_weights_multiply_and_a_weight_of_one_changes_nothing() -> None:
    data = _data([True, False, False])
    given = np.asarray([2.0, 3.0, 0.5])
    w = row_weights(data, TrainConfig(transfer_weight=4.0), given)
    assert w is not None and w.tolist() == [2.0, 12.0, 2.0]
    assert row_weights(data, TrainConfig(transfer_weight=1.0), given) is given
    assert row_weights(data, TrainConfig(transfer_weight=1.0)) is None


def test_train_model_fits_with_the_transfer_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    class Stop(Exception):
        pass

    def fake_fit(data: Dataset, y: Any, train: Any, stop: Any, calib: Any, params: Any, config: Any, w: Any) -> Any:
        seen.append(w)
        raise Stop

    monkeypatch.setattr(train_module, "_fit", fake_fit)
    data = _data([i % 3 != 0 for i in range(400)])
    with pytest.raises(Stop):
        train_module.train_model(data, set(), None, TrainConfig(transfer_weight=7.0), {})  # type: ignore[arg-type]
    (w,) = seen
    assert w is not None
    assert set(w[data.transfers].tolist()) == {7.0} and set(w[~data.transfers].tolist()) == {1.0}
