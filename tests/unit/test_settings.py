"""Settings from the environment: what a user who set one variable expects of the others."""

from __future__ import annotations

import pytest

from derivlake.config import ConfigError, DrainSettings, KafkaSettings


def test_clients_find_the_embedded_broker_on_the_port_it_was_started_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DERIVLAKE_BROKER_HOST", raising=False)
    monkeypatch.setenv("DERIVLAKE_BROKER_PORT", "19092")
    assert KafkaSettings.from_env().bootstrap_servers == "127.0.0.1:19092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")  # an explicit one wins
    assert KafkaSettings.from_env().bootstrap_servers == "kafka-1:9093,kafka-2:9093"


def test_the_row_bound_of_a_drain_batch_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DERIVLAKE_DRAIN_BATCH_ROWS", raising=False)
    assert DrainSettings.from_env().batch_rows == 350_000
    monkeypatch.setenv("DERIVLAKE_DRAIN_BATCH_ROWS", "120000")
    assert DrainSettings.from_env().batch_rows == 120_000


def test_the_drains_duckdb_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DERIVLAKE_DRAIN_DUCKDB_THREADS", raising=False)
    assert DrainSettings.from_env().duckdb_threads == 0  # DuckDB's default: one per core
    monkeypatch.setenv("DERIVLAKE_DRAIN_DUCKDB_THREADS", "1")
    assert DrainSettings.from_env().duckdb_threads == 1


def test_an_s3_compatible_endpoint_is_reached_by_path_and_aws_by_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from derivlake.config import ConfigError, LakeSettings, S3Settings
    from derivlake.lake.object_store import secret_statement

    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "DERIVLAKE_S3_URL_STYLE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert S3Settings.from_env() == S3Settings(endpoint="", use_ssl=True, url_style="vhost", region="")
    assert secret_statement(S3Settings.from_env()) == (
        "CREATE OR REPLACE SECRET derivlake_s3 (TYPE s3, PROVIDER credential_chain, URL_STYLE 'vhost')"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    minio = S3Settings.from_env()
    assert minio == S3Settings(endpoint="minio:9000", use_ssl=False, url_style="path", region="eu-west-1")
    assert secret_statement(minio) == (
        "CREATE OR REPLACE SECRET derivlake_s3 (TYPE s3, PROVIDER credential_chain, URL_STYLE 'path', "
        "ENDPOINT 'minio:9000', USE_SSL false, REGION 'eu-west-1')"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.net/")  # the S3-only variable wins
    monkeypatch.setenv("DERIVLAKE_S3_URL_STYLE", "vhost")
    assert S3Settings.from_env() == S3Settings("s3.example.net", True, "vhost", "eu-west-1")
    monkeypatch.setenv("DERIVLAKE_S3_URL_STYLE", "virtual")
    with pytest.raises(ConfigError, match="DERIVLAKE_S3_URL_STYLE='virtual' is not one of path, vhost"):
        S3Settings.from_env()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "minio:9000/bucket")
    with pytest.raises(ConfigError, match="is not a URL like http://minio:9000"):
        S3Settings.from_env()
    monkeypatch.delenv("DERIVLAKE_DATA_PATH", raising=False)
    assert LakeSettings.from_env().s3 == S3Settings()  # a local lake does not read them
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("DERIVLAKE_S3_URL_STYLE", "path")
    monkeypatch.setenv("DERIVLAKE_DATA_PATH", "s3://lake/prod/")
    lake = LakeSettings.from_env()
    assert lake.in_object_store and lake.s3.endpoint == "minio:9000"
    assert not LakeSettings(home=lake.home).in_object_store


def test_extra_currencies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERIVLAKE_EXTRA_CURRENCIES", " HYPE, SUI ,,")
    assert DrainSettings.from_env().extra_currencies == ("HYPE", "SUI")
    monkeypatch.setenv("DERIVLAKE_EXTRA_CURRENCIES", "HYPE,sui-x")
    with pytest.raises(ConfigError, match="'sui-x' is not a currency code"):
        DrainSettings.from_env()


def test_a_malformed_duckdb_memory_limit_is_named_with_an_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's own error, `Parser Error: Memory must have a number`, named no variable."""
    from derivlake.config import LakeSettings

    for good in ("512MB", "2GB", "1.5 GiB", "800mb"):
        monkeypatch.setenv("DERIVLAKE_DUCKDB_MEMORY_LIMIT", good)
        LakeSettings.from_env()
    for bad in ("abc", "512", "80%", ""):
        monkeypatch.setenv("DERIVLAKE_DUCKDB_MEMORY_LIMIT", bad)
        with pytest.raises(
            ConfigError,
            match=rf"^DERIVLAKE_DUCKDB_MEMORY_LIMIT='{bad}' is not a memory size: .* e\.g\. 512MB",
        ):
            LakeSettings.from_env()
