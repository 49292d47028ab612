#!/usr/bin/env bash
# `make run`: migrate, load the demo project when the database is empty, start the background
# worker and the Streamlit UI on 127.0.0.1:8501; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PORT=${DARL_PORT:-8501}
$PY -m darl_core migrate
$PY -m darl_core demo --if-empty --first-round 200
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
.venv/bin/streamlit run scripts/serve.py --server.address 127.0.0.1 --server.port "$PORT" --server.headless true \
  --browser.gatherUsageStats false &
pids+=($!)
echo
echo "DaRL Studio: http://127.0.0.1:$PORT"
$PY -m darl_core demo --print-logins
wait -n "${pids[@]}"
