"""One exception root: every error class the project defines sits under FraudwatchError, in core/errors.py."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from core.errors import FraudwatchError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "features", "models", "alerting", "streams", "sandbox", "fraudwatch")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_project_exception_is_under_the_one_root_and_lives_in_core_errors() -> None:
    stray = []
    for name in _modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            defined_here = inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name
            if defined_here and (not issubclass(value, FraudwatchError) or name != "core.errors"):
                stray.append(f"{name}.{attr}")
    assert not stray, f"define project errors in core/errors.py under FraudwatchError: {stray}"


def test_the_tree_in_the_docstring_names_every_error() -> None:
    import core.errors as errors

    doc = errors.__doc__ or ""
    missing = [name for name in errors.__all__ if name not in doc]
    assert not missing, f"core/errors.py's docstring does not draw {missing}"
