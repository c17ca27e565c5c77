-- The second database on the Postgres service: the DuckLake catalog (Airflow's metadata DB is the default one).
CREATE USER ducklake WITH PASSWORD 'ducklake';
CREATE DATABASE ducklake OWNER ducklake;
