"""A shadow model's scores are kept beside the live levels of the same rows, for its handover on promotion."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.settings import Settings
from features.vector import FeatureRow
from streams.agents import Agents

pytestmark = pytest.mark.unit


class _Nowhere:
    async def send_many(self, records: list[tuple[bytes, bytes]]) -> list[Any]:
        return []


def test_shadow_scores_are_kept_with_the_live_level_of_each_row() -> None:
    nowhere: Any = _Nowhere()
    agents = Agents(
        settings=Settings(budget_follow=True, residents=1000),
        live_model=SimpleNamespace(scorer=None),
        shadow_model=SimpleNamespace(scorer=None),
        caller_states=SimpleNamespace(),
        subscriber_states=SimpleNamespace(),
        to_callers=nowhere,
        to_subscribers=nowhere,
        to_explain=nowhere,
        send_dead_letter=None,
        feature_topic=None,
    )
    # The shadow's floor is 2 log-odds below its lowest threshold (0.5): about 0.12.
    shadow = SimpleNamespace(
        version="v2",
        thresholds=(0.5, 0.7, 0.9),
        hold_threshold=None,
        score=lambda rows: np.asarray([0.95, 0.01, 0.01, 0.3]),
        level=lambda risk: int(risk >= 0.5),
    )
    rows = [FeatureRow(f"e{i}", f"+8613{i:09d}", 1000 * i, False, (), None, None, "call.v1") for i in range(4)]
    agents._score_shadow(shadow, rows, [0, 2, 0, 0])
    kept = {event: (score, level) for _, event, _, score, level in agents.budget._shadow_buffer}
    # e0 scores high in shadow; e1 alerted live (its low shadow score counts); e2 neither; e3 is above the floor.
    assert kept == {"e0": (0.95, 0), "e1": (0.01, 2), "e3": (0.3, 0)}
