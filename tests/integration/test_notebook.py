"""The walkthrough notebook runs headless on a fresh kernel, and its .py and .ipynb twins agree."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_PY = ROOT / "notebooks" / "walkthrough.py"
NOTEBOOK_IPYNB = ROOT / "notebooks" / "walkthrough.ipynb"
CONTRACT_KEYS = {
    "events",
    "cases",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "median_lead_time_s",
    "pr_auc",
    "alerts_per_10k_per_day",
    "false_tasks_per_10k_per_day",
    "tasks",
    "per_scenario",
}
RESULT_MARK = "EVALUATION-JSON:"


def _cells(nb: Any) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def test_py_and_ipynb_are_in_sync() -> None:
    from_py = jupytext.read(NOTEBOOK_PY)
    stored = nbformat.read(NOTEBOOK_IPYNB, as_version=4)
    assert from_py.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    code_py = [source for kind, source in _cells(from_py) if kind == "code"]
    code_ipynb = [source for kind, source in _cells(stored) if kind == "code"]
    assert code_py == code_ipynb, "run `jupytext --sync notebooks/walkthrough.py` (or --to ipynb) and commit both"
    assert _cells(from_py) == _cells(stored), "markdown cells differ between walkthrough.py and walkthrough.ipynb"


@pytest.fixture
def private_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec bound to this interpreter, found before any user-level one.

    ipykernel alone already provides ``python3`` (its wheel installs the spec into ``sys.prefix`` and
    jupyter_client falls back to it), but a ``python3`` spec in ``~/.local/share/jupyter`` from another
    Python would shadow it; a private spec on ``JUPYTER_PATH`` pins the kernel to the interpreter under test.
    """
    from ipykernel.kernelspec import install

    install(kernel_name="python3", prefix=str(tmp_path / "jupyter-prefix"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter-prefix" / "share" / "jupyter"))
    return "python3"


def test_walkthrough_executes(private_kernelspec: str, tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(private_kernelspec)
    assert spec.argv[0] == sys.executable

    nb = jupytext.read(NOTEBOOK_PY)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            f"import json as _json\nprint({RESULT_MARK!r} + _json.dumps(evaluation, default=float))"
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TMPDIR": str(tmp_path),
    }
    client = nbclient.NotebookClient(
        nb,
        kernel_name=private_kernelspec,
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK_PY.parent)}},
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell

    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [out for out in cell.outputs if out.output_type == "error"]
            assert not errors, f"cell failed: {cell.source[:80]!r}: {errors}"
    text = "".join(
        out.get("text", "") for out in nb.cells[-1].outputs if out.output_type == "stream" and out.name == "stdout"
    )
    assert RESULT_MARK in text
    evaluation = json.loads(text.split(RESULT_MARK, 1)[1])
    assert set(evaluation) >= CONTRACT_KEYS
    assert evaluation["events"] > 0 and evaluation["cases"] > 0
    assert isinstance(evaluation["lead_times_s"], list)
    for figures in evaluation["per_scenario"].values():
        assert {"cases", "cases_flagged_before_loss", "cases_flagged_by_loss", "median_lead_time_s"} <= set(figures)
    # The plots reached the notebook as images, and the temporary registry was cleaned up.
    images = [out for cell in nb.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(images) >= 2
    assert not list(tmp_path.glob("fw-walkthrough-*"))
