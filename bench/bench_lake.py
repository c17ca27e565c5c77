"""What maintenance buys analysts, measured on one simulated-like day in the same run.

- compacted_query_speedup_ratio: a typical analyst query (last mark per option of one underlying over
  one day) before maintenance / after it. Target >= 3. Before: the day as drains leave it on a lake never
  maintained (288 small files in arrival order, DuckLake's default Parquet V1). After: maintenance's
  layout (merged files sorted by symbol then time, Parquet V2, which maintenance also sets for later
  drains). The underlying is a third of the rows, so reading only its rows bounds the ratio near 3.
- files_after_maintenance_ratio: files in the maintained partition / ceil(partition bytes / target
  size). Target <= 2.

A comment line (`#`) adds the ceiling of the speedup: the query on a DuckDB in-memory table holding the
same rows sorted the same way, the fastest layout DuckDB has for it.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.lake.maintenance import MaintenanceConfig, maintain

BATCHES = int(os.environ.get("BENCH_LAKE_BATCHES", "288"))  # a day of 5-minute drains
SERIES = int(os.environ.get("BENCH_LAKE_SERIES", "600"))
TARGET = int(os.environ.get("BENCH_LAKE_TARGET_MB", "16")) * 1024 * 1024
QUERY = """
SELECT symbol, arg_max(mark_price, timestamp) AS last_mark, max(timestamp) AS at
FROM market.options_ticker
WHERE date = DATE '2025-03-06' AND symbol LIKE 'BTC-%'
GROUP BY symbol
"""
# one 5-minute drain: a ticker every 10 s per series, in arrival (time) order, all underlyings mixed
INSERT = """
INSERT INTO market.options_ticker (exchange, symbol, timestamp, mark_price, mark_iv, underlying_price,
                                   delta, date, kafka_topic, kafka_partition, kafka_offset)
SELECT 'deribit',
       ['BTC', 'ETH', 'SOL_USDC'][s % 3 + 1] || '-27JUN25-' || (1000 + s) || '-C',
       TIMESTAMP '2025-03-06 00:00:00' + to_seconds($batch * 300 + t * 10) + to_microseconds(s),
       0.01 + random() / 10, 40 + random() * 40, 90000 + random() * 100, random(),
       DATE '2025-03-06', 'deribit.ticker', 0, $batch * 1000000 + t * 1000 + s
FROM range(30) a(t), range($series) b(s)
ORDER BY t, s
"""


def timed(con, runs: int = 5, query: str = QUERY) -> float:
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        con.execute(query).fetchall()
        best = min(best, time.perf_counter() - t0)
    return best


def main(tmp: Path) -> None:
    lake = LakeSettings(home=tmp)
    con = open_lake(lake)
    t0 = time.perf_counter()
    for batch in range(BATCHES):
        con.execute(INSERT, {"batch": batch, "series": SERIES})
    rows = con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0]
    print(f"# {rows} rows in {BATCHES} commits in {time.perf_counter() - t0:.1f}s", flush=True)
    con.close()

    ro = open_lake(lake, read_only=True)
    before = timed(ro)
    ro.close()
    result = maintain(lake, MaintenanceConfig(target_file_size_bytes=TARGET, file_grace=timedelta(0)))
    ro = open_lake(lake, read_only=True)
    after = timed(ro)
    ro.execute("CREATE TABLE memory.sorted AS FROM market.options_ticker ORDER BY symbol, timestamp")
    in_memory = timed(ro, query=QUERY.replace("market.options_ticker", "memory.sorted"))
    part = next(p for p in result.partitions if p["table"] == "market.options_ticker")
    print(
        f"# files {result.files_before} -> {result.files_after}; partition {part['bytes'] / 1e6:.1f} MB in {part['files']} files"
    )
    print(f"# in-memory sorted table {in_memory:.4f}s: speedup ceiling {before / in_memory:.2f}")
    print(f"query_before_maintenance_seconds {before:.4f}")
    print(f"query_after_maintenance_seconds {after:.4f}")
    print(f"compacted_query_speedup_ratio {before / after:.2f}")
    print(f"files_after_maintenance_ratio {part['files'] / math.ceil(part['bytes'] / TARGET):.2f}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp:  # the lake goes with it
        main(Path(tmp))
