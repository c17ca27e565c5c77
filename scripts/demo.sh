#!/usr/bin/env bash
# `make demo`: embedded broker + simulated feed + Airflow standalone with the DAGs running.
# Ctrl-C stops every process this script started.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT/include"
OWN_HOME=$([ -z "${DERIVLAKE_HOME:-}" ] && echo 1 || true)
export DERIVLAKE_HOME="${DERIVLAKE_HOME:-$ROOT/.local/data}"
export DERIVLAKE_BROKER_PORT="${DERIVLAKE_BROKER_PORT:-9092}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$DERIVLAKE_BROKER_PORT}"
export AIRFLOW_HOME="$ROOT/.local/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
LOGS="$ROOT/.local/logs"
mkdir -p "$LOGS" "$AIRFLOW_HOME" "$DERIVLAKE_HOME"

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "[demo] stopping: ${PIDS[*]:-} and the broker"
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true; done
  python -m derivlake broker stop || true
}
trap cleanup EXIT INT TERM

# The embedded broker keeps its topics in memory: the lake of an earlier demo holds offsets of topics that
# went with it, and its drains would stop until reset ("belongs to the topic's earlier incarnation"). The
# demo starts over, lake and Airflow's run history together (with the old history, the day's chain would
# count as built); the earlier ones are kept in .local/prev (one generation).
if [ -n "$OWN_HOME" ] && [ -e "$DERIVLAKE_HOME/lake" ]; then
  rm -rf "$ROOT/.local/prev" && mkdir -p "$ROOT/.local/prev"
  mv "$DERIVLAKE_HOME" "$AIRFLOW_HOME" "$ROOT/.local/prev/" 2>/dev/null || true
  mkdir -p "$DERIVLAKE_HOME" "$AIRFLOW_HOME"
  echo "[demo] the lake and Airflow state of an earlier demo (its broker is gone) moved to $ROOT/.local/prev"
fi

echo "[demo] 1/5 broker"
python -m derivlake broker start

# Simulated market from three days ago (complete business days exist), then live at wall-clock pace.
START="$(date -u -d '3 days ago' +%Y-%m-%dT00:00:00Z)"
NOW="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "[demo] 2/5 feed: simulating $START .. $NOW, then real time (log: $LOGS/feed.log)"
setsid python -m derivlake feed simulate --seed 42 --start "$START" --end "$NOW" --realtime >"$LOGS/feed.log" 2>&1 &
PIDS+=($!)

echo "[demo] 3/5 airflow: metadata DB, kafka_default connection, pools"
airflow db migrate >"$LOGS/airflow-migrate.log" 2>&1
airflow connections delete kafka_default >/dev/null 2>&1 || true
airflow connections add kafka_default --conn-type kafka \
  --conn-extra "{\"bootstrap.servers\": \"$KAFKA_BOOTSTRAP_SERVERS\", \"client.id\": \"derivlake\"}" >/dev/null
airflow pools set kafka_drains 7 "one slot per topic drain" >/dev/null

echo "[demo] 4/5 airflow standalone (log: $LOGS/airflow.log)"
setsid airflow standalone >"$LOGS/airflow.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 180); do
  curl -fsS "http://localhost:$AIRFLOW__API__PORT/api/v2/monitor/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://localhost:$AIRFLOW__API__PORT/api/v2/monitor/health" >/dev/null || { echo "[demo] Airflow UI did not come up: see $LOGS/airflow.log"; exit 1; }

echo "[demo] 5/5 DAGs: unpaused; with catchup off each starts its latest scheduled run at once"
for _ in $(seq 1 60); do
  airflow dags list -o plain 2>/dev/null | grep -q ingest_market_data && break
  sleep 2
done
for d in $(airflow dags list -o plain 2>/dev/null | awk 'NR>1 {print $1}'); do airflow dags unpause "$d" >/dev/null 2>&1 || true; done
# The last complete business day [D-1 08:00, D 08:00) UTC: the latest 08:05 run of eod_options_chain
# builds it once ingestion has passed D 08:00.
if [ "$(date -u +%H%M)" -ge 0805 ]; then D="$(date -u +%Y-%m-%d)"; else D="$(date -u -d yesterday +%Y-%m-%d)"; fi

PASSWORD_FILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
cat <<EOF

  derivlake is running.
  Airflow UI:      http://localhost:$AIRFLOW__API__PORT   user admin, password: $(python -c "import json,sys; print(json.load(open('$PASSWORD_FILE')).get('admin','see $PASSWORD_FILE'))" 2>/dev/null || echo "see $PASSWORD_FILE")
  Business day:    $D (eod_options_chain waits until ingestion has passed $D 08:00, then builds it;
                   eod_margin follows on the chain: every desk account's equity and margin;
                   regulatory_exports on the margin report: RTS 22 and CFTC files)
  Reports:         $DERIVLAKE_HOME/reports/
  Analyst SQL:     PYTHONPATH=include .venv/bin/python -m derivlake sql "SELECT symbol, count(*) FROM market.options_ticker GROUP BY ALL ORDER BY 2 DESC LIMIT 10"
  Logs:            $LOGS/
  Ctrl-C stops everything.
EOF
wait
