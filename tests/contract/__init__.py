"""A copy of ../shared/schemas, so the tests run wherever the repository is cloned; see test_contract_copy."""

from pathlib import Path

SCHEMAS = Path(__file__).parent
