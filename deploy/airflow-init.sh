#!/usr/bin/env bash
# One-shot init of the deployment: migrations, admin user, pool, kafka_default connection, topics, lake.
set -euo pipefail
airflow db migrate
airflow pools set kafka_drains 7 "one slot per topic drain"
airflow connections delete kafka_default >/dev/null 2>&1 || true
airflow connections add kafka_default --conn-type kafka \
  --conn-extra "{\"bootstrap.servers\": \"${KAFKA_BOOTSTRAP_SERVERS}\", \"client.id\": \"derivlake\"}"
python - <<'PY'
from derivlake.config import Settings
from derivlake.kafka_io import ensure_topics, wait_for_broker
from derivlake.lake.catalog import open_lake

settings = Settings.from_env()
wait_for_broker(settings.kafka, timeout_s=120)
print("created topics:", ensure_topics(settings.kafka))
open_lake(settings.lake).close()
print("lake ready:", settings.lake.catalog_spec)
PY
