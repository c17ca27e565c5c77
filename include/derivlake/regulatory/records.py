"""What the regulatory files hold: an RTS 22 transaction per desk execution (with a hash of its reported
content, so a changed fill is a correction) and the CFTC Part 17 records of the reportable positions."""

from __future__ import annotations

import contextlib
import logging
from datetime import date
from typing import TYPE_CHECKING

from derivlake.regulatory.settings import RegulatorySettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    import duckdb
    import pandas as pd

log = logging.getLogger(__name__)

NEW, CXL = "NEW", "CXL"
TXID_LENGTH = 52
"""RTS 22 field 2, the transaction reference number: up to 52 characters A-Z, 0-9."""
HASHED = (
    "executing_lei", "buyer_lei", "buyer_mic", "seller_lei", "seller_mic", "trade_ts", "capacity", "quantity",
    "price", "price_ccy", "venue_mic", "branch_country", "venue_trade_id", "full_name", "cfi", "expiry",
    "price_multiplier", "underlying_index", "option_type", "strike", "exercise_style",
)  # fmt: skip
"""The reported content of a transaction: a change in any of these is a correction."""


class ExportError(RuntimeError):
    """The day's files cannot be filed: the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------------
# RTS 22: transactions from fills


def rts22_transactions(fills: pd.DataFrame, settings: RegulatorySettings) -> pd.DataFrame:
    """One RTS 22 transaction per fill, column-wise. The desk account's side is its client's LEI (its own
    when unlisted), the other side the venue (an anonymous order book: its MIC). Prices are in USD: an
    inverse option's coin price x the fill's underlying price (domain.md: USD value = coin price x
    underlying_price; `usd_rate`, the index where a fill lacks it), USDC taken as USD."""
    import numpy as np
    import pandas as pd

    from derivlake.regulatory.identifiers import cfi_for

    unknown = fills[fills["kind"].isna()]
    if not unknown.empty:
        names = sorted(unknown["instrument_name"].unique())
        raise ExportError(
            f"{len(unknown)} fills of {len(names)} instruments without a spec in market.instruments "
            f"({', '.join(names[:5])}): an RTS 22 report needs each instrument's classification; drain "
            "the instruments topic, then rerun"
        )
    priced = fills["price"].notna() & (
        fills["usd_rate"].notna() | ~(fills["kind"] == "option") | ~fills["is_inverse"]
    )
    if not priced.all():
        bad = fills.loc[~priced, "trade_id"].tolist()
        raise ExportError(
            f"{len(bad)} fills without a price or, for a coin-priced option, the underlying price that makes it USD "
            f"(trade ids {', '.join(map(str, bad[:5]))}): they cannot be reported"
        )
    buy = (fills["direction"] == "buy").to_numpy()
    client = fills["account_id"].map(settings.lei_of)
    option = (fills["kind"] == "option").to_numpy()
    price = fills["price"].to_numpy(dtype=float)
    usd_price = np.where(option & fills["is_inverse"].to_numpy(dtype=bool), price * fills["usd_rate"], price)
    tx_id = (fills["account_id"] + fills["trade_id"]).str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
    # a TxId holds 52 characters: a longer one keeps its first 20 and 32 hex digits of the SHA-256 of the
    # account and trade id (cut at 52, all of an account's fills were one TxId, and the file was refused)
    tx_id = tx_id.where(tx_id.str.len() <= TXID_LENGTH, tx_id.str.slice(0, 20) + fills["id_digest"])
    pairs = fills[["kind", "option_type"]]
    # cfi_for once per (kind, option_type), a handful; a join gives each fill its code
    codes = pairs.drop_duplicates()
    codes = codes.assign(cfi=[cfi_for(k, o) for k, o in codes.itertuples(index=False)])
    cfi = pairs.merge(codes, on=["kind", "option_type"], how="left")["cfi"].to_numpy()
    otype = fills["option_type"].map({"call": "CALL", "put": "PUTO"})
    # RTS 22 field 30 counts derivative contracts: Deribit's amount is USD for inverse futures (10 per
    # contract on BTC) and coin elsewhere (0.1 SOL per SOL_USDC-PERPETUAL contract); rounded off float noise
    size = fills["contract_size"].fillna(1.0).astype(float)
    contracts = (fills["amount"].astype(float) / size).round(10)
    return pd.DataFrame(
        {
            "action": NEW,
            "tx_id": tx_id,
            "executing_lei": settings.entity_lei,
            "submitting_lei": settings.entity_lei,
            "buyer_lei": np.where(buy, client, None),
            "buyer_mic": np.where(buy, None, settings.venue_mic),
            "seller_lei": np.where(buy, None, client),
            "seller_mic": np.where(buy, settings.venue_mic, None),
            "trade_ts": fills["timestamp"],
            "capacity": "DEAL",
            "quantity": contracts,
            "price": usd_price,
            "price_ccy": "USD",
            "venue_mic": settings.venue_mic,
            "branch_country": settings.branch_country,
            "venue_trade_id": fills["trade_id"].str.replace(r"[^A-Za-z0-9]", "", regex=True),  # ESMA's type
            "isin": None,
            "full_name": fills["instrument_name"],
            "cfi": cfi,
            "notional_ccy": "USD",
            "expiry": fills["expiry"],
            "price_multiplier": size,
            "underlying_index": fills["underlying_index"],
            "option_type": otype.where(option, None),
            "strike": fills["strike"].where(option, None),
            "strike_ccy": np.where(option, "USD", None),
            "exercise_style": np.where(option, "EURO", None),
            "delivery_type": "CASH",
            "algo": settings.algo,
        }
    )


_INTEGERS = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)


def _canonical_sql(column: str, kind: str) -> str:
    """One column's canonical text in SQL, whatever type its chunk gave it: '' for NULL (None, NaN and NaT
    alike), a number as the shortest text of its double (Python's repr: 2 and 2.0 alike, DuckDB's cast
    gives the same digits), a time in ISO 8601 with its fraction only when not zero (pandas' isoformat),
    True or False, a string as it is."""
    if kind == "VARCHAR":
        text = column
    elif kind in ("DOUBLE", "FLOAT") or kind in _INTEGERS or kind.startswith("DECIMAL"):
        number = f"CAST({column} AS DOUBLE)"
        text = f"CASE WHEN NOT isnan({number}) THEN CAST({number} AS VARCHAR) END"
    elif kind == "TIMESTAMP_NS":
        fraction = (
            f"CASE WHEN epoch_ns({column}) % 1000 <> 0 THEN strftime({column}, '.%n') "
            f"WHEN epoch_ns({column}) % 1000000000 <> 0 THEN strftime({column}, '.%f') ELSE '' END"
        )
        text = f"strftime({column}, '%Y-%m-%dT%H:%M:%S') || {fraction}"
    elif kind in ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS"):
        ts = f"CAST({column} AS TIMESTAMP)"
        fraction = f"CASE WHEN epoch_us({ts}) % 1000000 <> 0 THEN strftime({ts}, '.%f') ELSE '' END"
        text = f"strftime({ts}, '%Y-%m-%dT%H:%M:%S') || {fraction}"
    elif kind == "DATE":
        text = f"CAST({column} AS VARCHAR)"
    elif kind == "BOOLEAN":
        text = f"CASE WHEN {column} THEN 'True' WHEN NOT {column} THEN 'False' END"
    else:
        raise TypeError(f"content hash: column {column} is {kind}, which has no canonical text")
    return f"coalesce({text}, '')"


def content_hash_sql(con: duckdb.DuckDBPyConnection, view: str) -> str:
    """The SQL of each row's content hash over `view`'s HASHED columns (a chunk of transactions registered
    on `con`), computed by DuckDB for the whole chunk: the SHA-256 of the columns' canonical texts joined
    by U+001F, its first 32 hex digits. The same however the day's fills were chunked, and the same as the
    hashes filed before it moved from Python to SQL (`tests/unit/test_content_hash.py`)."""
    kinds = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {view})").fetchall())
    texts = ", ".join(_canonical_sql(f'"{name}"', kinds[name]) for name in HASHED)
    return f"left(sha256(concat_ws(chr(31), {texts})), 32)"


def fill_chunks(con: duckdb.DuckDBPyConnection, sql: str, rows: int) -> Iterator[pd.DataFrame]:
    """The day's fills (rts22_fills.sql) `rows` at a time (whole DuckDB vectors of 2,048): a day of any
    size in bounded memory. Nothing else may run on `con` while this is consumed: a statement there
    ends the stream, with no error when it returns no rows (the first pass checks the count it read).

    DuckDB sorts the day within its memory limit and spills the rest, but its sort needs room on each
    thread: one that runs out of memory is retried on one thread (64 MB sorted 600,000 fills on one
    thread, not on two), and one that does not fit even then fails naming the setting to raise."""
    import duckdb

    threads, limit = con.execute(
        "SELECT current_setting('threads'), current_setting('memory_limit')"
    ).fetchone()
    vectors = max(1, rows // 2048)

    def first() -> tuple[duckdb.DuckDBPyConnection, pd.DataFrame]:
        result = con.execute(sql)
        return result, result.fetch_df_chunk(vectors)  # the sort runs here, before the first chunk

    def end_aborted() -> None:  # running out of memory can leave the query's transaction aborted
        with contextlib.suppress(duckdb.TransactionException):  # "no transaction is active"
            con.execute("ROLLBACK")

    try:
        result, chunk = first()
    except duckdb.OutOfMemoryException as exc:
        end_aborted()
        if threads == 1:
            raise _fills_out_of_memory(limit, exc) from exc
        log.warning("the day's fills do not sort in DuckDB's memory on %d threads: sorting on one", threads)
        con.execute("SET threads = 1")
        try:
            result, chunk = first()
        except duckdb.OutOfMemoryException as again:
            end_aborted()
            raise _fills_out_of_memory(limit, again) from again
        finally:  # the sort is done, and reading it needs no more room; on a cursor, as a statement on
            # `con` would end its pending result (silently: the next fetch finds no more rows)
            with con.cursor() as other:
                other.execute(f"SET threads = {int(threads)}")
    while not chunk.empty:
        yield chunk
        chunk = result.fetch_df_chunk(vectors)


def _fills_out_of_memory(limit: str, exc: Exception) -> ExportError:
    return ExportError(
        f"the day's fills do not sort within DuckDB's memory limit of {limit} even on one thread "
        f"({str(exc).splitlines()[0]}): raise DERIVLAKE_DUCKDB_MEMORY_LIMIT; nothing was filed"
    )


# ---------------------------------------------------------------------------------------------------------
# CFTC Part 17: positions


def cftc_records(positions: pd.DataFrame, as_of: date, settings: RegulatorySettings) -> list[str]:
    """The 80-character records of the reportable accounts' positions at D 08:00, one series per contract
    (`commodity`: BTC, BTC_USDC, SOL_USDC; `base`: its coin)."""
    from derivlake.regulatory.cftc17 import PositionRecord, aggregate_positions, format_record, strike_units

    rows = aggregate_positions(positions, settings.reportable_level)
    # commodity code and strike decimals: those set for the contract (BTC_USDC), else for its coin (BTC)
    base = positions.drop_duplicates("commodity").set_index("commodity")["base"]
    contracts = rows["commodity"].drop_duplicates()
    code_of = {
        c: settings.commodity_codes.get(c, settings.commodity_codes.get(base[c], base[c])) for c in contracts
    }
    decimals_of = {
        c: settings.strike_decimals.get(c, settings.strike_decimals.get(base[c], 0)) for c in contracts
    }
    by_code: dict[str, list[str]] = {}
    for contract, code in sorted(code_of.items()):  # a handful of contracts
        by_code.setdefault(code, []).append(contract)
    for code, names in by_code.items():
        if len(names) > 1:
            raise ExportError(
                f"the CFTC positions of contracts {', '.join(names)} would all be filed as commodity {code}, "
                "different contracts under one code: set a commodity code of its own for each of them "
                "(commodity_codes in DERIVLAKE_REGULATORY_CONFIG); nothing was filed"
            )
    lines = []
    for r in rows.itertuples(index=False):  # one per reportable position line, not per message
        option = r.put_call in ("C", "P")
        lines.append(
            format_record(
                PositionRecord(
                    reporting_firm=settings.cftc_firm,
                    account=settings.cftc_account(r.account_id),
                    report_date=as_of,
                    exchange=settings.cftc_exchange,
                    put_call=r.put_call if option else None,
                    commodity=code_of[r.commodity],
                    expiration=_as_date(r.expiration),
                    strike=strike_units(r.strike, decimals_of[r.commodity]) if option else None,
                    exercise_style=r.exercise_style if option else None,
                    long=int(r.long),
                    short=int(r.short),
                )
            )
        )
    return lines


def _as_date(value: object) -> date:
    """A DATE column's value as a date (DuckDB hands DATE columns to pandas as timestamps)."""
    import pandas as pd

    return pd.Timestamp(value).date()
