"""The Python steps of `deploy/airflow-init.sh` (the compose `airflow-init` service).

    python bootstrap.py admin-user       write the admin's password into the SimpleAuthManager file
    python bootstrap.py pool-size        print the `kafka_drains` pool size: one slot per topic
    python bootstrap.py kafka-extra      print the `kafka_default` connection extra (librdkafka JSON)
    python bootstrap.py topics-and-lake  wait for Kafka, create the missing topics, create the lake tables

Everything comes from the same environment the DAG tasks see (derivlake.config), so the pool, the
connection and the topics can never disagree with what the drains expect.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from derivlake.config import ConfigError, KafkaSettings, Settings


def pool_size(kafka: KafkaSettings) -> int:
    """ingest_market_data runs one drain per topic: a slot for each, no more."""
    return len(kafka.topics)


def kafka_extra(kafka: KafkaSettings) -> str:
    """The connection extra the drain task reads: bootstrap.servers plus KAFKA_EXTRA_CONFIG."""
    return json.dumps(kafka.client_config(), sort_keys=True)


def write_admin_password(passwords_file: Path, users: str, password: str) -> str:
    """Set the password of the first admin of `simple_auth_manager_users`; other entries are kept."""
    admins = [u.split(":")[0] for u in users.split(",") if u.count(":") >= 1 and u.split(":")[1] == "admin"]
    if not admins:
        raise ConfigError(f"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS={users!r} names no user with role admin")
    if not password:
        raise ConfigError("AIRFLOW_ADMIN_PASSWORD is empty")
    passwords = json.loads(passwords_file.read_text() or "{}") if passwords_file.exists() else {}
    passwords[admins[0]] = password
    passwords_file.parent.mkdir(parents=True, exist_ok=True)
    passwords_file.write_text(json.dumps(passwords) + "\n")
    passwords_file.chmod(0o600)
    return admins[0]


def topics_and_lake(settings: Settings, broker_timeout_s: float = 120.0) -> list[str]:
    from derivlake.kafka_io import ensure_topics, wait_for_broker
    from derivlake.lake.catalog import open_lake

    wait_for_broker(settings.kafka, timeout_s=broker_timeout_s)
    created = ensure_topics(settings.kafka)
    open_lake(settings.lake).close()  # a writable open creates the schemas and tables (idempotent)
    return created


def main(argv: list[str]) -> int:
    step = argv[0] if argv else ""
    settings = Settings.from_env()
    if step == "pool-size":
        print(pool_size(settings.kafka))
    elif step == "kafka-extra":
        print(kafka_extra(settings.kafka))
    elif step == "admin-user":
        user = write_admin_password(
            Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]),
            os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin"),
            os.environ.get("AIRFLOW_ADMIN_PASSWORD", ""),
        )
        print(f"admin user {user!r}: password set")
    elif step == "topics-and-lake":
        print("created topics:", topics_and_lake(settings) or "none (all exist)")
        print("lake ready:", settings.lake.catalog_spec.split("password=")[0], settings.lake.data_dir)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
