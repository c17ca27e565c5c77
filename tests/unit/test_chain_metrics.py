"""Per-expiry figures of the chain on tiny inputs whose answers are obvious by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from derivlake.reports.chain import BusinessDay, atm_iv, max_pain
from derivlake.reports.html import _nice_ticks


def test_business_day_window() -> None:
    from datetime import date, datetime

    day = BusinessDay(date(2024, 3, 1))  # leap year: D-1 is 29 Feb
    assert day.start == datetime(2024, 2, 29, 8)
    assert day.snapshot == datetime(2024, 3, 1, 8)
    assert day.twap_start == datetime(2024, 3, 1, 7, 30)
    lits = day.sql_literals()
    assert lits["d_prev"] == "DATE '2024-02-29'" and lits["snapshot"] == "TIMESTAMP '2024-03-01 08:00:00'"


def test_atm_iv_interpolates_at_the_forward() -> None:
    k = np.array([-0.2, -0.2, 0.1, 0.1])  # call and put of two strikes, same mark IV per strike
    iv = np.array([70.0, 70.0, 55.0, 55.0])
    assert atm_iv(k, iv) == 70 + (0.2 / 0.3) * (55 - 70)


def test_atm_iv_nearest_strike_outside_the_range() -> None:
    assert atm_iv(np.array([0.05, 0.2]), np.array([60.0, 65.0])) == 60.0
    assert math.isnan(atm_iv(np.array([np.nan]), np.array([60.0])))


def test_max_pain_minimises_holders_payoff() -> None:
    strikes = np.array([90.0, 100.0, 110.0, 90.0, 100.0, 110.0])
    calls = np.array([True, True, True, False, False, False])
    oi = np.array([100.0, 10.0, 1.0, 1.0, 10.0, 1.0])
    # settle at 90: puts pay 10*10 + 1*20 = 120; at 100: calls 1000 + puts 10 = 1010; at 110: 2000+100+...
    assert max_pain(strikes, calls, oi) == 90.0
    assert math.isnan(max_pain(strikes, calls, np.zeros(6)))


def test_nice_ticks() -> None:
    assert _nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert _nice_ticks(0.13, 0.52) == pytest.approx([0.2, 0.3, 0.4, 0.5])  # range 0.39 / 5 -> step 0.1
    assert _nice_ticks(1e4, 1e5) == [2e4, 4e4, 6e4, 8e4, 1e5]  # 18,000 -> step 20,000
