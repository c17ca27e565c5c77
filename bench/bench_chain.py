"""Benchmark: the end-of-day chain at venue scale against a plain aggregate scan of the same day's quotes.

A simulated business day: >= 1,500 option series (BTC and ETH, 10 expiries, 38 strikes, calls and puts),
a ticker every 10 s per series over [D-1 08:00, D 08:00) (~13M rows), trades and 1 s index prices,
generated with DuckDB `range()` straight into a tmp lake. Prints `<name> <value>` lines; the ratio
`chain_vs_scan_ratio` (build incl. CSV + HTML over the scan) targets <= 3.

    PYTHONPATH=include .venv/bin/python bench/bench_chain.py [--tick-seconds 10]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

D = date(2024, 3, 8)
EXPIRY_DAYS = (
    0,
    1,
    2,
    7,
    14,
    21,
    49,
    112,
    203,
    294,
)  # days after D: dailies, weeklies, monthlies, quarterlies
STRIKES = 38

GEN_SERIES = """
CREATE TEMP TABLE bench_series AS
SELECT
    u.base, e.days, s.i AS strike_no, cp.t AS type,
    TIMESTAMP '2024-03-08 08:00:00' + to_days(e.days::INT) AS expiration,
    u.spot * (0.5 + s.i * 0.03) AS strike, u.spot,
    u.base || '-' || strftime(TIMESTAMP '2024-03-08 08:00:00' + to_days(e.days::INT), '%-d%b%y').upper()
        || '-' || CAST(round(u.spot * (0.5 + s.i * 0.03)) AS BIGINT)::VARCHAR
        || CASE cp.t WHEN 'call' THEN '-C' ELSE '-P' END AS symbol
FROM (VALUES ('BTC', 65000.0), ('ETH', 3500.0)) u(base, spot)
CROSS JOIN (SELECT unnest(?::INT[]) AS days) e
CROSS JOIN (SELECT range AS i FROM range(?)) s
CROSS JOIN (VALUES ('call'), ('put')) cp(t)
"""

GEN_TICKER = """
INSERT INTO market.options_ticker
SELECT
    'deribit', s.symbol, ts, ts + INTERVAL 3 MILLISECOND, s.type, s.strike, s.expiration,
    100 + s.strike_no, mark, mark * 0.97, 10, iv - 2, mark * 1.03, 10, iv + 2, mark, iv,
    'SYN.' || s.base, fwd, CASE s.type WHEN 'call' THEN 0.5 ELSE -0.5 END, 0.0001, 10.0, -20.0, 1.0,
    s.spot, 0.0, 0.0, fwd, 100.0, 1000.0, 'open', CAST(ts AS DATE), 'deribit.ticker', 0, n
FROM bench_series s
CROSS JOIN (
    SELECT range AS n, TIMESTAMP '2024-03-07 08:00:00' + to_microseconds(range * ? * 1000000) AS ts
    FROM range(CAST(86400 / ? AS BIGINT))
) t,
LATERAL (SELECT s.spot * (1 + 0.0001 * sin(t.n / 500.0)) AS fwd,
                55 + 20 * abs(ln(s.strike / s.spot)) + sin(t.n / 300.0) AS iv,
                0.001 + 0.05 * exp(-abs(ln(s.strike / s.spot)) * 4) AS mark)
"""

GEN_TRADES = """
INSERT INTO market.trades (exchange, symbol, timestamp, local_timestamp, id, side, price, amount, trade_seq,
                           index_price, block_trade_id, date)
SELECT 'deribit', s.symbol, ts, ts, s.symbol || '-' || k, 'buy', 0.01 + (k % 7) * 0.001, 1 + k % 5, k,
       s.spot, CASE WHEN k % 50 = 0 THEN 'B' || k END, CAST(ts AS DATE)
FROM bench_series s CROSS JOIN (SELECT range AS k FROM range(60)) r,
LATERAL (SELECT TIMESTAMP '2024-03-07 08:00:00' + to_microseconds((k * 1440 + s.strike_no) * 1000000) AS ts)
"""

GEN_INDEX = """
INSERT INTO market.index_prices
SELECT idx, ts, ts, p * (1 + 0.001 * sin(range / 100.0)), CAST(ts AS DATE), 'deribit.index', 0, range
FROM (VALUES ('btc_usd', 65000.0), ('eth_usd', 3500.0)) i(idx, p)
CROSS JOIN range(86400),
LATERAL (SELECT TIMESTAMP '2024-03-07 08:00:00' + to_microseconds(range * 1000000) AS ts)
"""

SCAN = """
SELECT symbol, count(*), avg(mark_price) FROM market.options_ticker
WHERE date IN (DATE '2024-03-07', DATE '2024-03-08')
  AND timestamp >= TIMESTAMP '2024-03-07 08:00:00' AND timestamp <= TIMESTAMP '2024-03-08 08:00:00'
GROUP BY symbol
"""


def main() -> int:
    from derivlake.config import LakeSettings
    from derivlake.lake.catalog import open_lake
    from derivlake.reports.chain import build_chain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tick-seconds", type=int, default=10, help="ticker interval per series (venue: 10)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side (best is kept)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench_chain_"))
    try:
        settings = LakeSettings(home=home)
        con = open_lake(settings)
        t0 = time.perf_counter()
        con.execute(GEN_SERIES, [list(EXPIRY_DAYS), STRIKES])
        n_series = con.execute("SELECT count(*) FROM bench_series").fetchone()[0]
        con.execute(GEN_TICKER, [args.tick_seconds, args.tick_seconds])
        con.execute(GEN_TRADES)
        con.execute(GEN_INDEX)
        n_rows = con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0]
        gen_s = time.perf_counter() - t0
        scale = (
            "venue scale" if args.tick_seconds <= 10 else f"scaled down: a ticker every {args.tick_seconds} s"
        )
        print(f"option_series {n_series}")
        print(f"ticker_rows {n_rows} ({scale})")
        print(f"generate_seconds {gen_s:.1f}")

        scan_s, build_s = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            con.execute(SCAN).fetchall()
            scan_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = build_chain(con, D, reports_dir=settings.reports_dir)
            build_s.append(time.perf_counter() - t0)
        from derivlake.reports.completeness import REQUIRED_TOPIC_KINDS, check_completeness

        t0 = time.perf_counter()  # the gate's lake side, once per poke (a minute) while it waits
        status = check_completeness(con, D, {kind: kind for kind in REQUIRED_TOPIC_KINDS})
        gate_s = time.perf_counter() - t0
        con.close()
        assert result.series == n_series, (result.series, n_series)
        print(f"# completeness gate check: {gate_s:.3f}s ({'complete' if status.complete else 'waiting'})")
        print(f"chain_series {result.series}")
        print(f"chain_expiries {result.expiry_count}")
        print(f"chain_build_seconds {min(build_s):.3f}")
        print(f"ticker_scan_seconds {min(scan_s):.3f}")
        print(f"chain_vs_scan_ratio {min(build_s) / min(scan_s):.2f}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
