"""A project error on the command line is one line that says what to do, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _fraudwatch(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraudwatch.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "FW_DATA_DIR": str(data_dir), **env},
        timeout=120,
    )


def test_evaluate_before_any_model_says_which_command_trains_one(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("")
    (tmp_path / "c.jsonl").write_text("")
    result = _fraudwatch("evaluate", str(tmp_path / "e.jsonl"), str(tmp_path / "c.jsonl"), data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no model in" in result.stderr and "fraudwatch train" in result.stderr


def test_a_missing_file_is_named_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "events.jsonl"
    result = _fraudwatch("train", str(missing), str(missing), data_dir=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"no such file or folder: {missing}" in result.stderr
    debug = _fraudwatch("--debug", "evaluate", str(missing), str(missing), data_dir=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
