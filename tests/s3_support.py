"""A throwaway S3-compatible server for the object-storage tests: moto's, in server mode, in a process
of its own. DuckDB's httpfs speaks real S3 HTTP to it; the tests read its buckets back the same way
(ListObjectsV2), independently of DuckDB. moto does not check signatures, so any key will do."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from derivlake.config import PROJECT_ROOT, LakeSettings, S3Settings

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "derivlake-test", "AWS_SECRET_ACCESS_KEY": "derivlake-test-secret"}


class S3Unavailable(RuntimeError):
    pass


def server_python() -> Path:
    """The venv `make test` builds from requirements-s3server.txt (its botocore and our pins conflict)."""
    return Path(
        os.environ.get("DERIVLAKE_S3_SERVER_PYTHON") or PROJECT_ROOT / ".venv-s3server" / "bin" / "python"
    )


@dataclass
class S3Server:
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> S3Settings:
        return S3Settings(
            endpoint=f"127.0.0.1:{self.port}", use_ssl=False, url_style="path", region="us-east-1"
        )

    def new_bucket(self) -> str:
        name = f"lake-{uuid.uuid4().hex[:12]}"
        self.make_bucket(name)
        return name

    def make_bucket(self, name: str) -> None:
        self.put(name, "", b"")  # PUT /<bucket>: CreateBucket

    def lake(self, home: Path, catalog: str = "", bucket: str | None = None) -> LakeSettings:
        """A lake whose files go to a fresh bucket (or `bucket`, which need not exist)."""
        bucket = bucket or self.new_bucket()
        return LakeSettings(home=home, catalog=catalog, data_path=f"s3://{bucket}/lake/", s3=self.settings())

    def put(self, bucket: str, key: str, body: bytes) -> None:
        request = urllib.request.Request(f"{self.url}/{bucket}/{key}", data=body, method="PUT")
        urllib.request.urlopen(request, timeout=10).read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _list_keys(url: str, bucket: str, prefix: str) -> list[str]:
    """Every object key under `prefix`, through the S3 API (pages of ListObjectsV2)."""
    keys: list[str] = []
    token = None
    while True:
        query = f"list-type=2&prefix={prefix}" + (f"&continuation-token={token}" if token else "")
        with urllib.request.urlopen(f"{url}/{bucket}?{query}", timeout=10) as reply:
            root = ET.fromstring(reply.read())
        keys += [c.findtext(f"{S3_NS}Key") for c in root.iter(f"{S3_NS}Contents")]
        token = root.findtext(f"{S3_NS}NextContinuationToken")
        if not token:
            return sorted(keys)


def lake_objects(lake: LakeSettings) -> list[str]:
    """The objects under a test lake's `s3://` data path, as `s3://bucket/key`."""
    bucket, _, prefix = lake.data_dir.removeprefix("s3://").partition("/")
    return [f"s3://{bucket}/{k}" for k in _list_keys(f"http://{lake.s3.endpoint}", bucket, prefix)]


def start_s3_server(port: int, log: Path) -> S3Server:
    python = server_python()
    if not python.exists():
        raise S3Unavailable(f"no S3 test server: {python} is missing (`make test` builds it)")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(python), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    server = S3Server(port, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise S3Unavailable(f"the S3 test server exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{server.url}/", timeout=2).read()
            return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    server.stop()
    raise S3Unavailable(f"the S3 test server did not answer on port {port} within 60 s")
