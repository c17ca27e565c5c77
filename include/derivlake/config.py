"""Typed settings, read once from the environment.

Every component takes one of these objects instead of loose dicts, so a missing or mistyped
setting fails at start-up with the variable's name rather than deep inside a drain.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


MEMORY_LIMIT_ENV = "DERIVLAKE_DUCKDB_MEMORY_LIMIT"
# what DuckDB's memory_limit takes: a number and a unit (KB, MB, GB, TB by 1000, KiB ... TiB by 1024)
_MEMORY_SIZE = re.compile(
    r"\s*\d+(\.\d+)?\s*(b|bytes?|[kmgt]|[kmgt]i?b|(kilo|mega|giga|tera)bytes?)\s*", re.IGNORECASE
)


def duckdb_memory_limit() -> str:
    """DERIVLAKE_DUCKDB_MEMORY_LIMIT (default 512MB), checked here: DuckDB's own error for a malformed
    one ("Memory must have a number") names no variable."""
    raw = os.environ.get(MEMORY_LIMIT_ENV, "512MB")
    if not _MEMORY_SIZE.fullmatch(raw):
        raise ConfigError(
            f"{MEMORY_LIMIT_ENV}={raw!r} is not a memory size: give a number and a unit, e.g. 512MB or 2GB "
            "(unset: 512MB)"
        )
    return raw


@dataclass(frozen=True)
class TopicSpec:
    """One Kafka topic of architecture.md section 3."""

    kind: str  # the logical topic of architecture.md (e.g. "deribit.ticker"): picks the normalizer
    name: str  # the Kafka topic name: `kind` behind an optional prefix (tests, multi-tenant brokers)
    partitions: int
    key_field: str


TOPIC_KINDS: tuple[tuple[str, str, bool], ...] = (
    # kind, key field, busy (gets the configured partition count; the others get one partition)
    ("deribit.instruments", "instrument_name", False),
    ("deribit.ticker", "instrument_name", True),
    ("deribit.trades", "instrument_name", True),
    ("deribit.book", "instrument_name", True),
    ("deribit.index", "index_name", False),
    ("desk.fills", "account_id", True),
    ("desk.transfers", "account_id", False),
)


def default_topics(partitions: int = 3, prefix: str = "") -> tuple[TopicSpec, ...]:
    """The topics of architecture.md section 3; the busy ones get `partitions` each."""
    return tuple(
        TopicSpec(kind, prefix + kind, partitions if busy else 1, key) for kind, key, busy in TOPIC_KINDS
    )


@dataclass(frozen=True)
class KafkaSettings:
    """Where Kafka is and how to talk to it (librdkafka keys in `extra`, SASL/SSL included)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    extra: dict[str, str] = field(default_factory=dict)
    topics: tuple[TopicSpec, ...] = field(default_factory=default_topics)

    def client_config(self, **overrides: object) -> dict[str, object]:
        """librdkafka config for any client: bootstrap + extra + the caller's overrides (plain
        values: it is also the `kafka_default` connection's extra; see kafka_log.logged)."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.extra, **overrides}

    def topic(self, name_or_kind: str) -> TopicSpec:
        for spec in self.topics:
            if name_or_kind in (spec.name, spec.kind):
                return spec
        raise ConfigError(f"unknown topic {name_or_kind!r}; {self.accepted_topics()}")

    def accepted_topics(self) -> str:
        """What `topic()` accepts, for its error: the kinds and, behind a prefix, the full names."""
        kinds = ", ".join(t.kind for t in self.topics)
        names = ", ".join(t.name for t in self.topics if t.name != t.kind)
        return f"give a topic kind ({kinds})" + (f" or a topic name ({names})" if names else "")

    @classmethod
    def from_env(cls) -> KafkaSettings:
        extra_raw = os.environ.get("KAFKA_EXTRA_CONFIG", "")
        try:
            extra = json.loads(extra_raw) if extra_raw else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"KAFKA_EXTRA_CONFIG is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise ConfigError("KAFKA_EXTRA_CONFIG must be a JSON object of librdkafka settings")
        return cls(
            # unset: the embedded broker, where `broker start` puts it (DERIVLAKE_BROKER_HOST/_PORT)
            bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
            or BrokerSettings.from_env().bootstrap,
            extra={str(k): str(v) for k, v in extra.items()},
            topics=default_topics(
                _env_int("DERIVLAKE_TOPIC_PARTITIONS", 3), os.environ.get("DERIVLAKE_TOPIC_PREFIX", "")
            ),
        )


def redact_catalog(text: str) -> str:
    """A catalog spec, or an error quoting one, with any Postgres password masked."""
    return re.sub(r"(password\s*=\s*)('[^']*'|[^\s'\"]+)", r"\1***", text)


@dataclass(frozen=True)
class S3Settings:
    """How DuckDB reaches an `s3://` data path. Credentials are not held here: DuckDB's AWS credential
    chain finds them (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, a web identity, an
    instance role), as any AWS tool would. `endpoint` (host[:port]) is for S3-compatible stores."""

    endpoint: str = ""
    use_ssl: bool = True
    url_style: str = "vhost"
    region: str = ""

    @classmethod
    def from_env(cls) -> S3Settings:
        url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        match = re.fullmatch(r"(?:(https?)://)?([^/\s]+)/?", url) if url else None
        if url and not match:
            raise ConfigError(f"AWS_ENDPOINT_URL={url!r} is not a URL like http://minio:9000")
        # a custom endpoint (MinIO, Ceph, moto) is reached by path: its buckets are no DNS names
        style = os.environ.get("DERIVLAKE_S3_URL_STYLE") or ("path" if url else "vhost")
        if style not in ("path", "vhost"):
            raise ConfigError(f"DERIVLAKE_S3_URL_STYLE={style!r} is not one of path, vhost")
        return cls(
            endpoint=match.group(2) if match else "",
            use_ssl=not (match and match.group(1) == "http"),
            url_style=style,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "",
        )


@dataclass(frozen=True)
class LakeSettings:
    """Where the DuckLake catalog and its Parquet files live.

    `catalog` is a DuckLake catalog spec; empty means the embedded SQLite catalog under `home`.
    In the compose deployment it is `postgres:dbname=... host=...`.
    """

    home: Path
    catalog: str = ""
    data_path: str = ""
    spill_dir: str = ""
    s3: S3Settings = field(default_factory=S3Settings)

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def sqlite_catalog_path(self) -> Path:
        return self.lake_dir / "catalog.sqlite"

    @property
    def catalog_spec(self) -> str:
        return self.catalog or f"sqlite:{self.sqlite_catalog_path}"

    @property
    def is_sqlite(self) -> bool:
        return self.catalog_spec.startswith("sqlite:")

    @property
    def data_dir(self) -> str:
        return self.data_path or f"{self.lake_dir / 'data'}/"

    @property
    def in_object_store(self) -> bool:
        """Whether the Parquet files live in S3 (or an S3-compatible store) rather than on a filesystem."""
        return self.data_dir.startswith("s3://")

    @property
    def spill_root(self) -> Path:
        """Where DuckDB spills beyond its memory limit, each connection in a directory of its own."""
        return Path(self.spill_dir) if self.spill_dir else self.home / "tmp"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    @classmethod
    def from_env(cls) -> LakeSettings:
        home = Path(os.environ.get("DERIVLAKE_HOME") or PROJECT_ROOT / ".local" / "data")
        data_path = os.environ.get("DERIVLAKE_DATA_PATH", "")
        duckdb_memory_limit()  # every lake connection's limit (lake/spill.py): malformed, it fails here
        return cls(
            home=home.resolve(),
            catalog=os.environ.get("DERIVLAKE_CATALOG", ""),
            data_path=data_path,
            spill_dir=os.environ.get("DERIVLAKE_DUCKDB_TEMP_DIR", ""),
            # read only for a bucket: AWS_* variables set for other tools must not stop a local lake
            s3=S3Settings.from_env() if data_path.startswith("s3://") else S3Settings(),
        )


@dataclass(frozen=True)
class BrokerSettings:
    """The embedded Tansu broker used by `make demo` and the tests."""

    host: str = "127.0.0.1"
    port: int = 9092
    run_dir: Path = PROJECT_ROOT / ".local" / "broker"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"tansu-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"tansu-{self.port}.log"

    @classmethod
    def from_env(cls, port: int | None = None) -> BrokerSettings:
        run_dir = os.environ.get("DERIVLAKE_BROKER_DIR")
        return cls(
            host=os.environ.get("DERIVLAKE_BROKER_HOST", "127.0.0.1"),
            port=port if port is not None else _env_int("DERIVLAKE_BROKER_PORT", 9092),
            run_dir=Path(run_dir) if run_dir else PROJECT_ROOT / ".local" / "broker",
        )


@dataclass(frozen=True)
class DrainSettings:
    """Bounds of one drain: memory is capped by the batch bounds, never by the backlog."""

    batch_bytes: int = 48 * 1024 * 1024
    batch_messages: int = 100_000
    # the rows a batch projects to, estimated as it is read: a book message explodes into ~14 level
    # rows, and rows are what the parse and the commit hold (a 48 MiB book batch peaked at 2 GB)
    batch_rows: int = 350_000
    # how long one consume() waits to fill its batch: at the end of a partition, or on a quiet topic,
    # the drain waits this long for what is there (a drain of a few messages took 1 s per call)
    poll_timeout_s: float = 0.1
    idle_timeout_s: float = 10.0
    quarantine_max_ratio: float = 0.05
    commit_retries: int = 20
    # DuckDB threads of the drain's lake connection (parse and commit); 0: DuckDB's default, one per
    # core. The drain already runs its read, parse and commit stages at once: where several drains share
    # a worker's cores, fewer threads each avoid oversubscribing them (README "Configuration")
    duckdb_threads: int = 0
    # base currencies taken in instrument and index names besides the known ones (normalize/spec.py):
    # a currency the venue lists after this version would otherwise be quarantined unknown_instrument
    extra_currencies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.duckdb_threads < 0:
            raise ConfigError(
                f"DERIVLAKE_DRAIN_DUCKDB_THREADS={self.duckdb_threads} is below 0 (0: one per core)"
            )
        bad = [c for c in self.extra_currencies if not re.fullmatch(r"[A-Z0-9]{2,16}", c)]
        if bad:
            raise ConfigError(
                f"DERIVLAKE_EXTRA_CURRENCIES: {', '.join(map(repr, bad))} is not a currency code "
                "(2-16 capital letters or digits, comma-separated: e.g. HYPE,SUI)"
            )

    @classmethod
    def from_env(cls) -> DrainSettings:
        return cls(
            batch_bytes=_env_int("DERIVLAKE_DRAIN_BATCH_BYTES", cls.batch_bytes),
            batch_messages=_env_int("DERIVLAKE_DRAIN_BATCH_MESSAGES", cls.batch_messages),
            batch_rows=_env_int("DERIVLAKE_DRAIN_BATCH_ROWS", cls.batch_rows),
            poll_timeout_s=_env_float("DERIVLAKE_DRAIN_POLL_TIMEOUT_S", cls.poll_timeout_s),
            idle_timeout_s=_env_float("DERIVLAKE_DRAIN_IDLE_TIMEOUT_S", cls.idle_timeout_s),
            quarantine_max_ratio=_env_float("DERIVLAKE_QUARANTINE_MAX_RATIO", cls.quarantine_max_ratio),
            commit_retries=_env_int("DERIVLAKE_COMMIT_RETRIES", cls.commit_retries),
            duckdb_threads=_env_int("DERIVLAKE_DRAIN_DUCKDB_THREADS", cls.duckdb_threads),
            extra_currencies=tuple(
                c.strip() for c in os.environ.get("DERIVLAKE_EXTRA_CURRENCIES", "").split(",") if c.strip()
            ),
        )


@dataclass(frozen=True)
class ChainGateSettings:
    """The end-of-day chain's wait for a complete lake: its patience, how often it looks, and how long
    after D 08:00 a partition drained to its log end counts as quiet (no 07:59 quote still coming)."""

    timeout_s: float = 6 * 3600.0
    poke_s: float = 60.0
    lateness_s: float = 300.0  # the schedule's 08:05: a quote of 07:59 produced after 08:05 is lost anyway

    @classmethod
    def from_env(cls) -> ChainGateSettings:
        return cls(
            timeout_s=_env_float("DERIVLAKE_CHAIN_GATE_TIMEOUT_S", cls.timeout_s),
            poke_s=_env_float("DERIVLAKE_CHAIN_GATE_POKE_S", cls.poke_s),
            lateness_s=_env_float("DERIVLAKE_CHAIN_GATE_LATENESS_S", cls.lateness_s),
        )


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings
    lake: LakeSettings
    broker: BrokerSettings
    drain: DrainSettings

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            kafka=KafkaSettings.from_env(),
            lake=LakeSettings.from_env(),
            broker=BrokerSettings.from_env(),
            drain=DrainSettings.from_env(),
        )
