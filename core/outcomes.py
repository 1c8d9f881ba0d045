"""What a resolved task's outcome means for training: the one table the label writer and the trainer share."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["OUTCOME_TARGET"]

# The person was being defrauded (1), was not (0), or nobody knows (None: left out of training).
OUTCOME_TARGET: Mapping[str, int | None] = {"dissuaded": 1, "money_lost": 1, "false_alarm": 0, "unreachable": None}
