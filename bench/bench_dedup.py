"""What the upstream-duplicate lookup of a book batch costs late in a day, against early in it.

- book_dedup_late_vs_early_ratio: the drain's dedup query for one 100,000-row book batch (1% of it
  re-sent rows) when the day's partition already holds BENCH_DEDUP_ROWS rows (default 20M, written
  by 1M-row commits as drains leave them) / the same query on a day holding nothing yet. Near 1 means
  a day's drains cost the same at 23:00 as at 01:00; before 2026-11-30 the lookup read the whole day.

Comment lines (`#`) add the same ratio for the key-only lookup the drain used before (no match on
the exchange timestamp, so no file of the day can be skipped), and the late time once maintenance has
merged the day's files (default 128 MB target).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from derivlake.config import LakeSettings
from derivlake.ingest.drain import dedup_query
from derivlake.lake.catalog import open_lake
from derivlake.lake.maintenance import MaintenanceConfig, maintain
from derivlake.normalize import normalizer_for

ROWS = int(os.environ.get("BENCH_DEDUP_ROWS", "20000000"))
COMMIT_ROWS = min(1_000_000, ROWS)
BATCH = int(os.environ.get("BENCH_DEDUP_BATCH", "100000"))
# book level rows in arrival order, one a millisecond: two currencies whose change_ids live in
# separate ranges (as on Deribit), 1,500 instruments
ROWS_SQL = """
SELECT 'deribit' AS exchange, ['BTC', 'ETH'][i % 2 + 1] || '-27JUN25-' || (1000 + i % 1500) || '-C' AS symbol,
       TIMESTAMP '2025-03-06' + to_milliseconds(i) AS timestamp,
       TIMESTAMP '2025-03-06' + to_milliseconds(i) + to_microseconds(700) AS local_timestamp,
       false AS is_snapshot, ['bid', 'ask'][i % 2 + 1] AS side, random() AS price, random() AS amount,
       [33000000000, 13000000000][i % 2 + 1] + i AS change_id, [33000000000, 13000000000][i % 2 + 1] + i - 2 AS prev_change_id,
       DATE '2025-03-06' AS date, 'deribit.book' AS kafka_topic, 0 AS kafka_partition, i AS kafka_offset
FROM range($first, $last) r(i)
"""


def rows(first: int, last: int) -> str:
    return ROWS_SQL.replace("$first", str(first)).replace("$last", str(last))


def timed(con, query: str, runs: int = 5) -> tuple[float, int]:
    best, kept = math.inf, 0
    for _ in range(runs):
        t0 = time.perf_counter()
        kept = con.sql(query).to_arrow_table().num_rows
        best = min(best, time.perf_counter() - t0)
    return best, kept


def main(tmp: Path) -> None:
    lake = LakeSettings(home=tmp)
    con = open_lake(lake)
    out = normalizer_for("deribit.book").outputs[0]
    # the batch after ROWS rows: new rows, and re-sends of the last 1% of what the lake holds by then
    resent = max(1, BATCH // 100)
    batch = con.sql(f"{rows(ROWS, ROWS + BATCH)} UNION ALL {rows(ROWS - resent, ROWS)}").to_arrow_table()
    con.register("stage_0", batch)
    queries = {
        "now": dedup_query(out, "stage_0"),
        "key only": dedup_query(replace(out, dedup_same_time=False), "stage_0"),
    }
    early = {name: timed(con, q)[0] for name, q in queries.items()}
    t0 = time.perf_counter()
    for first in range(0, ROWS, COMMIT_ROWS):
        con.execute(f"INSERT INTO market.book_l2 {rows(first, min(first + COMMIT_ROWS, ROWS))}")
    print(
        f"# {ROWS} rows in the day in {math.ceil(ROWS / COMMIT_ROWS)} commits, {time.perf_counter() - t0:.1f}s"
    )
    late = {}
    for name, q in queries.items():
        late[name], kept = timed(con, q)
        assert kept == BATCH, f"{name}: kept {kept} of {BATCH} new rows (and {resent} re-sent)"
    print(f"# key-only lookup: early {early['key only']:.4f}s, late {late['key only']:.4f}s, "
          f"ratio {late['key only'] / early['key only']:.2f}")  # fmt: skip
    con.close()
    t0 = time.perf_counter()
    maintain(lake, MaintenanceConfig(file_grace=timedelta(0)))  # merged files span a stretch of the day
    con = open_lake(lake, read_only=True)
    con.register("stage_0", batch)
    merged = timed(con, queries["now"])[0]
    print(
        f"# after maintenance ({time.perf_counter() - t0:.1f}s): late {merged:.4f}s, ratio {merged / early['now']:.2f}"
    )
    print(f"book_dedup_early_seconds {early['now']:.4f}")
    print(f"book_dedup_late_seconds {late['now']:.4f}")
    print(f"book_dedup_late_vs_early_ratio {late['now'] / early['now']:.2f}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:  # the lake goes with it
        main(Path(tmp))
