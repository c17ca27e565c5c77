"""Lake data in S3 or an S3-compatible store (`DERIVLAKE_DATA_PATH=s3://bucket/prefix/`).

DuckDB reaches it through its httpfs extension, with credentials from its AWS extension's credential
chain, both loaded from their PyPI packages like every other extension here (nothing downloads).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from derivlake.config import S3Settings

if TYPE_CHECKING:
    import pyarrow.fs

EXTENSIONS = ("httpfs", "aws")
SECRET_NAME = "derivlake_s3"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def secret_statement(s3: S3Settings) -> str:
    """The DuckDB secret for every `s3://` path of the session."""
    options = ["TYPE s3", "PROVIDER credential_chain", f"URL_STYLE {_literal(s3.url_style)}"]
    if s3.endpoint:
        options += [f"ENDPOINT {_literal(s3.endpoint)}", f"USE_SSL {str(s3.use_ssl).lower()}"]
    if s3.region:
        options.append(f"REGION {_literal(s3.region)}")
    return f"CREATE OR REPLACE SECRET {SECRET_NAME} ({', '.join(options)})"


def no_credentials_hint(data_path: str) -> str:
    return (
        f"no S3 credentials found for the data path {data_path}: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, a web identity or an instance role), and AWS_ENDPOINT_URL "
        "for an S3-compatible store"
    )


@functools.lru_cache(maxsize=4)
def s3_filesystem(s3: S3Settings) -> pyarrow.fs.S3FileSystem:
    """The bucket as pyarrow reaches it, for the commit guard's server-side copies: the same endpoint
    and addressing as DuckDB's secret, and the same AWS credential chain (the AWS SDK's)."""
    from pyarrow.fs import S3FileSystem

    return S3FileSystem(
        region=s3.region or None,
        endpoint_override=s3.endpoint or None,
        scheme="https" if s3.use_ssl else "http",
        force_virtual_addressing=s3.url_style == "vhost" and bool(s3.endpoint),
    )
