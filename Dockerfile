# The Airflow image of the compose deployment: the pinned Airflow plus derivlake (dags, plugins, include).
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt requirements-deploy.txt /opt/derivlake/
RUN pip install --no-cache-dir -r /opt/derivlake/requirements.txt -r /opt/derivlake/requirements-deploy.txt

COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 deploy /opt/derivlake/deploy

ENV PYTHONPATH=/opt/airflow/include \
    DERIVLAKE_HOME=/opt/derivlake/data
