#!/usr/bin/env bash
# The test suite: install, then unit and integration tests (real broker, Redis and HTTP started by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest -m "unit or integration" "$@"
