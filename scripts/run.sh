#!/usr/bin/env bash
# `make run`: migrate, load the demo project and demo accounts only when the database is empty (no
# users, no projects), start the background worker and the Streamlit UI on 127.0.0.1:8501 (DARL_BIND
# and DARL_PORT change that; serve a team through a TLS reverse proxy); Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PORT=${DARL_PORT:-8501}
BIND=${DARL_BIND:-127.0.0.1}
$PY -m darl_core migrate
if [ "${DARL_DEMO:-1}" = "0" ]; then
  echo "DARL_DEMO=0: the demo is not loaded."
else
  echo "Loading the demo if the database is empty (DARL_DEMO=0 skips this)..."
  $PY -m darl_core demo --if-empty --first-round 200
fi
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "DaRL Studio stopped."
}
trap cleanup INT TERM EXIT
$PY -m darl_core worker &
pids+=($!)
.venv/bin/streamlit run scripts/serve.py --server.address "$BIND" --server.port "$PORT" --server.headless true \
  --browser.gatherUsageStats false &
pids+=($!)
echo
echo "DaRL Studio: http://$BIND:$PORT"
if [ "$BIND" != "127.0.0.1" ] && [ "$BIND" != "localhost" ]; then
  echo "Listening on $BIND: serve it through a TLS reverse proxy (passwords travel in the login form), and"
  echo "without demo accounts (their passwords are published: deactivate any on the Users page)."
fi
$PY -m darl_core demo --print-logins
wait -n "${pids[@]}"
