"""Deterministic simulator of a Deribit-like venue plus a small trading desk.

Why: the lake, the reports and the margin engine need days of realistic, exchange-shaped data with known
answers (the smile that generated the marks, the TWAP that is the delivery price, the faults injected).
The market moves in fixed time steps; per step everything numeric is computed with numpy for all
instruments that tick, and the per-message Python work is building a dict and serialising it.
Same seed and window -> byte-identical messages (keys, values, headers, order); wall-clock time is only
used to pace `--realtime`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from derivlake.config import KafkaSettings
from derivlake.feed.calendar import ListingPolicy, future_name, listed_expiries, option_name
from derivlake.feed.market import MARKETS, YEAR_S, MarketSpec, index_path, price_and_greeks, smile_vol
from derivlake.feed.producer import Delivered, Sink

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
EXPIRY_MS = 8 * 3_600_000
TWAP_START_MS = EXPIRY_MS - 30 * 60_000
PERPETUAL_EXPIRY_MS = 32503708800000  # what Deribit reports for perpetuals (year 3000)

BAD_KINDS = ("bad_json", "wrong_type", "missing_field", "unknown_instrument")
FAULT_KINDS = (*BAD_KINDS, "duplicate", "late", "gap")

# fields dropped for `missing_field` faults, per topic: the ones a normalizer cannot do without
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "deribit.ticker": ("timestamp", "instrument_name", "mark_price"),
    "deribit.book": ("timestamp", "instrument_name", "change_id"),
    "deribit.trades": ("timestamp", "instrument_name", "price", "trade_id"),
    "deribit.index": ("timestamp", "index_name", "price"),
}
WRONG_TYPES: dict[str, tuple[tuple[str, object], ...]] = {
    "deribit.ticker": (("mark_price", "abc"), ("timestamp", "soon")),
    "deribit.book": (("change_id", "abc"), ("timestamp", "soon")),
    "deribit.trades": (("price", "abc"), ("timestamp", "soon"), ("amount", "lots")),
    "deribit.index": (("price", "abc"), ("timestamp", "soon")),
}
UNKNOWN_INSTRUMENTS = (
    "XYZ-31DEC99-100-C",
    "BTC-FOO",
    "DOGE2-1JAN25",
    "BTC-32JAN25-1000-C",
    "FOO_USDC-PERPETUAL",
)


@dataclass(frozen=True)
class ScaleSpec:
    """Size of the simulated venue."""

    step_s: int  # one market step; index ticks every step
    ticker_interval_s: int  # every instrument ticks (book change + ticker) once per interval
    snapshot_interval_s: int  # a book re-snapshot after at most this long
    listing: ListingPolicy
    strikes: int  # per expiry, half below and half above the forward (calls and puts on each)
    book_levels: int
    trade_rate: float  # public trades per simulated second, whole venue


SCALES: dict[str, ScaleSpec] = {
    "small": ScaleSpec(10, 60, 900, ListingPolicy(2, 1, 1, 1), 10, 5, 0.05),
    "venue": ScaleSpec(1, 10, 600, ListingPolicy(4, 3, 3, 4), 36, 8, 3.0),
}


@dataclass(frozen=True)
class Account:
    account_id: str
    maker: bool  # market makers add liquidity (M); directional traders take it (T)
    deposits: tuple[tuple[str, float], ...]


ACCOUNTS: tuple[Account, ...] = (
    Account("mm-alpha", True, (("BTC", 100.0), ("ETH", 1500.0), ("USDC", 2_000_000.0))),
    Account("mm-beta", True, (("BTC", 60.0), ("ETH", 800.0), ("USDC", 1_000_000.0))),
    Account("dir-gamma", False, (("BTC", 10.0), ("ETH", 100.0), ("USDC", 250_000.0))),
    Account("dir-delta", False, (("BTC", 5.0), ("USDC", 100_000.0))),
)
DESK_SHARE = 0.35  # fraction of public trades where one desk account is a party


@dataclass(frozen=True)
class SimulatorConfig:
    """One simulation run. `end=None` runs forever (realtime mode)."""

    seed: int
    start: datetime
    end: datetime | None
    scale: str = "small"
    realtime: bool = False
    bad_rate: float = 0.0
    dup_rate: float = 0.0
    late_rate: float = 0.0
    gap_rate: float = 0.0
    trade_rate: float | None = None  # public trades per simulated second; None = the scale's default

    @property
    def scale_spec(self) -> ScaleSpec:
        return SCALES[self.scale]


@dataclass
class FeedStats:
    """What a feed produced: counts per topic kind, faults injected and where each faulty message landed."""

    messages: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    faulty: list[Delivered] = field(default_factory=list)  # (topic, partition, offset, fault kind)
    gaps: list[tuple[str, int]] = field(default_factory=list)  # (instrument, change_id never sent)
    delivery_prices: dict[tuple[str, int], float] = field(default_factory=dict)  # (index, expiry ms)
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.messages.values())


@dataclass(frozen=True)
class FeedMessage:
    kind: str  # topic kind of architecture.md section 3
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    fault: str | None = None
    step_ms: int = 0  # simulated time of the step that produced it (pacing)


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class _Inst:
    serial: int
    name: str
    mi: int  # index into MARKETS
    kind: str  # option | future | perpetual
    expiry_ms: int
    strike: float
    is_call: bool
    tick: float
    min_amount: float
    created_ms: int
    period: str
    change_id: int
    bids: dict[int, float] = field(default_factory=dict)  # price in ticks -> amount
    asks: dict[int, float] = field(default_factory=dict)
    last_snapshot_ms: int = 0
    trade_seq: int = 0
    last_trade: float | None = None
    tick_direction: int = 0
    volume: float = 0.0
    high: float | None = None
    low: float | None = None
    first_trade: float | None = None
    open_interest: float = 0.0
    settlement: float = 0.0
    mark: float = 0.0
    mark_iv: float = 0.0
    F: float = 0.0
    vega: float = 0.0
    index: float = 0.0
    underlying_index: str = "index_price"


class Simulator:
    """Generates the messages of a run in time order; `stats` fills as messages are generated."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.scale = config.scale_spec
        self.stats = FeedStats()
        self.rng = np.random.default_rng(config.seed)
        self.rnd = random.Random(config.seed)  # per-message market draws (cheap scalars)
        self.latency = random.Random(config.seed ^ 0x5EED)
        self.faults = random.Random(config.seed ^ 0xFA17)  # own stream: faults never change clean data
        self.step_ms = self.scale.step_s * 1000
        self.n_phases = max(1, self.scale.ticker_interval_s // self.scale.step_s)
        self.trade_rate = config.trade_rate if config.trade_rate is not None else self.scale.trade_rate
        self.insts: list[_Inst] = []
        self.serial = 0
        self.trade_id = 0
        self.order_id = 0
        self.transfer_id = 0
        self.spot = np.array([m.spot0 for m in MARKETS])
        self.premium = np.zeros(len(MARKETS))
        self.twap_sum = np.zeros(len(MARKETS))
        self.twap_n = np.zeros(len(MARKETS))
        self._block: np.ndarray | None = None
        self._block_pos = 0
        self._arrays_dirty = True
        self._fault_active = any((config.bad_rate, config.dup_rate, config.late_rate, config.gap_rate))

    # --- message plumbing ------------------------------------------------------------------------

    def _msg(self, kind: str, key: str, obj: dict, channel: str, ts_ms: int, step_ms: int) -> FeedMessage:
        received_us = ts_ms * 1000 + 300 + int(self.latency.random() * 4000)
        headers = [
            ("source", b"simulator"),
            ("channel", channel.encode()),
            ("received_at", b"%d" % received_us),
        ]
        return FeedMessage(kind, key.encode(), _dumps(obj), headers, None, step_ms)

    def _emit(
        self, kind: str, key: str, obj: dict, channel: str, ts_ms: int, step_ms: int
    ) -> list[FeedMessage]:
        """One message plus the faults it may attract (extra copies; the clean stream stays intact)."""
        msg = self._msg(kind, key, obj, channel, ts_ms, step_ms)
        if not self._fault_active or kind not in REQUIRED_FIELDS:
            return [msg]
        out = [msg]
        cfg, rnd = self.config, self.faults
        if cfg.dup_rate and kind in ("deribit.trades", "deribit.book") and rnd.random() < cfg.dup_rate:
            out.append(FeedMessage(kind, msg.key, msg.value, msg.headers, "duplicate", step_ms))
        if cfg.bad_rate and rnd.random() < cfg.bad_rate:
            fault = BAD_KINDS[rnd.randrange(3 if kind == "deribit.index" else 4)]
            out.append(self._corrupt(msg, obj, fault))
        return out

    def _corrupt(self, msg: FeedMessage, obj: dict, fault: str) -> FeedMessage:
        rnd, key = self.faults, msg.key
        if fault == "bad_json":
            value = msg.value[: max(1, rnd.randrange(1, len(msg.value) - 1))]
        elif fault == "wrong_type":
            name, bad = rnd.choice(WRONG_TYPES[msg.kind])
            value = _dumps({**obj, name: bad})
        elif fault == "missing_field":
            drop = rnd.choice(REQUIRED_FIELDS[msg.kind])
            value = _dumps({k: v for k, v in obj.items() if k != drop})
        else:
            bad_name = rnd.choice(UNKNOWN_INSTRUMENTS)
            value, key = _dumps({**obj, "instrument_name": bad_name}), bad_name.encode()
        return FeedMessage(msg.kind, key, value, msg.headers, fault, msg.step_ms)

    def _late(self, obj: dict, ts_ms: int) -> bool:
        """Maybe move an event hours back, into the previous UTC date (it arrives late)."""
        cfg = self.config
        if cfg.late_rate and self.faults.random() < cfg.late_rate:
            obj["timestamp"] = ts_ms - ts_ms % DAY_MS - self.faults.randrange(3_600_000, 4 * 3_600_000)
            return True
        return False

    # --- instruments -----------------------------------------------------------------------------

    def _instrument_obj(self, inst: _Inst) -> dict:
        spec = MARKETS[inst.mi]
        settle = "USDC" if spec.linear else spec.base
        if inst.kind == "option":
            return {
                "tick_size": inst.tick,
                "taker_commission": 0.0003,
                "strike": inst.strike,
                "settlement_period": inst.period,
                "settlement_currency": settle,
                "rfq": False,
                "quote_currency": settle,
                "price_index": spec.index_name,
                "option_type": "call" if inst.is_call else "put",
                "min_trade_amount": inst.min_amount,
                "maker_commission": 0.0003,
                "kind": "option",
                "is_active": True,
                "instrument_name": inst.name,
                "instrument_id": zlib.crc32(inst.name.encode()) & 0x3FFFFFFF,
                "expiration_timestamp": inst.expiry_ms,
                "creation_timestamp": inst.created_ms,
                "counter_currency": "USDC" if spec.linear else "USD",
                "contract_size": 1.0,
                "block_trade_commission": 0.0003,
                "base_currency": spec.base,
            }
        return {
            "tick_size": inst.tick,
            "taker_commission": 0.0005,
            "settlement_period": inst.period,
            "settlement_currency": settle,
            "rfq": False,
            "quote_currency": "USDC" if spec.linear else "USD",
            "price_index": spec.index_name,
            "min_trade_amount": inst.min_amount,
            "max_liquidation_commission": 0.0075,
            "max_leverage": 50 if spec.linear else 100,
            "maker_commission": 0.0 if spec.linear else -0.0001,
            "kind": "future",
            "is_active": True,
            "instrument_name": inst.name,
            "instrument_id": zlib.crc32(inst.name.encode()) & 0x3FFFFFFF,
            "future_type": "linear" if spec.linear else "reversed",
            "expiration_timestamp": inst.expiry_ms,
            "creation_timestamp": inst.created_ms,
            "counter_currency": "USDC" if spec.linear else "USD",
            "contract_size": spec.future_contract if not spec.linear else 1.0,
            "block_trade_commission": 0.0001,
            "base_currency": spec.base,
        }

    def _new_inst(
        self,
        mi: int,
        kind: str,
        name: str,
        expiry_ms: int,
        strike: float,
        is_call: bool,
        created_ms: int,
        period: str,
    ) -> _Inst:
        spec = MARKETS[mi]
        self.serial += 1
        tick = spec.option_tick if kind == "option" else spec.future_tick
        amount = spec.option_min_amount if kind == "option" else 1.0 if spec.linear else spec.future_contract
        return _Inst(
            self.serial,
            name,
            mi,
            kind,
            expiry_ms,
            strike,
            is_call,
            tick,
            amount,
            created_ms,
            period,
            change_id=10_000_000_000 + self.serial * 1_000_000,
        )

    def _strikes(self, spec: MarketSpec, fwd: float, t_years: float) -> list[float]:
        """`strikes` grid points around the forward, spaced by about a quarter standard deviation."""
        n = self.scale.strikes
        width = max(spec.strike_step, fwd * spec.atm_vol * math.sqrt(max(t_years, 1 / 365)) / 4)
        step = spec.strike_step * max(1, round(width / spec.strike_step))
        centre = round(fwd / step) * step
        return [centre + (i - n // 2) * step for i in range(n) if centre + (i - n // 2) * step > 0]

    def _roll(self, t_ms: int, first: bool) -> list[_Inst]:
        """08:00 UTC: expire today's series, list new ones. Returns the newly listed instruments."""
        now = datetime.fromtimestamp(t_ms / 1000, UTC)
        existing = {i.name for i in self.insts}
        self.insts = [i for i in self.insts if i.expiry_ms > t_ms]
        new: list[_Inst] = []
        for mi, spec in enumerate(MARKETS):
            name = f"{spec.market}-PERPETUAL"
            if name not in existing:
                new.append(
                    self._new_inst(mi, "perpetual", name, PERPETUAL_EXPIRY_MS, 0.0, False, t_ms, "perpetual")
                )
            for expiry in listed_expiries(now, self.scale.listing):
                exp_ms = _ms(expiry)
                t_years = (exp_ms - t_ms) / 1000 / YEAR_S
                from derivlake.feed.calendar import settlement_period

                period = settlement_period(expiry.date())
                if spec.has_futures and period == "month":
                    fname = future_name(spec.market, expiry)
                    if fname not in existing:
                        new.append(self._new_inst(mi, "future", fname, exp_ms, 0.0, False, t_ms, period))
                if any(i.mi == mi and i.kind == "option" and i.expiry_ms == exp_ms for i in self.insts):
                    continue  # the series is listed; strikes are fixed at listing
                fwd = float(self.spot[mi] * math.exp(spec.basis * t_years))
                for strike in self._strikes(spec, fwd, t_years):
                    for is_call in (True, False):
                        oname = option_name(spec.market, expiry, strike, is_call)
                        new.append(self._new_inst(mi, "option", oname, exp_ms, strike, is_call, t_ms, period))
        futures = {(i.mi, i.expiry_ms): i.name for i in [*self.insts, *new] if i.kind == "future"}
        for inst in new:
            if inst.kind == "option":
                inst.underlying_index = futures.get(
                    (inst.mi, inst.expiry_ms),
                    f"SYN.{future_name(MARKETS[inst.mi].market, datetime.fromtimestamp(inst.expiry_ms / 1000, UTC))}",
                )
        self.insts.extend(new)
        self._arrays_dirty = True
        return new

    def _arrays(self) -> None:
        insts = self.insts
        self.a_mi = np.array([i.mi for i in insts], dtype=np.int64)
        self.a_exp = np.array([i.expiry_ms for i in insts], dtype=np.float64)
        self.a_k = np.array([i.strike if i.kind == "option" else 1.0 for i in insts])
        self.a_call = np.array([i.is_call for i in insts], dtype=bool)
        self.a_opt = np.array([i.kind == "option" for i in insts], dtype=bool)
        self.a_perp = np.array([i.kind == "perpetual" for i in insts], dtype=bool)
        self.a_tick = np.array([i.tick for i in insts])
        self.a_min = np.array([i.min_amount for i in insts])
        self.a_linear = np.array([MARKETS[i.mi].linear for i in insts], dtype=bool)
        self.a_phase = np.array([i.serial % self.n_phases for i in insts], dtype=np.int64)
        self._arrays_dirty = False

    # --- market step -----------------------------------------------------------------------------

    def _next_spot(self) -> None:
        block = 2048
        if self._block is None or self._block_pos >= block:
            paths = [
                index_path(self.rng, spec, float(self.spot[mi]), block, self.scale.step_s)
                for mi, spec in enumerate(MARKETS)
            ]
            prem = self.rng.standard_normal((block, len(MARKETS))) * 0.00005
            self._block = np.column_stack([np.stack(paths, axis=1), prem])
            self._block_pos = 0
        row = self._block[self._block_pos]
        self._block_pos += 1
        self.spot = row[: len(MARKETS)].copy()
        self.premium = np.clip(self.premium * 0.995 + row[len(MARKETS) :], -0.003, 0.003)

    def _price(self, idx: np.ndarray, t_ms: int) -> dict[str, np.ndarray]:
        """Marks, vols and greeks of instruments `idx` at `t_ms`, vectorised."""
        mi = self.a_mi[idx]
        spot = self.spot[mi]
        basis = np.array([m.basis for m in MARKETS])[mi]
        T = np.maximum((self.a_exp[idx] - t_ms) / 1000.0 / YEAR_S, 1e-7)
        perp = self.a_perp[idx]
        F = np.where(perp, spot * (1 + self.premium[mi]), spot * np.exp(basis * np.where(perp, 0.0, T)))
        opt = self.a_opt[idx]
        K = np.where(opt, self.a_k[idx], F)
        sigma = np.empty(len(idx))
        for m, spec in enumerate(MARKETS):
            sel = mi == m
            if sel.any():
                sigma[sel] = smile_vol(spec, np.log(K[sel] / F[sel]), T[sel])
        price, delta, gamma, vega, theta, rho = price_and_greeks(F, K, T, sigma, self.a_call[idx])
        linear = self.a_linear[idx]
        mark = np.where(opt, np.where(linear, price, price / F), F)
        return {
            "F": F,
            "T": T,
            "sigma": sigma,
            "mark": mark,
            "usd": price,
            "delta": delta,
            "gamma": gamma,
            "vega": vega,
            "theta": theta,
            "rho": rho,
            "spot": spot,
        }

    def _target_books(self, idx: np.ndarray, mark: np.ndarray) -> tuple[np.ndarray, ...]:
        tick = self.a_tick[idx]
        opt = self.a_opt[idx]
        half = np.where(opt, np.maximum(mark * 0.03, tick), tick * (1 + self.rng.integers(0, 3, len(idx))))
        bb = np.floor((mark - half) / tick + 1e-9).astype(np.int64)
        ba = np.maximum(np.ceil((mark + half) / tick - 1e-9).astype(np.int64), bb + 1)
        L = self.scale.book_levels
        gaps = 1 + self.rng.integers(0, 2, (len(idx), 2, L))
        gaps[:, :, 0] = 0
        offs = np.cumsum(gaps, axis=2)
        amounts = np.ceil(self.rng.lognormal(1.5, 1.0, (len(idx), 2, L)))
        keep = self.rng.random((len(idx), 2, L)) < 0.7
        return bb, ba, offs, amounts, keep

    def _book_update(
        self, inst: _Inst, bb: int, ba: int, offs: np.ndarray, amounts: np.ndarray, keep: np.ndarray
    ) -> tuple[list, list]:
        """Move the book to its new target; return the change lists (Deribit `[action, price, amount]`)."""
        unit = inst.min_amount
        sides = []
        for s, (book, best, sign) in enumerate(((inst.bids, bb, -1), (inst.asks, ba, 1))):
            target: dict[int, float] = {}
            for lvl in range(len(offs[s])):
                p = best + sign * int(offs[s][lvl])
                if p < 1:
                    break
                old = book.get(p)
                target[p] = (
                    old if (old is not None and keep[s][lvl]) else round(float(amounts[s][lvl]) * unit, 6)
                )
            changes = []
            tick = inst.tick
            for p in sorted(book.keys() - target.keys(), reverse=sign < 0):
                changes.append(["delete", round(p * tick, 8), 0.0])
            for p in sorted(target, reverse=sign < 0):
                if p not in book:
                    changes.append(["new", round(p * tick, 8), target[p]])
                elif book[p] != target[p]:
                    changes.append(["change", round(p * tick, 8), target[p]])
            book.clear()
            book.update(target)
            sides.append(changes)
        return sides[0], sides[1]

    @staticmethod
    def _levels(book: dict[int, float], tick: float, bids: bool) -> list:
        return [["new", round(p * tick, 8), a] for p, a in sorted(book.items(), reverse=bids)]

    def _snapshot(self, inst: _Inst, ts: int) -> dict:
        inst.last_snapshot_ms = ts
        return {
            "type": "snapshot",
            "timestamp": ts,
            "instrument_name": inst.name,
            "change_id": inst.change_id,
            "bids": self._levels(inst.bids, inst.tick, True),
            "asks": self._levels(inst.asks, inst.tick, False),
        }

    def _ticker(self, inst: _Inst, ts: int, p: dict[str, list], j: int, est_delivery: float) -> dict:
        spec = MARKETS[inst.mi]
        tick = inst.tick
        bid = max(inst.bids) if inst.bids else None
        ask = min(inst.asks) if inst.asks else None
        bid_px = round(bid * tick, 8) if bid is not None else 0.0
        ask_px = round(ask * tick, 8) if ask is not None else 0.0
        stats = {
            "volume": round(inst.volume, 4) if inst.trade_seq else None,
            "price_change": (
                round((inst.last_trade / inst.first_trade - 1) * 100, 4) if inst.first_trade else None
            ),
            "low": inst.low,
            "high": inst.high,
        }
        mark = inst.mark
        dp = 2 if spec.base in ("BTC", "ETH") else 4
        index = round(float(p["spot"][j]), dp)
        if inst.kind == "option":

            def iv_at(px: float) -> float:
                if not px:
                    return 0.0
                usd = px * (1.0 if spec.linear else inst.F)
                return round(
                    min(500.0, max(1.0, inst.mark_iv + (usd - p["usd"][j]) / max(inst.vega, 1e-9))), 2
                )

            low = max(tick, round(mark * 0.5 / tick) * tick)
            return {
                "underlying_price": round(inst.F, dp),
                "underlying_index": inst.underlying_index,
                "timestamp": ts,
                "stats": stats,
                "state": "open",
                "settlement_price": round(inst.settlement, 8),
                "open_interest": round(inst.open_interest, 4),
                "min_price": round(low, 8),
                "max_price": round(mark * 1.5 / tick * tick + 10 * tick, 8),
                "mark_price": round(mark, 8),
                "mark_iv": inst.mark_iv,
                "last_price": inst.last_trade,
                "interest_rate": 0.0,
                "instrument_name": inst.name,
                "index_price": index,
                "greeks": {
                    "vega": p["vega"][j],
                    "theta": p["theta"][j],
                    "rho": p["rho"][j],
                    "gamma": p["gamma"][j],
                    "delta": p["delta"][j],
                },
                "estimated_delivery_price": est_delivery,
                "bid_iv": iv_at(bid_px),
                "best_bid_price": bid_px,
                "best_bid_amount": inst.bids.get(bid, 0.0) if bid else 0.0,
                "best_ask_price": ask_px,
                "best_ask_amount": inst.asks.get(ask, 0.0) if ask else 0.0,
                "ask_iv": iv_at(ask_px),
            }
        stats["volume_usd"] = (
            round(inst.volume * (1.0 if not spec.linear else mark), 2) if inst.trade_seq else None
        )
        out = {
            "timestamp": ts,
            "stats": stats,
            "state": "open",
            "settlement_price": round(inst.settlement, 4),
            "open_interest": round(inst.open_interest, 4),
            "min_price": round(mark * 0.975 / tick) * tick,
            "max_price": round(mark * 1.025 / tick) * tick,
            "mark_price": round(mark, 4),
            "last_price": inst.last_trade,
            "instrument_name": inst.name,
            "index_price": index,
            "estimated_delivery_price": est_delivery,
            "best_bid_price": bid_px,
            "best_bid_amount": inst.bids.get(bid, 0.0) if bid else 0.0,
            "best_ask_price": ask_px,
            "best_ask_amount": inst.asks.get(ask, 0.0) if ask else 0.0,
        }
        out["min_price"] = round(out["min_price"], 8)
        out["max_price"] = round(out["max_price"], 8)
        if inst.kind == "perpetual":
            prem = (mark - float(p["spot"][j])) / float(p["spot"][j])
            out["current_funding"] = round(prem, 8)
            out["funding_8h"] = round(max(-0.005, min(0.005, prem / 3)), 8)
            out["interest_value"] = round(prem * 1e-4, 12)
        return out

    def _delivery_estimate(self, inst: _Inst, t_ms: int, index: float) -> float:
        if (
            inst.expiry_ms - DAY_MS < t_ms < inst.expiry_ms
            and t_ms % DAY_MS >= TWAP_START_MS
            and self.twap_n[inst.mi]
        ):
            dp = 2 if MARKETS[inst.mi].base in ("BTC", "ETH") else 4
            return round(float(self.twap_sum[inst.mi] / self.twap_n[inst.mi]), dp)
        return index

    def _tick_instruments(self, idx: np.ndarray, t_ms: int, snapshot_all: bool) -> list[FeedMessage]:
        """Book change (or snapshot) then ticker for each instrument in `idx`."""
        out: list[FeedMessage] = []
        if len(idx) == 0:
            return out
        p = self._price(idx, t_ms)
        bb, ba, offs, amounts, keep = self._target_books(idx, p["mark"])
        rnd = {k: np.round(p[k], 5).tolist() for k in ("delta", "gamma", "vega", "theta", "rho")}
        pl = {"spot": p["spot"].tolist(), "usd": p["usd"].tolist(), **rnd}
        marks, Fs, sig, vegas = p["mark"].tolist(), p["F"].tolist(), p["sigma"].tolist(), p["vega"].tolist()
        bbl, bal = bb.tolist(), ba.tolist()
        cfg = self.config
        snap_ms = self.scale.snapshot_interval_s * 1000
        for j, i in enumerate(idx.tolist()):
            inst = self.insts[i]
            ts = t_ms + 1 + j
            inst.mark, inst.F, inst.vega = marks[j], Fs[j], vegas[j]
            inst.mark_iv = round(sig[j] * 100, 2)
            inst.index = pl["spot"][j]
            bids, asks = self._book_update(inst, bbl[j], bal[j], offs[j], amounts[j], keep[j])
            channel = f"book.{inst.name}.100ms"
            if snapshot_all:
                inst.change_id += 1
                out += self._emit("deribit.book", inst.name, self._snapshot(inst, ts), channel, ts, t_ms)
            elif bids or asks:
                prev = inst.change_id
                inst.change_id += 1
                change = {
                    "type": "change",
                    "timestamp": ts,
                    "prev_change_id": prev,
                    "instrument_name": inst.name,
                    "change_id": inst.change_id,
                    "bids": bids,
                    "asks": asks,
                }
                if cfg.gap_rate and self.faults.random() < cfg.gap_rate:
                    self.stats.faults["gap"] += 1
                    self.stats.gaps.append((inst.name, inst.change_id))
                else:
                    out += self._emit("deribit.book", inst.name, change, channel, ts, t_ms)
                if ts - inst.last_snapshot_ms >= snap_ms:
                    out += self._emit("deribit.book", inst.name, self._snapshot(inst, ts), channel, ts, t_ms)
            index = round(pl["spot"][j], 2 if MARKETS[inst.mi].base in ("BTC", "ETH") else 4)
            ticker = self._ticker(inst, ts, pl, j, self._delivery_estimate(inst, t_ms, index))
            late = self._late(ticker, ts) if cfg.late_rate else False
            msgs = self._emit("deribit.ticker", inst.name, ticker, f"ticker.{inst.name}.100ms", ts, t_ms)
            if late:
                msgs[0] = FeedMessage(msgs[0].kind, msgs[0].key, msgs[0].value, msgs[0].headers, "late", t_ms)
            out += msgs
        return out

    # --- trades and desk -------------------------------------------------------------------------

    def _trades(self, t_ms: int, first_ts: int) -> list[FeedMessage]:
        n = int(self.rng.poisson(self.trade_rate * self.scale.step_s))
        if n == 0 or not self.insts:
            return []
        span = max(1, self.step_ms - (first_ts - t_ms) - 1)
        offsets = np.sort(self.rng.integers(0, span, n)).tolist()
        which = self.rng.integers(0, len(self.insts), n).tolist()
        sizes = self.rng.integers(1, 20, n).tolist()
        out: list[FeedMessage] = []
        rnd = self.rnd
        for off, i, size in zip(offsets, which, sizes, strict=True):
            inst = self.insts[i]
            if not inst.bids and not inst.asks:
                continue
            spec = MARKETS[inst.mi]
            buy = (rnd.random() < 0.5 or not inst.bids) and bool(inst.asks)
            price = round((min(inst.asks) if buy else max(inst.bids)) * inst.tick, 8)
            amount = round(size * inst.min_amount, 6)
            ts = first_ts + off
            prev = inst.last_trade
            if prev is None or price == prev:
                inst.tick_direction = 1 if inst.tick_direction in (0, 1) else 3
            else:
                inst.tick_direction = 0 if price > prev else 2
            inst.trade_seq += 1
            inst.last_trade = price
            inst.first_trade = inst.first_trade or price
            inst.high = price if inst.high is None else max(inst.high, price)
            inst.low = price if inst.low is None else min(inst.low, price)
            inst.volume += amount
            inst.open_interest += amount * 0.5
            self.trade_id += 1
            dp = 2 if spec.base in ("BTC", "ETH") else 4
            trade = {
                "trade_seq": inst.trade_seq,
                "trade_id": str(100_000_000 + self.trade_id),
                "timestamp": ts,
                "tick_direction": inst.tick_direction,
                "price": price,
                "mark_price": round(inst.mark, 8 if inst.kind == "option" else 4),
                "instrument_name": inst.name,
                "index_price": round(inst.index, dp),
                "direction": "buy" if buy else "sell",
                "amount": amount,
            }
            if inst.kind == "option":
                usd = price * (1.0 if spec.linear else inst.F)
                mark_usd = inst.mark * (1.0 if spec.linear else inst.F)
                trade["iv"] = round(
                    min(500.0, max(1.0, inst.mark_iv + (usd - mark_usd) / max(inst.vega, 1e-9))), 2
                )
            roll = rnd.random()
            if inst.kind != "option" and roll < 0.02:
                trade["liquidation"] = "T" if buy else "M"
            elif roll > 0.99:
                trade["block_trade_id"] = str(50_000 + self.trade_id)
            desk = rnd.random() < DESK_SHARE
            late = (not desk) and self.config.late_rate and self._late(trade, ts)
            channel = f"trades.{inst.name}.100ms"
            msgs = self._emit("deribit.trades", inst.name, trade, channel, ts, t_ms)
            if late:
                msgs[0] = FeedMessage(msgs[0].kind, msgs[0].key, msgs[0].value, msgs[0].headers, "late", t_ms)
            out += msgs
            if desk:
                out.append(self._fill(inst, trade, buy, ts, t_ms))
        return out

    def _fill(self, inst: _Inst, trade: dict, taker_buys: bool, ts: int, t_ms: int) -> FeedMessage:
        spec = MARKETS[inst.mi]
        acct = ACCOUNTS[self.rnd.randrange(len(ACCOUNTS))]
        direction = ("sell" if taker_buys else "buy") if acct.maker else trade["direction"]
        price, amount = trade["price"], trade["amount"]
        if inst.kind == "option":
            notional = amount * (inst.index if spec.linear else 1.0)
            fee = min(0.0003 * notional, 0.125 * price * amount)
        elif spec.linear:
            fee = (0.0 if acct.maker else 0.0005) * price * amount
        else:
            fee = (-0.0001 if acct.maker else 0.0005) * amount / price
        self.order_id += 1
        fill = {
            **trade,
            "account_id": acct.account_id,
            "direction": direction,
            "order_id": str(9_000_000_000 + self.order_id),
            "order_type": "limit" if acct.maker else "market",
            "liquidity": "M" if acct.maker else "T",
            "fee": round(fee, 8),
            "fee_currency": "USDC" if spec.linear else spec.base,
            "label": f"{acct.account_id}-{inst.kind}",
            "reduce_only": False,
            "post_only": acct.maker,
            "profit_loss": 0.0,
            "underlying_price": round(inst.F, 4),
        }
        fill.pop("liquidation", None)
        return self._msg("desk.fills", acct.account_id, fill, f"user.trades.{inst.name}.raw", ts, t_ms)

    def _transfer(self, acct: Account, currency: str, amount: float, ts: int, t_ms: int) -> FeedMessage:
        self.transfer_id += 1
        obj = {
            "account_id": acct.account_id,
            "currency": currency,
            "amount": amount,
            "timestamp": ts,
            "transfer_id": f"tr-{self.transfer_id:08d}",
        }
        return self._msg("desk.transfers", acct.account_id, obj, "private/get_transfers", ts, t_ms)

    # --- the run ---------------------------------------------------------------------------------

    def messages(self) -> Iterator[FeedMessage]:
        """All messages of [start, end) in simulated-time order (forever if end is None)."""
        cfg = self.config
        start_ms = _ms(cfg.start)
        end_ms = _ms(cfg.end) if cfg.end is not None else None
        t_ms = -(-start_ms // self.step_ms) * self.step_ms
        step_no = t_ms // self.step_ms
        for acct in ACCOUNTS:  # initial deposits come before any fill
            for cur, amount in acct.deposits:
                yield self._count(self._transfer(acct, cur, amount, t_ms, t_ms))
        first = True
        while end_ms is None or t_ms < end_ms:
            out: list[FeedMessage] = []
            self._next_spot()
            day_ms = t_ms % DAY_MS
            if first or day_ms == EXPIRY_MS:
                out += self._settle(t_ms, first)
            if day_ms == TWAP_START_MS:
                self.twap_sum[:] = 0
                self.twap_n[:] = 0
            for mi, spec in enumerate(MARKETS):
                dp = 2 if spec.base in ("BTC", "ETH") else 4
                px = round(float(self.spot[mi]), dp)
                if TWAP_START_MS <= day_ms < EXPIRY_MS:
                    self.twap_sum[mi] += px
                    self.twap_n[mi] += 1
                obj = {"index_name": spec.index_name, "price": px, "timestamp": t_ms}
                out += self._emit(
                    "deribit.index",
                    spec.index_name,
                    obj,
                    f"deribit_price_index.{spec.index_name}",
                    t_ms,
                    t_ms,
                )
            if self._arrays_dirty:
                self._arrays()
            if first or day_ms == EXPIRY_MS:
                new = np.array([j for j, i in enumerate(self.insts) if i.created_ms == t_ms], dtype=np.int64)
                for j in new.tolist():
                    inst = self.insts[j]
                    out += self._emit(
                        "deribit.instruments",
                        inst.name,
                        self._instrument_obj(inst),
                        "public/get_instruments",
                        t_ms,
                        t_ms,
                    )
                out += self._tick_instruments(new, t_ms, snapshot_all=True)
                for j in new.tolist():
                    self.insts[j].settlement = self.insts[j].mark
            else:
                idx = np.flatnonzero(self.a_phase == step_no % self.n_phases)
                out += self._tick_instruments(idx, t_ms, snapshot_all=False)
            out += self._trades(t_ms, t_ms + 2 + len(out))
            if day_ms == 12 * 3_600_000:
                out += self._daily_transfers(t_ms)
            for msg in out:
                yield self._count(msg)
            first = False
            t_ms += self.step_ms
            step_no += 1

    def _settle(self, t_ms: int, first: bool) -> list[FeedMessage]:
        out: list[FeedMessage] = []
        if not first:
            for mi, spec in enumerate(MARKETS):
                if self.twap_n[mi]:
                    dp = 2 if spec.base in ("BTC", "ETH") else 4
                    self.stats.delivery_prices[(spec.index_name, t_ms)] = round(
                        float(self.twap_sum[mi] / self.twap_n[mi]), dp
                    )
            for inst in self.insts:
                if inst.expiry_ms <= t_ms:  # expired: one last instruments message, then silence
                    obj = self._instrument_obj(inst)
                    obj["is_active"] = False
                    out += self._emit(
                        "deribit.instruments", inst.name, obj, "public/get_instruments", t_ms, t_ms
                    )
                else:
                    inst.settlement = inst.mark
                    inst.volume, inst.high, inst.low, inst.first_trade = 0.0, None, None, None
        self._roll(t_ms, first)
        return out

    def _daily_transfers(self, t_ms: int) -> list[FeedMessage]:
        out = []
        for acct in ACCOUNTS:
            if self.rnd.random() < 0.5:
                cur, amount = acct.deposits[self.rnd.randrange(len(acct.deposits))]
                signed = round(amount * (self.rnd.random() * 0.2 - 0.05), 4)
                out.append(self._transfer(acct, cur, signed, t_ms + 5, t_ms))
        return out

    def _count(self, msg: FeedMessage) -> FeedMessage:
        st = self.stats
        st.messages[msg.kind] += 1
        if msg.fault:
            st.faults[msg.fault] += 1
        if st.first_ts_ms is None:
            st.first_ts_ms = msg.step_ms
        st.last_ts_ms = msg.step_ms
        return msg


def iter_messages(config: SimulatorConfig) -> Iterator[FeedMessage]:
    """The run's messages in time order, without producing them (tests, benchmarks)."""
    return Simulator(config).messages()


def simulate(config: SimulatorConfig, sink: Sink, settings: KafkaSettings | None = None) -> FeedStats:
    """Produce the run into `sink`; topic names resolved through `settings.topic(kind)` (kind if None).

    Raises `DeliveryFailed` (from the sink) when any message was not acknowledged. With `realtime`, the
    window [start, end) goes out as fast as the broker takes it, then the run continues at wall-clock pace
    until interrupted.
    """
    run_cfg = config
    if config.realtime:
        from dataclasses import replace

        run_cfg = replace(config, end=None)
    sim = Simulator(run_cfg)
    names: dict[str, str] = {}

    def topic(kind: str) -> str:
        if kind not in names:
            names[kind] = settings.topic(kind).name if settings is not None else kind
        return names[kind]

    end_ms = _ms(config.end) if config.end is not None else 0
    t0 = time.monotonic()
    try:
        for msg in sim.messages():
            if config.realtime and msg.step_ms > end_ms:
                wait = msg.step_ms / 1000 - time.time()
                if wait > 0:
                    time.sleep(wait)
            sink.send(topic(msg.kind), msg.key, msg.value, msg.headers, msg.fault)
    except KeyboardInterrupt:
        if not config.realtime:
            raise
        log.info("interrupted: flushing")
    finally:
        sim.stats.elapsed_s = time.monotonic() - t0
    sink.close()
    sim.stats.faulty = list(sink.delivered)
    return sim.stats
