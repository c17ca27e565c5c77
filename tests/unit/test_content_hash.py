"""The content hash of an RTS 22 transaction, computed by DuckDB for a whole chunk, against the Python
implementation that filed hashes before it (kept here as the oracle): a filing log written by either
must read the same, or every transaction of a filed day would be cancelled and filed again."""

from __future__ import annotations

import hashlib
import random
import struct
from datetime import date, datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from derivlake.regulatory.records import HASHED, content_hash_sql


def _canonical(value: object) -> str:
    """One value's text whatever the dtype its chunk gave it (None, NaN and NaT alike; 2 and 2.0 alike)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def oracle_hashes(tx: pd.DataFrame) -> list[str]:
    text = tx[list(HASHED)].apply(lambda col: col.map(_canonical)).agg("\x1f".join, axis=1)
    return [hashlib.sha256(t.encode()).hexdigest()[:32] for t in text]


def sql_hashes(tx: pd.DataFrame) -> list[str]:
    with duckdb.connect() as con:
        con.register("chunk", tx)
        return [h for (h,) in con.execute(f"SELECT {content_hash_sql(con, 'chunk')} FROM chunk").fetchall()]


def _floats(rng: random.Random, n: int) -> list[float]:
    """Prices, integers, tiny and huge magnitudes, -0.0, and random bit patterns (NaN and inf left out:
    a NaN is a missing value, as in the oracle)."""
    special = [0.0, -0.0, 0.1, 2.0, 1e16, 1e15, 1e-4, 1e-5, 5e-324, 1.7976931348623157e308, 3282.5, 151.0]
    values = [*special, *(rng.uniform(-1e6, 1e6) for _ in range(n)), *(float(i) for i in range(-50, 50))]
    for _ in range(n):
        x = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if x == x and abs(x) != float("inf"):
            values.append(x)
    return values


def test_every_kind_of_value_hashes_as_the_oracle_does() -> None:
    rng = random.Random(20261203)
    floats = _floats(rng, 3000)
    n = len(floats)
    stamps = [
        datetime(2024, 3, 7, 9, 0, 0),
        datetime(2024, 3, 7, 9, 0, 0, 100000),
        datetime(1969, 12, 31, 23, 59, 59, 1),
    ]
    frame = pd.DataFrame(
        {
            "executing_lei": ["9845000DERIVLAKE0034"] * n,
            "buyer_lei": [None if i % 3 else "LEI" for i in range(n)],  # None in an object column
            "buyer_mic": pd.Series([np.nan if i % 2 else "XOFF" for i in range(n)], dtype=object),  # NaN too
            "seller_lei": ["" if i % 5 == 0 else "ünïcode-ß" for i in range(n)],
            "seller_mic": [None] * n,  # no value at all: DuckDB types it as it likes
            "trade_ts": pd.to_datetime([stamps[i % 3] if i % 7 else None for i in range(n)]),  # NaT
            "capacity": ["DEAL"] * n,
            "quantity": floats,
            "price": [f if i % 4 else np.nan for i, f in enumerate(floats)],
            "price_ccy": ["USD"] * n,
            "venue_mic": ["XOFF"] * n,
            "branch_country": ["NL"] * n,
            "venue_trade_id": [str(i) for i in range(n)],
            "full_name": ["BTC-15MAR24-65000-C"] * n,
            "cfi": ["OCEMCS"] * n,
            "expiry": pd.to_datetime([date(2024, 3, 29) if i % 2 else None for i in range(n)]),
            "price_multiplier": np.arange(n, dtype=np.int64),  # integers: 2 hashes as 2.0
            "underlying_index": pd.Series(["btc_usd"] * n, dtype="string"),
            "option_type": [True if i % 3 == 0 else False if i % 3 == 1 else None for i in range(n)],
            "strike": pd.Series([float(i) if i % 2 else None for i in range(n)], dtype="float32"),
            "exercise_style": [date(2024, 1, 2) if i % 2 else None for i in range(n)],  # dates as objects
        }
    )
    assert sql_hashes(frame) == oracle_hashes(frame)


def test_nanoseconds_hash_as_the_oracle_does() -> None:
    frame = pd.DataFrame({c: ["x", "y", "z"] for c in HASHED})
    stamps = ["2024-03-07 09:00:00.123456789", "2024-03-07 09:00:00.5", "2024-03-07 00:00:00"]
    frame["trade_ts"] = pd.Series([pd.Timestamp(t) for t in stamps], dtype="datetime64[ns]")
    assert frame["trade_ts"].dtype == "datetime64[ns]"
    assert sql_hashes(frame) == oracle_hashes(frame)


def test_a_type_without_a_canonical_text_is_refused() -> None:
    frame = pd.DataFrame({c: ["x"] for c in HASHED})
    frame["quantity"] = [b"\x00"]
    with pytest.raises(TypeError, match=r'content hash: column "quantity" is BLOB'):
        sql_hashes(frame)
