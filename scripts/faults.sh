#!/usr/bin/env bash
# The fault suite: every fault of tests/integration/test_reliability.py and the recovery test against a real
# broker, Redis and HTTP receiver, ending with one fault table (one row per fault). Extra pytest args pass on;
# FW_CRASH_SEED picks other kill points.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest -m integration tests/integration/test_recovery.py tests/integration/test_reliability.py "$@"
