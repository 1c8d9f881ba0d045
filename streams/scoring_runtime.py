"""The worker's live model: loaded from the registry, swapped in place when another is promoted."""

from __future__ import annotations

import logging

from core.errors import ModelError
from models import ModelRegistry, ModelVersion, Scorer
from streams.metrics import MODEL_INFO, MODEL_LOADED

__all__ = ["LiveModel", "ShadowModel"]

log = logging.getLogger(__name__)


class LiveModel:
    """Holds the current :class:`Scorer`; :meth:`refresh` hot-swaps it without a restart."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.scorer: Scorer | None = None
        # The one swapped out last: alerts it scored may still wait to be explained by it.
        self.previous: Scorer | None = None

    def _wanted(self) -> ModelVersion | None:
        try:
            return self.registry.live()
        except ModelError as exc:
            log.warning("no model to load", extra={"error": str(exc)})
            return None

    def _announce(self, scorer: Scorer) -> None:
        MODEL_INFO.info({"version": scorer.version, "features_hash": scorer.meta["features_hash"]})
        MODEL_LOADED.set(1)
        log.info("model loaded", extra={"version": scorer.version})
        if scorer.hold_threshold is None:
            log.warning(
                "model has no hold threshold (trained before holds): it holds no payments",
                extra={"version": scorer.version},
            )

    def _on_nothing_wanted(self) -> bool:
        # A live model is kept when the registry is momentarily unreadable: scoring must not stop.
        return False

    def refresh(self) -> bool:
        """Load the wanted version if it differs from the loaded one; True if swapped."""
        wanted = self._wanted()
        if wanted is None:
            return self._on_nothing_wanted()
        if self.scorer is not None and self.scorer.version == wanted.version:
            return False
        try:
            scorer = Scorer(wanted)
        except ModelError as exc:
            log.error("model rejected", extra={"version": wanted.version, "error": str(exc)})
            return False
        self.previous, self.scorer = self.scorer, scorer
        self._announce(scorer)
        return True

    def scorer_of(self, version: str) -> Scorer | None:
        """The loaded scorer of ``version`` (the live one or the one it replaced), else the live one."""
        for scorer in (self.scorer, self.previous):
            if scorer is not None and scorer.version == version:
                return scorer
        return self.scorer


class ShadowModel(LiveModel):
    """The registry's shadow version: scored beside the live model, its decisions only logged."""

    def _wanted(self) -> ModelVersion | None:
        version = self.registry.shadow_version()
        return self.registry.get(version) if version else None

    def _announce(self, scorer: Scorer) -> None:
        log.info("shadow model loaded", extra={"version": scorer.version})

    def _on_nothing_wanted(self) -> bool:
        stopped = self.scorer is not None
        self.scorer = None
        return stopped
