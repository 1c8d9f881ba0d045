"""LLVM-compiled models (lleaves): same predictions as LightGBM, several times faster per row.

Compiling takes tens of seconds, so it happens once per model version and the shared object is
cached in the version's folder, named for the machine architecture it was built for.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.registry import ModelVersion

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]


def compiled_path(version: ModelVersion) -> Path:
    """Where the compiled model of a version is cached."""
    return version.path / f"model-{platform.machine()}.so"


def compile_version(version: ModelVersion) -> Path:
    """Compile a version's model (if not cached yet); the path of the shared object."""
    import lleaves

    path = compiled_path(version)
    model = lleaves.Model(model_file=str(version.path / "model.txt"))
    model.compile(cache=str(path))
    return path


def load_compiled(version: ModelVersion) -> Predict | None:
    """A single-threaded predict function from the cached compiled model, or None if there is none."""
    path = compiled_path(version)
    if not path.exists():
        return None
    try:
        import lleaves

        model = lleaves.Model(model_file=str(version.path / "model.txt"))
        model.compile(cache=str(path))
    except Exception as exc:  # a stale or foreign .so must not stop scoring: LightGBM still works
        log.warning("compiled model unusable, using LightGBM", extra={"version": version.version, "error": str(exc)})
        return None

    def predict(X: np.ndarray) -> np.ndarray:
        # n_jobs=1: lleaves otherwise starts a thread pool per call, which costs more than one row.
        return np.asarray(model.predict(X, n_jobs=1), dtype=np.float64)

    return predict
