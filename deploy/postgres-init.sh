#!/usr/bin/env bash
# Postgres first start only (/docker-entrypoint-initdb.d): the DuckLake catalog's database and owner,
# beside Airflow's metadata DB (the image's POSTGRES_DB). The password comes from DUCKLAKE_DB_PASSWORD.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -v pw="${DUCKLAKE_DB_PASSWORD:?DUCKLAKE_DB_PASSWORD is not set}" \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE USER ducklake WITH PASSWORD :'pw';
CREATE DATABASE ducklake OWNER ducklake;
SQL
