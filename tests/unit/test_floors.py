"""The floors of the house: every import (inside functions too) runs down, never up or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# Which project packages each package may import. alerting sits beside features and models: it is handed
# decisions, so it imports neither.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "features": {"core"},
    "models": {"core", "features"},
    "alerting": {"core"},
    "streams": {"core", "features", "models", "alerting"},
    "sandbox": {"core", "features", "models", "alerting", "streams"},
    "fraudwatch": {"core", "features", "models", "alerting", "streams", "sandbox"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in a file, wherever it stands (module level, functions, branches)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((node.lineno, arg.value))
    return out


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_package_has_a_floor() -> None:
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "notebooks"}
    assert found == set(MAY_IMPORT), "a new top-level package needs its place in MAY_IMPORT"


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_import_runs_back_up(package: str) -> None:
    wrong = []
    for path in _files(package):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in MAY_IMPORT and top != package and top not in MAY_IMPORT[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(set(MAY_IMPORT) - {"core"}))
def test_other_packages_use_only_the_public_face(package: str) -> None:
    # ``from features.state import X`` from outside features reaches past its face (features/__init__.py).
    # The ground floor and the sandbox are sets of small modules, each with its own __all__, imported as such.
    wrong = []
    for path in _files(package):
        for line, module in _imports(path):
            top, _, rest = module.partition(".")
            if top in MAY_IMPORT and top not in (package, "core", "sandbox") and rest:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_the_public_face_names_only_what_exists(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    if package in ("core", "sandbox", "fraudwatch"):
        return  # folders of modules, each with its own face
    assert names, f"{package}/__init__.py has no __all__"
    for name in names:
        assert getattr(module, name) is not None


def test_the_checker_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from streams.worker import build_worker\n    return build_worker\n")
    assert (2, "streams.worker") in _imports(source)
