"""Errors about the lake catalog name it, without the Postgres password its spec may carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import LakeError, open_lake
from tests.conftest import free_port


def test_an_unreachable_postgres_catalog_is_named_with_its_password_masked(tmp_path: Path) -> None:
    spec = f"postgres:dbname=lake host=127.0.0.1 port={free_port()} user=derivlake password=s3cret"
    with pytest.raises(
        LakeError, match=r"cannot attach the lake catalog postgres:dbname=lake .*password=\*\*\*"
    ) as err:
        open_lake(LakeSettings(home=tmp_path, catalog=spec, data_path=f"{tmp_path}/data/"))
    assert "s3cret" not in str(err.value)
