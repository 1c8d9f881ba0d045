"""A folder of versioned models with metadata, and a pointer to the promoted one.

Layout: ``<root>/<version>/model.txt`` (LightGBM text), ``<root>/<version>/meta.json``, and
``<root>/PROMOTED`` holding the live version; ``<root>/HISTORY`` lists past promotions for rollback.
Writes go through a temporary file and ``os.replace`` so a reader never sees half a model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from core.errors import FeatureMismatch, NoModel, UnknownVersion
from features import FEATURES_HASH, describe_change

__all__ = ["RETRAIN_COMMAND", "ModelRegistry", "ModelVersion", "check_features"]

RETRAIN_COMMAND = "fraudwatch train EVENTS CASES"


@dataclass(frozen=True)
class ModelVersion:
    """One registered model."""

    version: str
    path: Path
    meta: dict[str, Any]


def check_features(model: ModelVersion) -> None:
    """Refuse (``FeatureMismatch``, one line) a model trained on other features or feature parameters."""
    meta = model.meta
    trained = meta.get("features_hash")
    if trained == FEATURES_HASH:
        return
    what = describe_change(meta.get("feature_names"), meta.get("feature_parameters"))
    if not what:
        what = "what changed is not recorded (the model predates stored feature parameters)"
    raise FeatureMismatch(
        f"model {model.version} was trained on features {trained}, serving computes {FEATURES_HASH}: {what}; "
        f"retrain with `{RETRAIN_COMMAND}` (or promote a model trained on the current features)"
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ModelRegistry:
    """Versions on disk; the worker polls :meth:`promoted_version` to hot-swap models."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[ModelVersion]:
        """All registered versions, oldest first."""
        if not self.root.exists():
            return []
        out = []
        for meta_path in sorted(self.root.glob("*/meta.json")):
            out.append(ModelVersion(meta_path.parent.name, meta_path.parent, orjson.loads(meta_path.read_bytes())))
        return out

    def get(self, version: str) -> ModelVersion:
        """One version by name."""
        path = self.root / version
        if not (path / "meta.json").exists():
            raise UnknownVersion(version)
        return ModelVersion(version, path, orjson.loads((path / "meta.json").read_bytes()))

    def register(self, model_text: str, meta: dict[str, Any]) -> ModelVersion:
        """Store a new version (not promoted); its name sorts by creation time."""
        self.root.mkdir(parents=True, exist_ok=True)
        version = time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + f"-{len(self.versions()) + 1:03d}"
        path = self.root / version
        path.mkdir()
        (path / "model.txt").write_text(model_text)
        meta = {**meta, "version": version, "created_s": time.time()}
        _atomic_write(path / "meta.json", orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        return ModelVersion(version, path, meta)

    def promoted_version(self) -> str | None:
        """The live version's name, or None."""
        pointer = self.root / "PROMOTED"
        return pointer.read_text().strip() or None if pointer.exists() else None

    def promote(self, version: str) -> None:
        """Make ``version`` the live model; running workers pick it up at their next poll."""
        self.get(version)
        previous = self.promoted_version()
        if previous == version:
            return
        if previous:
            with (self.root / "HISTORY").open("a") as fh:
                fh.write(previous + "\n")
        _atomic_write(self.root / "PROMOTED", version.encode())

    def shadow_version(self) -> str | None:
        """The version scored beside the live one (decisions logged, never acted on), or None."""
        pointer = self.root / "SHADOW"
        return pointer.read_text().strip() or None if pointer.exists() else None

    def set_shadow(self, version: str | None) -> None:
        """Score ``version`` in shadow beside the live model; None stops shadow scoring."""
        if version is None:
            (self.root / "SHADOW").unlink(missing_ok=True)
            return
        self.get(version)
        _atomic_write(self.root / "SHADOW", version.encode())

    def rollback(self) -> str:
        """Return to the previously promoted version; its name."""
        history_path = self.root / "HISTORY"
        history = history_path.read_text().split() if history_path.exists() else []
        if not history:
            raise NoModel("no earlier promoted version to roll back to")
        previous = history.pop()
        _atomic_write(history_path, ("\n".join(history) + "\n" if history else "").encode())
        _atomic_write(self.root / "PROMOTED", previous.encode())
        return previous

    def live(self) -> ModelVersion:
        """The promoted version, else the newest one."""
        promoted = self.promoted_version()
        if promoted:
            return self.get(promoted)
        versions = self.versions()
        if not versions:
            raise NoModel(f"no model in {self.root}")
        return versions[-1]
