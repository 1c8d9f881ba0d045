"""The tests' copy of the contract schemas is the shared contract, byte for byte, wherever both exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract import SCHEMAS

pytestmark = pytest.mark.unit

SHARED = Path(__file__).resolve().parents[3] / "shared" / "schemas"


def test_copy_holds_every_schema() -> None:
    names = {p.name for p in SCHEMAS.glob("*.json")}
    assert {"call.v1.json", "transfer.v1.json", "case.v1.json", "responder.v1.json", "task.v1.json"} <= names


@pytest.mark.skipif(not SHARED.exists(), reason="no ../shared/schemas beside this checkout")
def test_copy_matches_shared_contract() -> None:
    for shared in SHARED.glob("*.json"):
        assert (SCHEMAS / shared.name).read_bytes() == shared.read_bytes(), f"{shared.name} drifted"
