#!/usr/bin/env bash
# The main job: install, then run the whole service once on loopback and print its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec fraudwatch run "$@"
