"""The simulated feed with faults, drained topic by topic: every message accounted for exactly once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from derivlake.config import DrainSettings, KafkaSettings
from derivlake.feed.producer import KafkaSink
from derivlake.feed.simulator import BAD_KINDS, SimulatorConfig, simulate
from derivlake.ingest.airflow_task import TABLE_ASSETS
from derivlake.ingest.drain import drain_topic
from derivlake.lake.catalog import open_lake

REASON_PREFIX = {
    "bad_json": "malformed_json",
    "wrong_type": "wrong_type:",
    "missing_field": "missing_field:",
    "unknown_instrument": "unknown_instrument:",
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
