"""The worker's live model: loaded from the registry, swapped in place when another is promoted."""

from __future__ import annotations

import logging

from models.errors import ModelError
from models.registry import ModelRegistry
from models.scoring import Scorer
from streams.metrics import MODEL_INFO, MODEL_LOADED

log = logging.getLogger(__name__)


class LiveModel:
    """Holds the current :class:`Scorer`; :meth:`refresh` hot-swaps it without a restart."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.scorer: Scorer | None = None

    def refresh(self) -> bool:
        """Load the promoted (else newest) version if it differs from the loaded one; True if swapped."""
        try:
            wanted = self.registry.live()
        except ModelError as exc:
            log.warning("no model to load", extra={"error": str(exc)})
            return False
        if self.scorer is not None and self.scorer.version == wanted.version:
            return False
        try:
            scorer = Scorer(wanted)
        except ModelError as exc:
            log.error("model rejected", extra={"version": wanted.version, "error": str(exc)})
            return False
        self.scorer = scorer
        MODEL_INFO.info({"version": scorer.version, "features_hash": scorer.meta["features_hash"]})
        MODEL_LOADED.set(1)
        log.info("model loaded", extra={"version": scorer.version})
        return True
