# The Airflow image of the compose deployment (architecture.md section 2): the pinned Airflow plus
# derivlake. The FROM tag must equal the apache-airflow pin in requirements.txt (tests/unit/test_compose.py).
FROM apache/airflow:3.3.2-python3.11

# The named volumes of docker-compose.yml start as copies of these directories, so they must exist
# (owned by the airflow user) before the first `docker compose up`: the lake, the auth file, the logs.
USER root
RUN mkdir -p /opt/derivlake/data /opt/airflow/auth /opt/airflow/logs \
 && chown -R airflow:0 /opt/derivlake /opt/airflow/auth /opt/airflow/logs
USER airflow

# Dependencies first (cached until a pin changes); apache-airflow==3.3.2 is pinned in requirements.txt,
# so pip cannot move the image's Airflow.
COPY --chown=airflow:0 requirements.txt requirements-deploy.txt /opt/derivlake/
RUN pip install --no-cache-dir -r /opt/derivlake/requirements.txt -r /opt/derivlake/requirements-deploy.txt

COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 deploy /opt/derivlake/deploy

ENV PYTHONPATH=/opt/airflow/include \
    DERIVLAKE_HOME=/opt/derivlake/data
