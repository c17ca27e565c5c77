"""No Docker engine runs here, so the deployment is checked by reading it: images, env, mounts, versions.

`compose_problems` lists everything in docker-compose.yml (and the files it uses) that `docker compose up`
would only find out later, or never; `test_each_check_fails_on_a_broken_file` breaks a copy once per
check to show that none of them passes vacuously. The init steps of deploy/bootstrap.py run for real
against the embedded broker.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from derivlake.config import (
    BrokerSettings,
    DrainSettings,
    KafkaSettings,
    LakeSettings,
    Settings,
    default_topics,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker")  # fmt: skip
# must be present, and identical, in every Airflow service
REQUIRED_SHARED_ENV = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY",
                       "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__EXECUTOR",
                       "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CELERY__BROKER_URL",
                       "AIRFLOW__CELERY__RESULT_BACKEND", "KAFKA_BOOTSTRAP_SERVERS", "DERIVLAKE_HOME",
                       "DERIVLAKE_CATALOG", "DERIVLAKE_DATA_PATH")  # fmt: skip
# any other variable with one of these prefixes, once set in one Airflow service, must be in all of them
SHARED_PREFIXES = ("AIRFLOW__", "KAFKA_", "DERIVLAKE_")


def interpolate(value: object, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` / `$$` substitution, with `env` standing for the shell."""
    env = env or {}

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        return env.get(name) or (default if default is not None else "")

    text = re.sub(r"\$\{(\w+)(:?-([^}]*))?\}", sub, str(value))
    return text.replace("$$", "$")


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def depends_of(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def volumes_of(svc: dict) -> list[tuple[str, str]]:
    """(source, target) of each mount, short or long syntax."""
    out = []
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            out.append((str(vol.get("source", "")), str(vol.get("target", ""))))
        else:
            parts = str(vol).split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return out


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def host_of(url_or_spec: str) -> str:
    """The host in `scheme://user:pw@host:port/db`, `host:port`, or a `key=value ... host=H` spec."""
    if m := re.search(r"(?:^|\s)host=(\S+)", url_or_spec):
        return m.group(1)
    rest = url_or_spec.split("://", 1)[-1].rsplit("@", 1)[-1]
    return re.split(r"[:/]", rest, maxsplit=1)[0]


def init_script_text(svc: dict, root: Path) -> str:
    """The init service's command plus every deploy/ file it runs (and the files those run)."""
    text = " ".join(str(x) for key in ("entrypoint", "command") for x in ([svc.get(key)] if isinstance(
        svc.get(key), str) else svc.get(key) or []))  # fmt: skip
    seen: set[str] = set()
    while True:
        names = set(re.findall(r"/opt/derivlake/deploy/([\w.\-]+)", text)) - seen
        if not names:
            return text
        for name in names:
            seen.add(name)
            path = root / "deploy" / name
            text += "\n" + (path.read_text() if path.exists() else f"<missing deploy/{name}>")


def compose_problems(compose: dict, root: Path) -> list[str]:
    """Everything wrong with a compose file that `docker compose up` would only find out later."""
    problems: list[str] = []
    services: dict = compose.get("services") or {}
    named_volumes = set(compose.get("volumes") or {})

    # images pinned, builds buildable
    for name, svc in services.items():
        image, build = svc.get("image"), svc.get("build")
        if image and not image_is_pinned(str(image)):
            problems.append(f"{name}: image {image!r} is not pinned by a tag")
        if build:
            context = root / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            if not dockerfile.exists():
                problems.append(f"{name}: build Dockerfile {dockerfile} missing")
        if not image and not build:
            problems.append(f"{name}: neither image nor build")

    # dependencies: defined, with conditions the target can satisfy
    for name, svc in services.items():
        for dep, condition in depends_of(svc).items():
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep}")
            elif condition == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{name}: waits for {dep} to be healthy but {dep} has no healthcheck")
            elif condition == "service_started" and dep in ("postgres", "kafka", "redis"):
                problems.append(f"{name}: depends_on {dep} without condition service_healthy")

    # mounts: bind sources exist in the repo, named volumes are declared
    for name, svc in services.items():
        for source, _target in volumes_of(svc):
            if source.startswith((".", "/", "~")):
                if not (root / source).exists():
                    problems.append(f"{name}: mounted path {source} does not exist")
            elif source and source not in named_volumes:
                problems.append(f"{name}: volume {source} is not declared under top-level volumes")

    # the Dockerfile: Airflow version = the pin, COPY sources exist
    dockerfile = (root / "Dockerfile").read_text() if (root / "Dockerfile").exists() else ""
    pin = re.search(r"^apache-airflow==(\S+)$", (root / "requirements.txt").read_text(), re.M)
    base = re.search(r"^FROM\s+apache/airflow:([0-9][0-9.]*)", dockerfile, re.M)
    if not base or not pin or base.group(1) != pin.group(1):
        problems.append(
            f"Dockerfile Airflow {base and base.group(1)} != requirements.txt {pin and pin.group(1)}"
        )
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M):
        for src in [s for s in line.split() if not s.startswith("--")][:-1]:
            if not (root / src).exists():
                problems.append(f"Dockerfile: COPY source {src} does not exist")

    # the Airflow services: all there, one configuration
    missing = [n for n in AIRFLOW_SERVICES if n not in services]
    if missing:
        problems.append(f"Airflow services missing: {missing}")
    envs = {n: env_of(services[n]) for n in AIRFLOW_SERVICES if n in services}
    shared = set(REQUIRED_SHARED_ENV) | {k for e in envs.values() for k in e if k.startswith(SHARED_PREFIXES)}
    for key in sorted(shared):
        values = {n: e.get(key) for n, e in envs.items()}
        if len(set(values.values())) != 1 or None in values.values():
            problems.append(f"{key} differs or is missing across Airflow services: {values}")
    env = next(iter(envs.values()), {})
    if env.get("AIRFLOW__CORE__EXECUTOR") != "CeleryExecutor":
        problems.append(f"executor {env.get('AIRFLOW__CORE__EXECUTOR')!r} is not CeleryExecutor")
    for key, scheme in (("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql"), ("AIRFLOW__CELERY__BROKER_URL", "redis"),
                        ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql"), ("DERIVLAKE_CATALOG", "postgres:"),
                        ("KAFKA_BOOTSTRAP_SERVERS", ""), ("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http")):  # fmt: skip
        value = interpolate(env.get(key, ""))
        if not value.startswith(scheme) or host_of(value) not in services:
            problems.append(f"{key}={value!r}: not a {scheme or 'host:port'} address of a compose service")
    if host_of(interpolate(env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", ""))) != "airflow-apiserver":
        problems.append("AIRFLOW__CORE__EXECUTION_API_SERVER_URL does not point at airflow-apiserver")
    home = env.get("DERIVLAKE_HOME", "")
    for n in envs:
        if not any(s in named_volumes and home.startswith(t) for s, t in volumes_of(services[n])):
            problems.append(f"{n}: DERIVLAKE_HOME {home!r} is not on a shared named volume")
    for n in AIRFLOW_SERVICES[1:]:
        if n in services and depends_of(services[n]).get("airflow-init") != "service_completed_successfully":
            problems.append(f"{n}: does not wait for airflow-init to complete")
        if n in services and not services[n].get("healthcheck"):
            problems.append(f"{n}: no healthcheck")

    # the api-server publishes 8080
    api = services.get("airflow-apiserver", {})
    if not any(str(p).split(":")[-1] == "8080" and str(p).count(":") >= 1 for p in api.get("ports") or []):
        problems.append("airflow-apiserver does not publish port 8080")

    # Kafka in KRaft mode: no ZooKeeper anywhere
    kafka = services.get("kafka", {})
    kenv = env_of(kafka)
    if any("zookeeper" in n or "zookeeper" in str(s.get("image", "")) for n, s in services.items()):
        problems.append("a ZooKeeper service: Kafka must run in KRaft mode")
    if not str(kafka.get("image", "")).startswith("apache/kafka:"):
        problems.append(f"kafka image {kafka.get('image')!r} is not apache/kafka")
    if "controller" not in kenv.get("KAFKA_PROCESS_ROLES", "") or not kenv.get(
        "KAFKA_CONTROLLER_QUORUM_VOTERS"
    ):
        problems.append("kafka: KAFKA_PROCESS_ROLES/KAFKA_CONTROLLER_QUORUM_VOTERS not set: not KRaft")
    if any("ZOOKEEPER" in k for k in kenv):
        problems.append("kafka: a ZooKeeper setting")
    bootstrap = interpolate(env.get("KAFKA_BOOTSTRAP_SERVERS", ""))
    if bootstrap not in kenv.get("KAFKA_ADVERTISED_LISTENERS", ""):
        problems.append(f"KAFKA_BOOTSTRAP_SERVERS {bootstrap!r} is not an advertised listener of kafka")

    # the init service: pool and kafka_default connection
    init = init_script_text(services.get("airflow-init", {}), root)
    for needle, what in (("airflow db migrate", "runs the migrations"),
                         ("pools set kafka_drains", "creates the kafka_drains pool"),
                         ("connections add kafka_default", "creates the kafka_default connection"),
                         ("--conn-type kafka", "gives kafka_default the kafka conn type"),
                         ("ensure_topics", "creates the topics"), ("admin-user", "creates the admin user")):  # fmt: skip
        if needle not in init:
            problems.append(f"airflow-init never {what} ({needle!r} not found)")
    return problems


def requirements_problems(text: str) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    bad = [
        ln
        for ln in lines
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(\[[\w,\-]+\])?==[0-9][\w.+!]*", ln)
    ]
    return ([] if lines else ["no requirements"]) + [f"not pinned with ==: {ln}" for ln in bad]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_is_consistent(compose: dict) -> None:
    problems = compose_problems(compose, ROOT)
    assert problems == [], "\n".join(problems)


def test_deploy_requirements_are_pinned() -> None:
    assert requirements_problems((ROOT / "requirements-deploy.txt").read_text()) == []
    names = {ln.split("==")[0].lower() for ln in (ROOT / "requirements-deploy.txt").read_text().splitlines()}
    assert {"apache-airflow-providers-celery", "apache-airflow-providers-postgres"} <= names
    base = {
        ln.split("==")[0].lower() for ln in (ROOT / "requirements.txt").read_text().splitlines() if "==" in ln
    }
    assert not names & base, f"pinned twice (requirements.txt already has them): {names & base}"


def _set(path: str, value: object) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        *keys, last = path.split("/")
        node = c
        for k in keys:
            node = node[k]
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        *keys, last = path.split("/")
        node = c
        for k in keys:
            node = node[k]
        del node[last]

    return mutate


def _in_every_airflow_service(key: str, value: object) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        for name in AIRFLOW_SERVICES:
            c["services"][name][key] = value

    return mutate


def _env_everywhere(key: str, value: str) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        for name in AIRFLOW_SERVICES:
            c["services"][name]["environment"][key] = value

    return mutate


BROKEN = {
    "latest image": (_set("services/redis/image", "redis:latest"), "redis: image 'redis:latest'"),
    "untagged image": (_set("services/postgres/image", "postgres"), "postgres: image 'postgres'"),
    "missing Dockerfile": (_set("services/airflow-worker/build", "nowhere"), "Dockerfile"),
    "other JWT secret": (_set("services/airflow-worker/environment/AIRFLOW__API_AUTH__JWT_SECRET", "x"), "JWT_SECRET differs"),
    "fernet key missing": (_delete("services/airflow-scheduler/environment/AIRFLOW__CORE__FERNET_KEY"), "FERNET_KEY differs"),
    "other catalog": (_set("services/airflow-triggerer/environment/DERIVLAKE_CATALOG", "postgres:host=postgres"), "DERIVLAKE_CATALOG differs"),
    "extra KAFKA_ in one": (_set("services/airflow-worker/environment/KAFKA_EXTRA_CONFIG", "{}"), "KAFKA_EXTRA_CONFIG differs"),
    "local executor": (_env_everywhere("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"), "not CeleryExecutor"),
    "missing bind mount": (lambda c: c["services"]["postgres"]["volumes"].append("./nowhere.sql:/x"), "./nowhere.sql"),
    "undeclared volume": (lambda c: c["services"]["redis"].setdefault("volumes", []).append("ghost-vol:/data"), "ghost-vol"),
    "unknown dependency": (_set("services/airflow-worker/depends_on/ghost", {"condition": "service_started"}), "unknown service ghost"),
    "healthy without healthcheck": (_delete("services/redis/healthcheck"), "redis has no healthcheck"),
    "does not wait for init": (_delete("services/airflow-scheduler/depends_on/airflow-init"), "airflow-scheduler: does not wait"),
    "no api-server port": (_set("services/airflow-apiserver/ports", ["9090:9090"]), "publish port 8080"),
    "zookeeper": (_set("services/zookeeper", {"image": "zookeeper:3.9.2"}), "ZooKeeper service"),
    "not KRaft": (_delete("services/kafka/environment/KAFKA_PROCESS_ROLES"), "not KRaft"),
    "bootstrap elsewhere": (_env_everywhere("KAFKA_BOOTSTRAP_SERVERS", "broker:9092"), "KAFKA_BOOTSTRAP_SERVERS"),
    "lake not on a volume": (_in_every_airflow_service("volumes", []), "not on a shared named volume"),
    "init without pool": (_set("services/airflow-init/entrypoint", ["airflow", "db", "migrate"]), "kafka_drains pool"),
    "missing service": (_delete("services/airflow-triggerer"), "Airflow services missing"),
}  # fmt: skip


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_each_check_fails_on_a_broken_file(compose: dict, case: str) -> None:
    mutate, expected = BROKEN[case]
    broken = copy.deepcopy(json.loads(json.dumps(compose)))  # unshares the YAML anchors
    mutate(broken)
    problems = " | ".join(compose_problems(broken, ROOT))
    assert expected in problems, problems


def test_the_file_checks_catch_a_broken_repo(compose: dict, tmp_path: Path) -> None:
    """Dockerfile, requirements and init script broken in a copy of the repo's deployment files."""
    for name in ("requirements.txt", "requirements-deploy.txt", "Dockerfile"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for name in ("include", "dags", "plugins", "deploy"):
        (tmp_path / name).mkdir()
    for path in (ROOT / "deploy").iterdir():
        (tmp_path / "deploy" / path.name).write_text(path.read_text())
    assert compose_problems(compose, tmp_path) == []
    (tmp_path / "Dockerfile").write_text((ROOT / "Dockerfile").read_text().replace("3.3.2", "3.2.0"))
    (tmp_path / "deploy" / "airflow-init.sh").write_text("airflow db migrate\n")
    (tmp_path / "deploy" / "postgres-init.sh").unlink()
    problems = " | ".join(compose_problems(compose, tmp_path))
    for expected in ("Dockerfile Airflow 3.2.0 != requirements.txt 3.3.2", "kafka_drains pool",
                     "kafka_default connection", "deploy/postgres-init.sh does not exist"):  # fmt: skip
        assert expected in problems, problems
    assert requirements_problems("celery>=5\nredis==8.1.0\n") == ["not pinned with ==: celery>=5"]
    assert requirements_problems("# nothing\n") == ["no requirements"]


def test_interpolation_and_hosts() -> None:
    assert interpolate("a${X:-d}b${Y}c$$") == "adbc$"
    assert interpolate("${X:-d}", {"X": "v"}) == "v"
    assert host_of("postgresql+psycopg2://u:p@postgres/airflow") == "postgres"
    assert host_of("postgres:dbname=ducklake host=postgres user=u") == "postgres"
    assert host_of("kafka:9092") == "kafka"
    assert image_is_pinned("apache/kafka:3.9.1") and image_is_pinned("localhost:5000/img:1.2")
    assert not image_is_pinned("localhost:5000/img") and not image_is_pinned("redis:latest")


# ---- deploy/bootstrap.py: the Python steps of airflow-init, run for real ----


def _bootstrap():
    spec = importlib.util.spec_from_file_location(
        "derivlake_deploy_bootstrap", ROOT / "deploy" / "bootstrap.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_settings_come_from_the_compose_environment(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Airflow services' environment, as the containers see it, gives the pool, connection and lake."""
    boot = _bootstrap()
    for key, value in env_of(compose["services"]["airflow-init"]).items():
        monkeypatch.setenv(key, interpolate(value))
    settings = Settings.from_env()
    assert boot.pool_size(settings.kafka) == len(default_topics()) == 7
    extra = json.loads(boot.kafka_extra(settings.kafka))
    assert extra == {"bootstrap.servers": "kafka:9092", "client.id": "derivlake"}
    assert settings.lake.catalog_spec.startswith("postgres:dbname=ducklake host=postgres")
    assert settings.lake.data_dir.startswith(str(settings.lake.home))


def test_init_writes_the_admin_password(tmp_path: Path) -> None:
    boot = _bootstrap()
    passwords = tmp_path / "auth" / "passwords.json"
    assert boot.write_admin_password(passwords, "viewer1:viewer,boss:admin", "s3cret") == "boss"
    passwords.write_text(json.dumps({"viewer1": "v", "boss": "old"}))
    boot.write_admin_password(passwords, "viewer1:viewer,boss:admin", "new")
    assert json.loads(passwords.read_text()) == {"viewer1": "v", "boss": "new"}
    with pytest.raises(ValueError, match="no user with role admin"):
        boot.write_admin_password(passwords, "viewer1:viewer", "x")


def test_init_creates_the_topics_and_the_lake_once(session_kafka: KafkaSettings, tmp_path: Path) -> None:
    boot = _bootstrap()
    kafka = replace(session_kafka, topics=default_topics(3, f"init{uuid.uuid4().hex[:6]}."))
    settings = Settings(kafka, LakeSettings(home=tmp_path / "home"), BrokerSettings(), DrainSettings())
    assert sorted(boot.topics_and_lake(settings, broker_timeout_s=15)) == sorted(t.name for t in kafka.topics)
    assert settings.lake.sqlite_catalog_path.exists()
    assert boot.topics_and_lake(settings, broker_timeout_s=15) == []  # a second `make up`: nothing to do
