#!/usr/bin/env bash
# `make test`: install what the tests need (Debian's PostgreSQL, Redis and Chromium when absent),
# start PostgreSQL on loopback, and run the whole suite against SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing from Debian's packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
DARL_TEST_PG_URL=$(scripts/pg_start.sh darl_test | tail -n1)
export DARL_TEST_PG_URL
echo "PostgreSQL for tests: ${DARL_TEST_PG_URL%%:darl@*}:***@${DARL_TEST_PG_URL#*@}"
mkdir -p tests/artifacts
exec .venv/bin/python -m pytest tests "$@"
