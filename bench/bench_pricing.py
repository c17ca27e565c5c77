"""Implied-volatility throughput on one core, against vollib measured in the same run.

Prints ``<name> <value>`` lines. The quotes are random but market-like: forward 1,000..120,000, strike at
0.5..2 x forward, 1 day..2 years, 5%..300% volatility, calls and puts, priced with our Black and kept only
when they carry time value (a real quote always does). The solver is timed on all of them at once (median
of ``--repeats`` runs); vollib solves a sample of the same quotes one call per quote. The process is pinned to one CPU so that the
figure is per core even if a library decided to use threads.

Run: ``PYTHONPATH=include .venv/bin/python bench/bench_pricing.py [--quotes N] [--vollib-quotes M]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from vollib.black.implied_volatility import implied_volatility_of_undiscounted_option_price

from derivlake.pricing import IVReason, black_price, greeks, implied_vol

TARGET_IVS_PER_SEC = 1_000_000


def market_like_quotes(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    chunks: list[dict[str, np.ndarray]] = []
    have = 0
    while have < n:
        m = 2 * (n - have) + 1000
        F = rng.uniform(1_000.0, 120_000.0, m)
        K = F * np.exp(rng.uniform(np.log(0.5), np.log(2.0), m))
        T = np.exp(rng.uniform(np.log(1 / 365), np.log(2.0), m))
        sigma = np.exp(rng.uniform(np.log(0.05), np.log(3.0), m))
        is_call = rng.random(m) < 0.5
        price = black_price(F, K, T, sigma, is_call)
        intrinsic = np.where(is_call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
        # Keep quotes with time value above float64 noise (down to 1e-290 of F: far below any tick size, so
        # the deep out-of-the-money tail, the slowest part of the solver, stays in the sample).
        keep = (price - intrinsic > 1e-8 * price) & (price > 1e-290 * F)
        chunks.append({"F": F, "K": K, "T": T, "sigma": sigma, "is_call": is_call, "price": price})
        chunks[-1] = {name: a[keep] for name, a in chunks[-1].items()}
        have += int(keep.sum())
    return {name: np.concatenate([c[name] for c in chunks])[:n] for name in chunks[0]}


def timed(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls (the machine may be shared; the median resists outliers)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotes", type=int, default=1_000_000)
    parser.add_argument("--vollib-quotes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    q = market_like_quotes(args.quotes, seed=2024)
    F, K, T, is_call, price, sigma = q["F"], q["K"], q["T"], q["is_call"], q["price"], q["sigma"]
    n = price.size

    implied_vol(price[:10_000], F[:10_000], K[:10_000], T[:10_000], is_call[:10_000])  # warm-up
    ours_s = timed(lambda: implied_vol(price, F, K, T, is_call), args.repeats)
    res = implied_vol(price, F, K, T, is_call)
    ok = res.reason == IVReason.OK
    ours_rate = n / ours_s

    # Accuracy of what was timed: price round trip, and volatility where the price depends on it.
    again = black_price(F[ok], K[ok], T[ok], res.iv[ok], is_call[ok])
    time_value = price - np.where(is_call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    round_trip = np.max(np.abs(again - price[ok]) / time_value[ok])
    vega = greeks(F, K, T, sigma, is_call).vega * 100
    conditioned = ok & (vega > 1e-6 * price)
    vol_err = np.max(np.abs(res.iv[conditioned] / sigma[conditioned] - 1.0))

    # vollib (Jäckel's LetsBeRational, one quote per call) on a sample of the same quotes.
    m = min(args.vollib_quotes, n)
    flags = np.where(is_call[:m], "c", "p")
    rows = list(
        zip(price[:m].tolist(), F[:m].tolist(), K[:m].tolist(), T[:m].tolist(), flags.tolist(), strict=True)
    )

    def vollib_loop() -> list[float]:
        return [implied_volatility_of_undiscounted_option_price(*row) for row in rows]

    vollib_loop()
    vollib_s = timed(vollib_loop, max(1, args.repeats // 2))
    vollib_rate = m / vollib_s
    theirs = np.array(vollib_loop())
    agree = np.max(np.abs(res.iv[:m][conditioned[:m]] - theirs[conditioned[:m]]) / theirs[conditioned[:m]])

    print(f"iv_solver_quotes {n}")
    print(f"iv_solver_seconds {ours_s:.4f}")
    print(f"iv_solver_ivs_per_sec {ours_rate:.0f}")
    print(f"iv_solver_solved_fraction {ok.mean():.6f}")
    print(f"iv_solver_max_round_trip_rel_err {round_trip:.3e}")
    print(f"iv_solver_max_vol_rel_err {vol_err:.3e}")
    print(f"vollib_quotes {m}")
    print(f"vollib_ivs_per_sec {vollib_rate:.0f}")
    print(f"iv_solver_vs_vollib_max_rel_diff {agree:.3e}")
    print(f"iv_solver_vs_vollib_ratio {ours_rate / vollib_rate:.1f}")
    print(f"iv_solver_target_ivs_per_sec {TARGET_IVS_PER_SEC}")
    print(f"iv_solver_target_met {int(ours_rate >= TARGET_IVS_PER_SEC)}")


if __name__ == "__main__":
    main()
