"""What makes a training label: a resolved task's outcome (the one table the label writer and the trainer share),
and who counts as a case (``../shared/CONTRACT.md``, "Who counts as a case")."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CASE_MIN_ANSWERED_S", "OUTCOME_TARGET"]

# A subscriber who answered a fraud number's call lasting this long or more is a case, whether or not money moved.
CASE_MIN_ANSWERED_S = 120

# The person was being defrauded (1), was not (0), or nobody knows (None: left out of training).
OUTCOME_TARGET: Mapping[str, int | None] = {"dissuaded": 1, "money_lost": 1, "false_alarm": 0, "unreachable": None}
