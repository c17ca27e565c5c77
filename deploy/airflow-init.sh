#!/usr/bin/env bash
# The compose `airflow-init` service: runs once before the other Airflow services start (they wait for it
# with `service_completed_successfully`), and again at every `make up`: every step is idempotent.
set -euo pipefail
BOOT="python /opt/derivlake/deploy/bootstrap.py"

echo "== metadata DB migrations"
airflow db migrate

echo "== admin user (SimpleAuthManager)"
$BOOT admin-user

echo "== pool kafka_drains: one slot per topic"
airflow pools set kafka_drains "$($BOOT pool-size)" "derivlake: one slot per Kafka topic drain"

echo "== connection kafka_default (extra = librdkafka config)"
airflow connections delete kafka_default >/dev/null 2>&1 || true
airflow connections add kafka_default --conn-type kafka --conn-extra "$($BOOT kafka-extra)"

echo "== Kafka topics and lake tables"
$BOOT topics-and-lake
