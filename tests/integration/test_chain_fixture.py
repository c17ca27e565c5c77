"""Real Deribit tickers (2021-07-22 capture): the chain's recomputed greeks agree with the exchange's."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.reports.chain import GREEK_ATOL, GREEK_NAMES, GREEK_RTOL, build_chain
from tests.conftest import subscription_data

# The capture runs at 2021-07-22 22:42 UTC: inside business day 2021-07-23 [07-22 08:00, 07-23 08:00).
D = date(2021, 7, 23)


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)


def _expiry(name: str) -> datetime:
    return datetime.strptime(name.split("-")[1], "%d%b%y").replace(hour=8)


def load(con, payloads: list[dict]) -> None:
    rows = []
    for n, d in enumerate(payloads):
        g = d["greeks"]
        name = d["instrument_name"]
        rows.append(
            (
                "deribit", name, _ms(d["timestamp"]), _ms(d["timestamp"]),
                "call" if name.endswith("-C") else "put", float(name.split("-")[2]), _expiry(name),
                d["open_interest"], d["best_bid_price"], d["bid_iv"], d["best_ask_price"], d["ask_iv"],
                d["mark_price"], d["mark_iv"], d["underlying_price"], d["index_price"],
                g["delta"], g["gamma"], g["vega"], g["theta"], g["rho"], d["state"],
                _ms(d["timestamp"]).date(), n,
            )
        )  # fmt: skip
    con.executemany(
        "INSERT INTO market.options_ticker (exchange, symbol, timestamp, local_timestamp, type, strike_price, "
        "expiration, open_interest, bid_price, bid_iv, ask_price, ask_iv, mark_price, mark_iv, underlying_price, "
        "index_price, delta, gamma, vega, theta, rho, state, date, kafka_offset) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def test_recomputed_greeks_agree_with_deribit(lake_settings: LakeSettings, fixtures_dir: Path) -> None:
    payloads = subscription_data(fixtures_dir / "deribit-ws-2021-07-22.capture", "ticker.")
    assert len(payloads) >= 10
    con = open_lake(lake_settings)
    try:
        load(con, payloads)
        result = build_chain(con, D)
    finally:
        con.close()
    chain = result.chain
    assert set(chain["symbol"]) == {d["instrument_name"] for d in payloads}
    assert len(chain) == 10
    last = {}
    for d in payloads:  # the chain takes each series' last quote at or before the snapshot
        if d["instrument_name"] not in last or d["timestamp"] >= last[d["instrument_name"]]["timestamp"]:
            last[d["instrument_name"]] = d
    for row in chain.to_dict("records"):
        exch = last[row["symbol"]]["greeks"]
        for name in GREEK_NAMES:
            tol = max(GREEK_RTOL * abs(exch[name]), GREEK_ATOL[name])
            assert row[f"calc_{name}"] == pytest.approx(exch[name], abs=tol), (row["symbol"], name)
        assert row["greeks_mismatch"] is False or row["greeks_mismatch"] == False  # noqa: E712 (pandas bool)
        if row["symbol"].startswith(("BTC", "ETH")):
            assert row["coin_delta"] == pytest.approx(exch["delta"] - last[row["symbol"]]["mark_price"])
    eth_daily = chain[chain["symbol"] == "ETH-23JUL21-2300-C"].iloc[0]
    assert bool(eth_daily["is_expiring"]), "the 23JUL21 daily expires at this business day's snapshot"
