"""Commands given a bad value, or no lake, refuse in one line naming it, and write nothing.

In-process (`derivlake.cli.main`, as `python -m derivlake`) on real lakes and a real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from derivlake.cli import main
from derivlake.config import ConfigError, KafkaSettings, LakeSettings
from derivlake.lake.catalog import open_lake
from tests.conftest import free_port, lake_env
from tests.integration.drain_support import produce, ticker_payload


def _use(monkeypatch: pytest.MonkeyPatch, lake: LakeSettings, **extra: str) -> None:
    for name, value in {**lake_env(lake), **extra}.items():
        monkeypatch.setenv(name, value)


def _snapshots(lake: LakeSettings) -> list[tuple]:
    con = open_lake(lake, read_only=True)
    try:
        return con.execute("SELECT snapshot_id FROM ducklake_snapshots('lake') ORDER BY 1").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retention-days", "-1"], "snapshot retention of -1 days is negative: give --retention-days"),
        (
            ["--target-file-size-mb", "0"],
            "target file size of 0 MB is not positive: give --target-file-size-mb",
        ),
        (["--orphan-grace-hours", "-2"], "orphan grace of -2 hours is negative"),
    ],
)
def test_maintain_refuses_a_negative_retention_or_a_target_size_below_one_mb(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A retention of -1 expired every snapshot but the newest; a target of 0 became a lake option."""
    lake = LakeSettings(home=tmp_path / "home")
    open_lake(lake).close()
    before = _snapshots(lake)
    _use(monkeypatch, lake)
    assert main(["maintain", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert _snapshots(lake) == before  # no option set, nothing expired


def test_the_dags_params_get_the_same_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from derivlake.lake.maintenance_task import run_maintenance_task

    _use(monkeypatch, LakeSettings(home=tmp_path / "home"))
    with pytest.raises(ConfigError, match=r"retention of -0\.5 days is negative.*param retention_days"):
        run_maintenance_task({"params": {"retention_days": -0.5}}, object())
    with pytest.raises(ConfigError, match=r"param target_file_size_mb"):
        run_maintenance_task({"params": {"target_file_size_mb": 0}}, object())
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["maintain"],
        ["quarantine", "replay", "--dry-run"],
        ["quarantine", "replay"],
        ["report", "chain", "--date", "2025-03-06"],
        ["report", "margin", "--date", "2025-03-06"],
        ["report", "exports", "--date", "2025-03-06"],
    ],
)
def test_writers_other_than_drains_refuse_a_home_without_a_lake_as_status_does(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A mistyped DERIVLAKE_HOME used to get a new, empty lake (lake/catalog.sqlite) from these."""
    home = tmp_path / "mistyped"
    _use(monkeypatch, LakeSettings(home=home))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == f"error: no lake at {home}/lake/catalog.sqlite; run a drain first or set DERIVLAKE_HOME\n"
    assert not home.exists()


def test_drain_checks_every_topic_before_draining_any(
    kafka: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`--topic trades` (the kind is deribit.trades) was reported only after the topics before it were
    drained; the error now lists what is accepted."""
    home = tmp_path / "home"
    prefix = kafka.topic("deribit.index").name.removesuffix("deribit.index")
    _use(monkeypatch, LakeSettings(home=home), KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
         DERIVLAKE_TOPIC_PREFIX=prefix, DERIVLAKE_DRAIN_IDLE_TIMEOUT_S="2")  # fmt: skip
    assert main(["drain", "--topic", "deribit.index", "--topic", "trades"]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no line for deribit.index: it was not drained
    assert err.startswith("error: unknown topic 'trades'; give a topic kind (deribit.instruments, ")
    assert "deribit.trades" in err and f"or a topic name ({prefix}deribit.instruments, " in err
    assert not home.exists()
    assert (
        main(["drain", "--topic", "deribit.index", "--topic", f"{prefix}deribit.trades"]) == 0
    )  # both forms


def test_a_drain_without_a_broker_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _use(
        monkeypatch, LakeSettings(home=tmp_path / "home"), KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"
    )
    assert main(["drain", "--topic", "deribit.index"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("deribit.index: FAILED: Kafka at 127.0.0.1:"), out
    assert out.rstrip().endswith(
        "start one with `python -m derivlake broker start` or set KAFKA_BOOTSTRAP_SERVERS"
    ), out


def test_a_drain_over_the_quarantine_threshold_names_its_reasons_once_each(
    kafka: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Its line names the topic once (it was `deribit.ticker: FAILED: deribit.ticker: ...`), and names
    are cut off both reasons that end with one, so each counts as one reason."""
    prefix = kafka.topic("deribit.ticker").name.removesuffix("deribit.ticker")
    _use(monkeypatch, LakeSettings(home=tmp_path / "home"), KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
         DERIVLAKE_TOPIC_PREFIX=prefix, DERIVLAKE_QUARANTINE_MAX_RATIO="0.1")  # fmt: skip
    names = ["BTC-FOO", "BTC-32JAN25-1000-C", "HYPE-PERPETUAL", "XYZ-31DEC99-100-C"]
    bad = [json.dumps(ticker_payload(i, names[i % 4])).encode() for i in range(8)]
    produce(kafka, "deribit.ticker", bad + [json.dumps(ticker_payload(i)).encode() for i in range(8, 40)])
    assert main(["drain", "--topic", "deribit.ticker"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("deribit.ticker: FAILED: 8 of 40 messages (20.0%) quarantined"), out
    assert "malformed_instrument x4 (e.g." in out and "unknown_instrument x4 (e.g." in out, out
