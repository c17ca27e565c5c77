"""The simulated feed with faults, drained topic by topic: every message accounted for exactly once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from derivlake.config import DrainSettings, KafkaSettings
from derivlake.feed.producer import KafkaSink
from derivlake.feed.simulator import ACCOUNTS, BAD_KINDS, SimulatorConfig, iter_messages, simulate
from derivlake.ingest.airflow_task import TABLE_ASSETS
from derivlake.ingest.drain import DrainResult, drain_topic
from derivlake.lake.catalog import open_lake

REASON_PREFIX = {
    "bad_json": "malformed_json",
    "wrong_type": "wrong_type:",
    "missing_field": "missing_field:",
    "unknown_instrument": "unknown_instrument:",
    "malformed_instrument": "malformed_instrument:",
}


def test_bad_rate_feed_ends_with_every_bad_message_quarantined_and_every_good_one_in_its_table(
    kafka: KafkaSettings, lake_settings
) -> None:
    config = SimulatorConfig(
        seed=11,
        start=datetime(2025, 3, 6, 6, 0, tzinfo=UTC),
        end=datetime(2025, 3, 6, 9, 0, tzinfo=UTC),
        bad_rate=0.01,
        dup_rate=0.01,
    )
    sink = KafkaSink(kafka)
    stats = simulate(config, sink, kafka)
    sink.close()
    bad = {(d.topic, d.partition, d.offset): d.mark for d in stats.faulty if d.mark in BAD_KINDS}
    assert len(bad) >= 20, stats.faults  # the run really exercised the faults

    settings = DrainSettings(idle_timeout_s=5, quarantine_max_ratio=0.5)
    results = {kind: drain_topic(kafka, lake_settings, kind, settings) for kind in TABLE_ASSETS}
    con = open_lake(lake_settings, read_only=True)

    quarantined = {(t, p, o): e for t, p, o, e in con.execute(
        'SELECT topic, partition, "offset", error FROM ops.quarantine').fetchall()}  # fmt: skip
    assert quarantined.keys() == bad.keys()  # every bad message, and nothing else
    for where, kind in bad.items():
        assert quarantined[where].startswith(REASON_PREFIX[kind]), (where, kind, quarantined[where])

    dropped_duplicates = sum(r.duplicates for r in results.values())
    assert dropped_duplicates == stats.faults["duplicate"]
    for kind, tables in TABLE_ASSETS.items():
        topic = kafka.topic(kind).name
        landed = Counter()
        for table in tables:
            for p, o in con.execute(f"SELECT DISTINCT kafka_partition, kafka_offset FROM {table}").fetchall():
                landed[(p, o)] += 1
        assert all(n == 1 for n in landed.values()), f"{kind}: a message landed in two tables"
        in_quarantine = sum(1 for (t, _p, _o) in quarantined if t == topic)
        produced = stats.messages[kind]
        assert len(landed) + in_quarantine + results[kind].duplicates == produced, kind
        assert results[kind].messages == produced


def _desk(config: SimulatorConfig) -> tuple[set[tuple[str, str]], list[dict]]:
    """A run's fills as (account, trade id) and its transfers, as the simulator makes them."""
    fills, transfers = set(), []
    for m in iter_messages(config):
        if m.kind == "desk.fills":
            v = json.loads(m.value)
            fills.add((v["account_id"], v["trade_id"]))
        elif m.kind == "desk.transfers":
            transfers.append(json.loads(m.value))
    return fills, transfers


def test_runs_over_consecutive_windows_land_every_fill_once_and_the_opening_deposits_once(
    kafka: KafkaSettings, lake_settings
) -> None:
    """Until 2026-12-03 every run restarted its ids: the second window's fills were dropped as duplicates
    of the first's, and the opening deposits of a run on a later day were counted a second time."""
    day = datetime(2025, 3, 6, tzinfo=UTC)
    runs = [
        SimulatorConfig(seed=3, start=day.replace(hour=6), end=day.replace(hour=7)),
        SimulatorConfig(seed=3, start=day.replace(hour=7), end=day.replace(hour=8)),
        SimulatorConfig(seed=3, start=day + timedelta(days=1, hours=6), end=day + timedelta(days=1, hours=7)),
    ]
    again = runs[0]  # the same run once more: a re-send, every message a duplicate
    settings = DrainSettings(idle_timeout_s=5)
    desk = ("desk.fills", "desk.transfers", "deribit.trades")

    def feed_and_drain(configs: list[SimulatorConfig]) -> dict[str, DrainResult]:
        for config in configs:
            sink = KafkaSink(kafka)
            simulate(config, sink, kafka)
            sink.close()
        return {kind: drain_topic(kafka, lake_settings, kind, settings) for kind in desk}

    first = feed_and_drain(runs[:2])
    assert {k: r.duplicates for k, r in first.items()} == {
        k: 11 if k == "desk.transfers" else 0 for k in desk
    }
    assert first["desk.transfers"].late == 11  # the opening deposits, dated long before they were received
    duplicates = {k: r.duplicates for k, r in feed_and_drain([runs[2], again]).items()}
    fills = [_desk(c)[0] for c in runs]
    assert all(fills) and not (fills[0] & fills[1] or fills[1] & fills[2] or fills[0] & fills[2])
    rerun_fills, rerun_transfers = _desk(again)
    assert duplicates["desk.fills"] == len(rerun_fills)
    assert duplicates["deribit.trades"] == sum(m.kind == "deribit.trades" for m in iter_messages(again))
    assert duplicates["desk.transfers"] == 11 + len(rerun_transfers)  # run 3's opening deposits and all of it

    con = open_lake(lake_settings, read_only=True)
    try:
        landed = con.execute("SELECT account_id, trade_id FROM desk.fills").fetchall()
        balances = dict(
            con.execute(
                "SELECT account_id || ':' || currency, sum(amount) FROM desk.transfers "
                "WHERE starts_with(transfer_id, 'tr-open-') GROUP BY ALL"
            ).fetchall()
        )
        (opening_dates,) = con.execute(
            "SELECT list(DISTINCT date) FROM desk.transfers WHERE starts_with(transfer_id, 'tr-open-')"
        ).fetchone()
    finally:
        con.close()
    assert len(landed) == len(set(landed)) and set(landed) == fills[0] | fills[1] | fills[2]
    assert balances == {f"{a.account_id}:{c}": amount for a in ACCOUNTS for c, amount in a.deposits}
    assert opening_dates == [date(2000, 1, 1)]
