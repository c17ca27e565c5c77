"""No Docker engine runs here, so the deployment is checked by reading it: images, env, mounts, versions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker")  # fmt: skip
SHARED_ENV = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
              "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "KAFKA_BOOTSTRAP_SERVERS",
              "DERIVLAKE_HOME", "DERIVLAKE_CATALOG", "DERIVLAKE_DATA_PATH")  # fmt: skip


def compose_problems(compose: dict, root: Path) -> list[str]:
    """Everything wrong with a compose file that `docker compose up` would only find out later."""
    problems = []
    services = compose.get("services", {})
    pin = re.search(r"^apache-airflow==(\S+)$", (root / "requirements.txt").read_text(), re.M)
    for name, svc in services.items():
        image, build = svc.get("image"), svc.get("build")
        if build:
            context = root / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            if not dockerfile.exists():
                problems.append(f"{name}: build Dockerfile {dockerfile} missing")
        elif not image or ":" not in image or image.endswith(":latest"):
            problems.append(f"{name}: image {image!r} is not pinned by a tag")
        for dep in svc.get("depends_on", {}) or {}:
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep}")
        for volume in svc.get("volumes", []) or []:
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and not (root / source).exists():
                problems.append(f"{name}: mounted path {source} does not exist")
    dockerfile = (root / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:([0-9.]+)", dockerfile, re.M)
    if not base or not pin or base.group(1) != pin.group(1):
        problems.append(
            f"Dockerfile Airflow {base and base.group(1)} != requirements.txt {pin and pin.group(1)}"
        )
    envs = {n: services[n].get("environment", {}) for n in AIRFLOW_SERVICES if n in services}
    for key in SHARED_ENV:
        values = {str(env.get(key)) for env in envs.values()}
        if len(values) != 1 or "None" in values:
            problems.append(f"{key} differs or is missing across Airflow services: {values}")
    return problems


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_consistent(compose: dict) -> None:
    assert compose_problems(compose, ROOT) == []


def test_every_architecture_service_is_there(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", "redis", *AIRFLOW_SERVICES} <= set(services)
    assert not any("zookeeper" in name for name in services)
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-apiserver"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_init_creates_pool_connection_topics_and_lake() -> None:
    init = (ROOT / "deploy" / "airflow-init.sh").read_text()
    for needle in ("airflow db migrate", "pools set kafka_drains", "connections add kafka_default",
                   "ensure_topics", "open_lake"):  # fmt: skip
        assert needle in init


def test_deploy_requirements_are_pinned() -> None:
    lines = [
        ln
        for ln in (ROOT / "requirements-deploy.txt").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.]*", ln) for ln in lines), lines


def test_the_checker_catches_broken_files(compose: dict, tmp_path: Path) -> None:
    broken = json.loads(json.dumps(compose))  # unshares the YAML anchors: one service can differ
    broken["services"]["redis"]["image"] = "redis:latest"
    broken["services"]["airflow-worker"]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] = "other"
    broken["services"]["postgres"]["volumes"].append("./nowhere.sql:/x")
    broken["services"]["airflow-worker"]["depends_on"]["ghost"] = {"condition": "service_started"}
    problems = " | ".join(compose_problems(broken, ROOT))
    for expected in (
        "redis: image 'redis:latest'",
        "JWT_SECRET differs",
        "./nowhere.sql",
        "unknown service ghost",
    ):
        assert expected in problems
