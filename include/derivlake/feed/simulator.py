"""Deterministic simulator of a Deribit-like venue plus a small trading desk.

Why: the lake, the reports and the margin engine need days of realistic, exchange-shaped data with known
answers (the smile that generated the marks, the TWAP that is the delivery price, the faults injected).
The market moves in fixed time steps; per step everything numeric is computed with numpy for all
instruments that tick (marks, greeks, book level diffs, ticker fields), the tickers are built as msgspec
structs column-wise and serialised in bulk, the book messages are assembled from byte tokens (their
prices and amounts are whole ticks and lots, so each number's text is rendered once per run), and a step
goes out as one `_Block` of pre-built keys, values and headers (the hot path has no per-message dicts).
Same seed and window -> byte-identical messages (keys, values, headers, order); wall-clock time is only
used to pace `--realtime`.

Runs share a lake, so their ids must not collide: trade, order and transfer ids carry a tag of what decides
the run's events (seed, window, scale, trade rate; `run_tag`), so a run repeated exactly re-sends the same
ids (the drain drops them as upstream duplicates) and any other run, consecutive or overlapping, has ids of
its own. The accounts' opening deposits are one fixed set of events, the same in every run
(`OPENING_MS`, ids `tr-open-<account>-<currency>`): re-sent by every run, counted once.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat

import msgspec
import numpy as np

from derivlake.config import KafkaSettings
from derivlake.feed.calendar import ListingPolicy, future_name, listed_expiries, option_name
from derivlake.feed.market import MARKETS, YEAR_S, MarketSpec, index_path, price_and_greeks, smile_vol
from derivlake.feed.producer import Delivered, DeliveryFailed, Headers, Sink
from derivlake.feed.stop import StopRequest

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
EXPIRY_MS = 8 * 3_600_000
TWAP_START_MS = EXPIRY_MS - 30 * 60_000
PERPETUAL_EXPIRY_MS = 32503708800000  # what Deribit reports for perpetuals (year 3000)

# `malformed_instrument`: an `unknown_instrument` fault whose name starts with a known currency (BTC-FOO)
BAD_KINDS = ("bad_json", "wrong_type", "missing_field", "unknown_instrument", "malformed_instrument")
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
MALFORMED_INSTRUMENTS = ("BTC-FOO", "BTC-32JAN25-1000-C")  # of those, a known currency's: malformed names
# The accounts' opening deposits are stamped here in every run (the first instant the lake takes), with
# fixed ids: the same events whatever the run, so every re-send is a duplicate within one date partition
OPENING_MS = 946_684_800_000  # 2000-01-01 00:00 UTC


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


def run_tag(config: SimulatorConfig) -> int:
    """A 30-bit tag of what decides a run's events: seed, scale, trade rate and the steps of its window
    (open-ended for a realtime run; fault rates only add faulty copies and late stamps to the same events).
    Ids carry it, so two runs share an id only for an event they share: the same run again."""
    step_ms = config.scale_spec.step_s * 1000
    first = -(-_ms(config.start) // step_ms) * step_ms  # the run's first step
    end = -(-_ms(config.end) // step_ms) * step_ms if config.end is not None else None
    key = f"{config.seed}|{config.scale}|{config.trade_rate!r}|{first}|{end}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 34


_ENCODER = msgspec.json.Encoder()
_dumps: Callable[[object], bytes] = _ENCODER.encode  # NaN encodes as null (a missing value)
_loads = msgspec.json.decode
NAN = float("nan")
SOURCE_HEADER = ("source", b"simulator")


# --- message shapes of the hot path (field order = the JSON key order of the contract) -------------------


class _OptionStats(msgspec.Struct, gc=False):
    volume: float
    price_change: float
    low: float
    high: float


_NO_STATS = _OptionStats(NAN, NAN, NAN, NAN)


class _Greeks(msgspec.Struct, gc=False):
    vega: float
    theta: float
    rho: float
    gamma: float
    delta: float


class _OptionTicker(msgspec.Struct, gc=False):
    underlying_price: float
    underlying_index: str
    timestamp: int
    stats: _OptionStats
    state: str
    settlement_price: float
    open_interest: float
    min_price: float
    max_price: float
    mark_price: float
    mark_iv: float
    last_price: float
    interest_rate: float
    instrument_name: str
    index_price: float
    greeks: _Greeks
    estimated_delivery_price: float
    bid_iv: float
    best_bid_price: float
    best_bid_amount: float
    best_ask_price: float
    best_ask_amount: float
    ask_iv: float


def _round(x: np.ndarray, ndigits: int) -> np.ndarray:
    """`round(v, ndigits)` of every element, exactly as Python rounds (numpy's differs near ties)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.round(x, ndigits)
    y = x * 10.0**ndigits
    with np.errstate(invalid="ignore"):
        near = np.abs(y - np.floor(y) - 0.5) <= 1e-15 * np.abs(y)  # within a few ulps of a tie
    if near.any():
        out[near] = [round(v, ndigits) for v in x[near].tolist()]
    return out


def _round_dp(x: np.ndarray, two: np.ndarray) -> np.ndarray:
    """Index precision per row: 2 dp for BTC/ETH, 4 for the rest."""
    return np.where(two, _round(x, 2), _round(x, 4))


def _objects(items: list) -> np.ndarray:
    """A 1-d object array of `items` (np.array would make a list of tuples a 2-d array)."""
    return np.fromiter(items, dtype=object, count=len(items))


# book messages are assembled from byte tokens (one join per batch) instead of per-level Python tuples:
# most of a change message is its levels, and their prices and amounts are whole ticks and lots
_LEVEL_OPEN = (b'["delete",', b'["new",', b'["change",', b',["delete",', b',["new",', b',["change",')
_TICK_KINDS = _objects(["deribit.book", "deribit.ticker"])
_END = b"\x00"  # message separator in a batch's text: never in msgspec's JSON (control bytes are escaped)


def _json_list(x: np.ndarray) -> list[bytes]:
    """msgspec's JSON text of each number of `x`, from one encoder call (a number's JSON has no comma)."""
    return _dumps(x.tolist())[1:-1].split(b",") if len(x) else []


def _json_values(x: np.ndarray) -> np.ndarray:
    """`_json_list(x)` as an object array."""
    return _objects(_json_list(x))


class _GridTexts:
    """JSON texts of values on grids: round(k * step, ndigits) for whole k, one grid per step (an
    instrument's tick or lot), in variants (prefix + text + suffix). A text is rendered the first time it
    is needed and then reused for the rest of the run; each grid has a window of k that grows as prices
    drift, and a lookup is one fancy index into the concatenation of all windows."""

    def __init__(self, ndigits: int, variants: tuple[tuple[bytes, bytes], ...] = ((b"", b""),)) -> None:
        self.ndigits, self.variants = ndigits, variants
        self.ids: dict[float, int] = {}
        self.lo = np.zeros(0, dtype=np.int64)  # window [lo, hi) of k per grid
        self.hi = np.zeros(0, dtype=np.int64)
        self.base = np.zeros(0, dtype=np.int64)  # where each window starts in the tables below
        self.step = np.zeros(0)  # per grid
        # per entry: its grid's step and its k, the value, whether rendered, the texts per variant
        self.e_step = np.zeros(0)
        self.e_k = np.zeros(0, dtype=np.int64)
        self.values = np.zeros(0)
        self.done = np.zeros(0, dtype=bool)
        self.texts = np.empty((0, len(variants)), dtype=object)

    def grid(self, step: float) -> int:
        """The id of the grid of `step` (registered on first use, with an empty window)."""
        if step not in self.ids:
            self.ids[step] = len(self.ids)
            self.step = np.append(self.step, step)
            self.lo, self.hi = np.append(self.lo, 0), np.append(self.hi, 0)
            self.base = np.append(self.base, len(self.values))
        return self.ids[step]

    def _cover(self, gid: np.ndarray, k: np.ndarray) -> None:
        """Grow the windows so that every (grid, k) is inside, with a margin (rare: prices drift)."""
        outside = (k < self.lo[gid]) | (k >= self.hi[gid])
        if not outside.any():
            return
        lo, hi = self.lo.copy(), self.hi.copy()
        for g in np.unique(gid[outside]).tolist():
            ks = k[gid == g]
            want_lo, want_hi = int(ks.min()), int(ks.max()) + 1
            margin = max(64, (want_hi - want_lo) // 4)
            empty = hi[g] == lo[g]
            lo[g] = max(0, want_lo - margin if empty else min(lo[g], want_lo - margin))
            hi[g] = want_hi + margin if empty else max(hi[g], want_hi + margin)
        sizes = hi - lo
        base = np.cumsum(sizes) - sizes
        total = int(sizes.sum())
        e_step, e_k = np.repeat(self.step, sizes), np.arange(total) - np.repeat(base - lo, sizes)
        values, done = np.full(total, np.nan), np.zeros(total, dtype=bool)
        texts = np.empty((total, len(self.variants)), dtype=object)
        for g in range(len(self.step)):  # carry the rendered entries over
            n_old = int(self.hi[g] - self.lo[g])
            if n_old:
                new_at = base[g] + self.lo[g] - lo[g]
                old = slice(int(self.base[g]), int(self.base[g]) + n_old)
                new = slice(int(new_at), int(new_at) + n_old)
                values[new], done[new], texts[new] = self.values[old], self.done[old], self.texts[old]
        self.lo, self.hi, self.base = lo, hi, base
        self.e_step, self.e_k, self.values, self.done, self.texts = e_step, e_k, values, done, texts

    def _at(self, gid: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Table rows of (grid, k), rendered."""
        self._cover(gid, k)
        at = self.base[gid] + k - self.lo[gid]
        missing = ~self.done[at]
        if missing.any():
            new = np.unique(at[missing])
            values = _round(self.e_k[new] * self.e_step[new], self.ndigits)
            texts = _json_list(values)
            for v, (prefix, suffix) in enumerate(self.variants):
                self.texts[new, v] = _objects([prefix + t + suffix for t in texts])
            self.values[new], self.done[new] = values, True
        return at

    def of_multiples(self, gid: np.ndarray, k: np.ndarray, variant: np.ndarray | int = 0) -> np.ndarray:
        """Texts of round(k * step, ndigits) (k >= 0) on grids `gid`, in `variant`s."""
        at = self._at(gid, k) * len(self.variants) + variant  # before reading self.texts: it may grow
        return self.texts.ravel()[at]

    def of_values(self, gid: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Texts of the values `x` on grids `gid` (first variant); any off the grid is rendered on its own."""
        k = np.rint(x / self.step[gid])
        k[~((k >= 0) & (k < 1 << 20))] = 0  # negative, NaN or far out: no window for those
        at = self._at(gid, k.astype(np.int64))
        out = self.texts[:, 0][at]
        off = np.flatnonzero(self.values[at] != x)
        if len(off):
            prefix, suffix = self.variants[0]
            out[off] = _objects([prefix + t + suffix for t in _json_list(x[off])])
        return out


class _BookText:
    """Book messages `{<head>,"bids":[...],"asks":[...]}` assembled from byte tokens, one join per batch,
    byte-identical to msgspec's encoding of the same lists (most of a change message is its levels).

    A level is two tokens, `,["new",0.0105,` (price variants: action, comma before or not) and `2.5]`
    (amount), or one for a delete of amount 0: `,["delete",0.0105,0.0]`."""

    def __init__(self) -> None:
        opens = [(o, b",") for o in _LEVEL_OPEN] + [(o, b",0.0]") for o in _LEVEL_OPEN]
        self.prices = _GridTexts(8, tuple(opens))
        self.amounts = _GridTexts(6, ((b"", b"]"),))

    def encode(
        self,
        heads: np.ndarray,
        ticks: np.ndarray,
        tick_grid: np.ndarray,
        codes: np.ndarray,
        amounts: np.ndarray,
        lot_grid: np.ndarray,
        emit: np.ndarray,
    ) -> list[bytes]:
        """`heads` (rows, h) holds each row's leading tokens; the levels are Deribit `[action, price, amount]`
        lists of the emitted slots of (rows, side, slot) arrays in slot order: price `ticks` on the row's
        `tick_grid` of `prices`, `codes` 0 delete, 1 new, 2 change, `amounts` on its `lot_grid`."""
        n, h = heads.shape
        slots = emit.shape[2]
        flat = np.flatnonzero(emit)
        group = flat // slots  # row * 2 + side
        code, amount = codes.ravel()[flat], amounts.ravel()[flat]
        whole = (code == 0) & (amount == 0.0)  # a delete: price token ends the level
        n_tok = 2 - whole.view(np.int8)
        side_tok = np.bincount(group, weights=n_tok, minlength=2 * n).astype(np.int64)
        tb, ta = side_tok[0::2], side_tok[1::2]
        # tokens per message: head, `,"bids":[`, the bids' levels, `],"asks":[`, the asks', `]}` + separator
        per_msg = h + tb + ta + 3
        start = np.cumsum(per_msg) - per_msg
        tokens = np.empty(int(per_msg.sum()), dtype=object)
        tokens[(start[:, None] + np.arange(h)).ravel()] = heads.ravel()
        tokens[start + h] = b',"bids":['
        tokens[start + h + 1 + tb] = b'],"asks":['
        tokens[start + per_msg - 1] = b"]}" + _END
        if len(flat):
            row, side = group >> 1, group & 1
            later = np.zeros(len(flat), dtype=np.int64)  # not the side's first level: a comma before it
            later[1:] = group[1:] == group[:-1]
            before = np.cumsum(n_tok) - n_tok  # tokens of the batch's levels before this one
            counts = np.bincount(group, minlength=2 * n)
            in_side = before - before[(np.cumsum(counts) - counts)[group]]
            pos = start[row] + h + 1 + side * (tb[row] + 1) + in_side
            variant = code + 3 * later + 6 * whole
            tokens[pos] = self.prices.of_multiples(tick_grid[row], ticks.ravel()[flat], variant)
            two = np.flatnonzero(~whole)
            tokens[pos[two] + 1] = self.amounts.of_values(lot_grid[row[two]], amount[two])
        return b"".join(tokens.tolist()).split(_END)[:-1]


@dataclass
class _Inst:
    """Static description of a listed instrument; its moving state lives in the simulator's arrays."""

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
    underlying_index: str = "index_price"


@dataclass
class _Block:
    """The messages of one step, column-wise; `headers` and `marks` are filled by `_Out.close`."""

    step_ms: int
    kinds: list[str]
    keys: list[bytes]
    values: list[bytes]
    headers: list[Headers]
    marks: list[str | None]
    n_marked: int


class _Out:
    """Accumulates a step's messages column-wise; headers are made in one go at the end."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.chans: list[tuple[str, bytes]] = []
        self.ts: list[int] = []
        self.marks: list[str | None] = []
        self.same_headers: list[tuple[int, int]] = []  # (copy, original): copies share the headers

    def __len__(self) -> int:
        return len(self.values)

    def add(self, kind: str, key: bytes, value: bytes, chan: tuple[str, bytes], ts: int, mark: str | None):
        self.kinds.append(kind)
        self.keys.append(key)
        self.values.append(value)
        self.chans.append(chan)
        self.ts.append(ts)
        self.marks.append(mark)

    def extend(self, other: _Out) -> None:
        at = len(self.values)
        self.kinds += other.kinds
        self.keys += other.keys
        self.values += other.values
        self.chans += other.chans
        self.ts += other.ts
        self.marks += other.marks
        self.same_headers += [(c + at, o + at) for c, o in other.same_headers]

    def close(self, step_ms: int, latency: np.random.Generator) -> _Block:
        n = len(self.values)
        recv = np.asarray(self.ts, dtype=np.int64) * 1000 + latency.integers(300, 4300, n)
        received = zip(repeat("received_at"), _json_list(recv))
        headers = list(map(list, zip(repeat(SOURCE_HEADER), self.chans, received)))
        for copy, original in self.same_headers:
            headers[copy] = headers[original]
        n_marked = n - self.marks.count(None)
        return _Block(step_ms, self.kinds, self.keys, self.values, headers, self.marks, n_marked)


class _NoGC:
    """Cyclic GC off while a step is built: it makes thousands of small acyclic objects (level tuples,
    header lists) that would trigger a young-generation collection every few hundred allocations;
    refcounting frees them all. The previous state is restored when the step is done."""

    def __enter__(self) -> None:
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was:
            gc.enable()


def _channel(prefix: str, name: str) -> tuple[str, bytes]:
    return ("channel", f"{prefix}.{name}.100ms".encode())


class Simulator:
    """Generates the messages of a run in time order; `stats` fills as messages are generated."""

    # per-instrument moving state: (attribute, dtype, initial value); rows follow `self.insts`
    _STATE: tuple[tuple[str, type, float], ...] = (
        ("s_cid", np.int64, 0),
        ("s_snap", np.int64, 0),
        ("s_mark", np.float64, 0.0),
        ("s_F", np.float64, 0.0),
        ("s_vega", np.float64, 0.0),
        ("s_iv", np.float64, 0.0),
        ("s_index", np.float64, 0.0),
        ("s_settle", np.float64, 0.0),
        ("s_seq", np.int64, 0),
        ("s_tdir", np.int64, 0),
        ("s_last", np.float64, NAN),
        ("s_first", np.float64, NAN),
        ("s_high", np.float64, NAN),
        ("s_low", np.float64, NAN),
        ("s_vol", np.float64, 0.0),
        ("s_oi", np.float64, 0.0),
    )

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.scale = config.scale_spec
        self.stats = FeedStats()
        self.rng = np.random.default_rng(config.seed)
        self.rnd = random.Random(config.seed)  # per-message market draws (cheap scalars)
        self.latency = np.random.default_rng(config.seed ^ 0x5EED)
        self.faults = random.Random(config.seed ^ 0xFA17)  # own stream: faults never change clean data
        self.step_ms = self.scale.step_s * 1000
        self.n_phases = max(1, self.scale.ticker_interval_s // self.scale.step_s)
        self.trade_rate = config.trade_rate if config.trade_rate is not None else self.scale.trade_rate
        self.insts: list[_Inst] = []
        self.serial = 0
        self.tag = run_tag(config)
        self.trade_id = 0  # the run's counters: ids are `_id`s of them
        self.order_id = 0
        self.transfer_id = 0
        self.spot = np.array([m.spot0 for m in MARKETS])
        self.premium = np.zeros(len(MARKETS))
        self.twap_sum = np.zeros(len(MARKETS))
        self.twap_n = np.zeros(len(MARKETS))
        self._block: np.ndarray | None = None
        self._block_pos = 0
        self.book_text = _BookText()
        self._fault_active = any((config.bad_rate, config.dup_rate, config.late_rate, config.gap_rate))
        self.batch_steps = self.n_phases  # steps computed together (each instrument ticks once at most)
        L = self.scale.book_levels
        for name, dtype, init in self._STATE:
            setattr(self, name, np.full(0, init, dtype=dtype))
        # the book: (instrument, side bid/ask, level) price in ticks, amount, level present
        self.b_px = np.full((0, 2, L), -1, dtype=np.int64)
        self.b_amt = np.zeros((0, 2, L))
        self.b_ok = np.zeros((0, 2, L), dtype=bool)
        self._arrays()

    # --- message plumbing ------------------------------------------------------------------------

    def _id(self, space: int, n: int) -> str:
        """The run's id `n` in `space` (1 trades, 5 block trades, 9 orders): a number as Deribit's are,
        the space's digit, the run's tag in 10 digits, then n (unique for any n: the prefix is fixed)."""
        return f"{space}{self.tag:010d}{n:08d}"

    def _emit(self, out: _Out, kind: str, key: str, obj: dict, chan: str, ts: int, mark: str | None = None):
        """One message built from a dict plus the faults it may attract (rare paths: index, trades...)."""
        key_b, value = key.encode(), _dumps(obj)
        self._add_faulted(out, kind, key_b, value, ("channel", chan.encode()), ts, mark, lambda: obj)

    def _add_faulted(
        self,
        out: _Out,
        kind: str,
        key: bytes,
        value: bytes,
        chan: tuple[str, bytes],
        ts: int,
        mark: str | None,
        obj: Callable[[], dict],
    ) -> None:
        """Add a clean message, then the extra copies its faults make (the clean stream stays intact)."""
        at = len(out)
        out.add(kind, key, value, chan, ts, mark)
        if not self._fault_active or kind not in REQUIRED_FIELDS:
            return
        cfg, rnd = self.config, self.faults
        if cfg.dup_rate and kind in ("deribit.trades", "deribit.book") and rnd.random() < cfg.dup_rate:
            out.same_headers.append((len(out), at))
            out.add(kind, key, value, chan, ts, "duplicate")
        if cfg.bad_rate and rnd.random() < cfg.bad_rate:
            fault = BAD_KINDS[rnd.randrange(3 if kind == "deribit.index" else 4)]
            bad_key, bad_value = self._corrupt(kind, key, value, obj, fault)
            if fault == "unknown_instrument" and bad_key.decode() in MALFORMED_INSTRUMENTS:
                fault = "malformed_instrument"
            out.same_headers.append((len(out), at))
            out.add(kind, bad_key, bad_value, chan, ts, fault)

    def _corrupt(
        self, kind: str, key: bytes, value: bytes, obj: Callable[[], dict], fault: str
    ) -> tuple[bytes, bytes]:
        rnd = self.faults
        if fault == "bad_json":
            return key, value[: max(1, rnd.randrange(1, len(value) - 1))]
        if fault == "wrong_type":
            name, bad = rnd.choice(WRONG_TYPES[kind])
            return key, _dumps({**obj(), name: bad})
        if fault == "missing_field":
            drop = rnd.choice(REQUIRED_FIELDS[kind])
            return key, _dumps({k: v for k, v in obj().items() if k != drop})
        bad_name = rnd.choice(UNKNOWN_INSTRUMENTS)
        return bad_name.encode(), _dumps({**obj(), "instrument_name": bad_name})

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
            self.serial, name, mi, kind, expiry_ms, strike, is_call, tick, amount, created_ms, period
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
        from derivlake.feed.calendar import settlement_period

        now = datetime.fromtimestamp(t_ms / 1000, UTC)
        existing = {i.name for i in self.insts}
        keep = [j for j, i in enumerate(self.insts) if i.expiry_ms > t_ms]
        self.insts = [self.insts[j] for j in keep]
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
        # carry the moving state of the survivors over, fresh state for the new rows
        rows = np.array(keep, dtype=np.int64)
        for attr, dtype, init in self._STATE:
            setattr(self, attr, np.concatenate([getattr(self, attr)[rows], np.full(len(new), init, dtype)]))
        self.s_cid[len(keep) :] = [10_000_000_000 + i.serial * 1_000_000 for i in new]
        L = self.scale.book_levels
        self.b_px = np.concatenate([self.b_px[rows], np.full((len(new), 2, L), -1, dtype=np.int64)])
        self.b_amt = np.concatenate([self.b_amt[rows], np.zeros((len(new), 2, L))])
        self.b_ok = np.concatenate([self.b_ok[rows], np.zeros((len(new), 2, L), dtype=bool)])
        self._arrays()
        return new

    def _arrays(self) -> None:
        """Static per-instrument columns (numbers for numpy, names/keys/channels as object arrays)."""
        insts = self.insts
        self.a_mi = np.array([i.mi for i in insts], dtype=np.int64)
        self.a_exp = np.array([i.expiry_ms for i in insts], dtype=np.float64)
        self.a_exp_ms = np.array([i.expiry_ms for i in insts], dtype=np.int64)
        self.a_k = np.array([i.strike if i.kind == "option" else 1.0 for i in insts])
        self.a_call = np.array([i.is_call for i in insts], dtype=bool)
        self.a_opt = np.array([i.kind == "option" for i in insts], dtype=bool)
        self.a_perp = np.array([i.kind == "perpetual" for i in insts], dtype=bool)
        self.a_tick = np.array([i.tick for i in insts])
        self.a_min = np.array([i.min_amount for i in insts])
        self.a_linear = np.array([MARKETS[i.mi].linear for i in insts], dtype=bool)
        self.a_dp2 = np.array([MARKETS[i.mi].base in ("BTC", "ETH") for i in insts], dtype=bool)
        self.a_phase = np.array([i.serial % self.n_phases for i in insts], dtype=np.int64)
        self.a_created = np.array([i.created_ms for i in insts], dtype=np.int64)
        self.o_name = _objects([i.name for i in insts])
        self.o_uidx = _objects([i.underlying_index for i in insts])
        self.o_key = _objects([i.name.encode() for i in insts])
        self.a_tick_grid = np.array([self.book_text.prices.grid(i.tick) for i in insts], dtype=np.int64)
        self.a_lot_grid = np.array([self.book_text.amounts.grid(i.min_amount) for i in insts], dtype=np.int64)
        self.o_book_name = _objects(
            [b',"instrument_name":' + _dumps(i.name) + b',"change_id":' for i in insts]
        )
        # channel header per message: rows [0, n) book, [n, 2n) ticker
        self.o_chan = _objects(
            [_channel("book", i.name) for i in insts] + [_channel("ticker", i.name) for i in insts]
        )

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

    def _price(
        self, idx: np.ndarray, t_ms: np.ndarray, spot: np.ndarray, premium: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Marks, vols and greeks of instruments `idx` at times `t_ms` (per row, with that step's index
        `spot` and perpetual `premium`), vectorised."""
        mi = self.a_mi[idx]
        basis = np.array([m.basis for m in MARKETS])[mi]
        T = np.maximum((self.a_exp[idx] - t_ms) / 1000.0 / YEAR_S, 1e-7)
        perp = self.a_perp[idx]
        F = np.where(perp, spot * (1 + premium), spot * np.exp(basis * np.where(perp, 0.0, T)))
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

    def _target_books(self, idx: np.ndarray, mark: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New book of each instrument: (rows, side, level) price ticks, fresh amounts, keep-old flags."""
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
        px = np.stack([bb[:, None] - offs[:, 0], ba[:, None] + offs[:, 1]], axis=1)
        return px, amounts, keep

    def _book_update(self, idx: np.ndarray, mark: np.ndarray) -> tuple[np.ndarray, ...]:
        """Move the books of `idx` to their targets, vectorised.

        Returns per (row, side, slot) with slots [old levels | new levels]: emit flag, action code
        (0 delete, 1 new, 2 change), price in ticks and amount, in Deribit order (deletes first, bids
        descending, asks ascending).
        """
        new_px, fresh, keep = self._target_books(idx, mark)
        new_ok = new_px >= 1  # levels below one tick do not exist (bids stop there)
        new_px = np.where(new_ok, new_px, -2)  # absent levels: -2 here, -1 in the old book: never equal
        fresh = _round(fresh * self.a_min[idx][:, None, None], 6)
        old_px, old_amt, old_ok = self.b_px[idx], self.b_amt[idx], self.b_ok[idx]
        # the old level each new level sits on (prices are distinct per side: at most one), via argmax
        # because small-axis any() reductions are slow in numpy
        same = new_px[..., :, None] == old_px[..., None, :]  # (rows, side, new level, old level)
        at = same.argmax(axis=3)
        in_old = np.take_along_axis(same, at[..., None], axis=3)[..., 0]
        prev_amt = np.take_along_axis(old_amt, at, axis=2)
        amt = np.where(in_old & keep, prev_amt, fresh)
        L = old_px.shape[2]
        kept = np.zeros((*old_px.shape[:2], L + 1), dtype=bool)
        np.put_along_axis(kept, np.where(in_old, at, L), True, axis=2)
        deleted = old_ok & ~kept[..., :L]
        changed = new_ok & (~in_old | (amt != prev_amt))
        amt[~new_ok] = 0.0
        self.b_px[idx] = np.where(new_ok, new_px, -1)
        self.b_amt[idx] = amt
        self.b_ok[idx] = new_ok
        emit = np.concatenate([deleted, changed], axis=2)
        codes = np.concatenate([np.zeros_like(old_px), np.where(in_old, 2, 1)], axis=2)
        px = np.concatenate([old_px, new_px], axis=2)
        amounts = np.concatenate([np.zeros_like(old_amt), amt], axis=2)
        return emit, codes, px, amounts

    def _snapshots(self, rows: np.ndarray, ts: np.ndarray, cid: np.ndarray) -> list[bytes]:
        """Snapshot messages of the current books of instruments `rows`."""
        heads = np.empty((len(rows), 4), dtype=object)
        heads[:, 0] = b'{"type":"snapshot","timestamp":'
        heads[:, 1] = _json_values(ts)
        heads[:, 2] = self.o_book_name[rows]
        heads[:, 3] = _json_values(cid)
        ok = self.b_ok[rows]
        return self.book_text.encode(
            heads,
            self.b_px[rows],
            self.a_tick_grid[rows],
            ok.astype(np.int64),
            self.b_amt[rows],
            self.a_lot_grid[rows],
            ok,
        )

    def _option_tickers(
        self, rows: np.ndarray, pos: np.ndarray, ts: np.ndarray, p: dict, est: np.ndarray, cap: dict
    ) -> list[bytes]:
        """Option tickers of instruments `rows` (p/est/ts/cap indexed by `pos`), serialised in bulk."""
        tick = self.a_tick[rows]
        two = self.a_dp2[rows]
        mark, F, usd = p["mark"][pos], p["F"][pos], p["usd"][pos]
        mark_iv = self.s_iv[rows]
        vega = np.maximum(self.s_vega[rows], 1e-9)
        to_usd = np.where(self.a_linear[rows], 1.0, F)
        has_bid, has_ask = self.b_ok[rows, 0, 0], self.b_ok[rows, 1, 0]
        bid_px = np.where(has_bid, _round(self.b_px[rows, 0, 0] * tick, 8), 0.0)
        ask_px = np.where(has_ask, _round(self.b_px[rows, 1, 0] * tick, 8), 0.0)

        def iv_at(px: np.ndarray) -> list:
            iv = _round(np.clip(mark_iv + (px * to_usd - usd) / vega, 1.0, 500.0), 2)
            return np.where(px != 0.0, iv, 0.0).tolist()

        seq, first, last, high = cap["seq"][pos], cap["first"][pos], cap["last"][pos], cap["high"][pos]
        # most series have not traded today: they share one all-null stats object
        stats = np.full(len(rows), _NO_STATS, dtype=object)
        traded = np.flatnonzero((seq > 0) | ~np.isnan(high))
        if len(traded):
            with np.errstate(invalid="ignore"):
                change = _round((last[traded] / first[traded] - 1) * 100, 4)
            stats[traded] = _objects(
                list(
                    map(
                        _OptionStats,
                        np.where(seq[traded] > 0, _round(cap["vol"][pos][traded], 4), NAN).tolist(),
                        change.tolist(),
                        cap["low"][pos][traded].tolist(),
                        high[traded].tolist(),
                    )
                )
            )
        greeks = list(map(_Greeks, *(np.round(p[g][pos], 5).tolist() for g in _Greeks.__struct_fields__)))
        n = len(rows)
        low = np.maximum(tick, np.rint(mark * 0.5 / tick) * tick)
        tickers = map(
            _OptionTicker,
            _round_dp(F, two).tolist(),
            self.o_uidx[rows].tolist(),
            ts[pos].tolist(),
            stats.tolist(),
            repeat("open", n),
            _round(cap["settle"][pos], 8).tolist(),
            _round(cap["oi"][pos], 4).tolist(),
            _round(low, 8).tolist(),
            _round(mark * 1.5 / tick * tick + 10 * tick, 8).tolist(),
            _round(mark, 8).tolist(),
            mark_iv.tolist(),
            last.tolist(),
            repeat(0.0, n),
            self.o_name[rows].tolist(),
            _round_dp(p["spot"][pos], two).tolist(),
            greeks,
            est[pos].tolist(),
            iv_at(bid_px),
            bid_px.tolist(),
            np.where(has_bid, self.b_amt[rows, 0, 0], 0.0).tolist(),
            ask_px.tolist(),
            np.where(has_ask, self.b_amt[rows, 1, 0], 0.0).tolist(),
            iv_at(ask_px),
        )
        return list(map(_dumps, tickers))

    def _other_ticker(self, j: int, k: int, ts: int, spot: float, est: float, cap: dict) -> dict:
        """Ticker of a future or perpetual (a handful per step: built as a dict); `k` indexes `cap`."""
        inst = self.insts[j]
        spec = MARKETS[inst.mi]
        tick = inst.tick
        seq = int(cap["seq"][k])
        mark = float(self.s_mark[j])
        last, first, vol = float(cap["last"][k]), float(cap["first"][k]), float(cap["vol"][k])
        low, high = float(cap["low"][k]), float(cap["high"][k])
        has_bid, has_ask = bool(self.b_ok[j, 0, 0]), bool(self.b_ok[j, 1, 0])
        stats = {
            "volume": round(vol, 4) if seq else None,
            "price_change": round((last / first - 1) * 100, 4) if first == first else None,
            "low": None if low != low else low,
            "high": None if high != high else high,
            "volume_usd": round(vol * (1.0 if not spec.linear else mark), 2) if seq else None,
        }
        dp = 2 if spec.base in ("BTC", "ETH") else 4
        out = {
            "timestamp": ts,
            "stats": stats,
            "state": "open",
            "settlement_price": round(float(cap["settle"][k]), 4),
            "open_interest": round(float(cap["oi"][k]), 4),
            "min_price": round(round(mark * 0.975 / tick) * tick, 8),
            "max_price": round(round(mark * 1.025 / tick) * tick, 8),
            "mark_price": round(mark, 4),
            "last_price": None if last != last else last,
            "instrument_name": inst.name,
            "index_price": round(spot, dp),
            "estimated_delivery_price": est,
            "best_bid_price": round(int(self.b_px[j, 0, 0]) * tick, 8) if has_bid else 0.0,
            "best_bid_amount": float(self.b_amt[j, 0, 0]) if has_bid else 0.0,
            "best_ask_price": round(int(self.b_px[j, 1, 0]) * tick, 8) if has_ask else 0.0,
            "best_ask_amount": float(self.b_amt[j, 1, 0]) if has_ask else 0.0,
        }
        if inst.kind == "perpetual":
            prem = (mark - spot) / spot
            out["current_funding"] = round(prem, 8)
            out["funding_8h"] = round(max(-0.005, min(0.005, prem / 3)), 8)
            out["interest_value"] = round(prem * 1e-4, 12)
        return out

    def _delivery_estimates(
        self, idx: np.ndarray, t_ms: np.ndarray, index: np.ndarray, twap: np.ndarray
    ) -> np.ndarray:
        """The index TWAP so far (`twap` per row, NaN before any) during the 07:30-08:00 window before a
        row's own expiry, else the index. The window is tested against the expiry itself: `twap` holds
        the last window's average until the next 07:30, which is stale for a series expiring tomorrow."""
        exp = self.a_exp_ms[idx]
        live = (exp - (EXPIRY_MS - TWAP_START_MS) <= t_ms) & (t_ms < exp) & ~np.isnan(twap)
        return np.where(live, twap, index)

    def _tick_books(
        self, idx: np.ndarray, ts: np.ndarray, p: dict, snapshot_all: bool
    ) -> tuple[np.ndarray, np.ndarray, list[bytes], list[bytes]]:
        """Move the books of `idx` (each at most once) and encode their change and snapshot messages."""
        n = len(idx)
        if n == 0:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool), [], []
        self.s_mark[idx], self.s_F[idx], self.s_vega[idx] = p["mark"], p["F"], p["vega"]
        self.s_iv[idx] = _round(p["sigma"] * 100, 2)
        self.s_index[idx] = p["spot"]
        emit, codes, px_ticks, amounts = self._book_update(idx, p["mark"])
        if snapshot_all:
            has_change = np.zeros(n, dtype=bool)
            has_snap = np.ones(n, dtype=bool)
            self.s_cid[idx] += 1
        else:
            has_change = emit.reshape(n, -1).max(axis=1)
            prev = self.s_cid[idx]
            self.s_cid[idx] = prev + has_change
            due = ts - self.s_snap[idx] >= self.scale.snapshot_interval_s * 1000
            has_snap = has_change & due
        cid = self.s_cid[idx]
        changes: list[bytes] = []
        if has_change.any():
            c = np.flatnonzero(has_change)
            heads = np.empty((len(c), 6), dtype=object)
            heads[:, 0] = b'{"type":"change","timestamp":'
            heads[:, 1] = _json_values(ts[c])
            heads[:, 2] = b',"prev_change_id":'
            heads[:, 3] = _json_values(prev[c])
            heads[:, 4] = self.o_book_name[idx[c]]
            heads[:, 5] = _json_values(cid[c])
            rows = idx[c]
            changes = self.book_text.encode(
                heads,
                px_ticks[c],
                self.a_tick_grid[rows],
                codes[c],
                amounts[c],
                self.a_lot_grid[rows],
                emit[c],
            )
        snaps: list[bytes] = []
        if has_snap.any():
            sn = np.flatnonzero(has_snap)
            self.s_snap[idx[sn]] = ts[sn]
            snaps = self._snapshots(idx[sn], ts[sn], cid[sn])
        return has_change, has_snap, changes, snaps

    def _tickers(self, idx: np.ndarray, ts: np.ndarray, p: dict, est: np.ndarray, cap: dict) -> np.ndarray:
        """Encoded tickers of `idx` (an object array in row order)."""
        tickers = np.empty(len(idx), dtype=object)
        opt = self.a_opt[idx]
        o = np.flatnonzero(opt)
        if len(o):
            tickers[o] = _objects(self._option_tickers(idx[o], o, ts, p, est, cap))
        spot, est_l, ts_l = p["spot"].tolist(), est.tolist(), ts.tolist()
        for k in np.flatnonzero(~opt).tolist():
            tickers[k] = _dumps(self._other_ticker(int(idx[k]), k, ts_l[k], spot[k], est_l[k], cap))
        return tickers

    def _tick_faults(
        self, out: _Out, kind: str, key: bytes, value: bytes, chan: tuple, ts: int, snapshot: bool
    ) -> None:
        """Fault injection for one book/ticker message (only runs with a fault rate set)."""
        cfg, mark = self.config, None
        cache: list[dict] = []

        def obj() -> dict:
            if not cache:
                cache.append(_loads(value))
            return cache[0]

        if kind == "deribit.book" and not snapshot and cfg.gap_rate and self.faults.random() < cfg.gap_rate:
            self.stats.faults["gap"] += 1
            self.stats.gaps.append((key.decode(), obj()["change_id"]))
            return
        if kind == "deribit.ticker" and cfg.late_rate:
            late = _loads(value)
            if self._late(late, ts):
                cache.append(late)
                value, mark = _dumps(late), "late"
        self._add_faulted(out, kind, key, value, chan, ts, mark, obj)

    # --- trades and desk -------------------------------------------------------------------------

    def _trades(self, out: _Out, t_ms: int, first_ts: int, vis: dict[str, np.ndarray]) -> None:
        """Public trades of a step, against the books and marks `vis`ible at that step."""
        n = int(self.rng.poisson(self.trade_rate * self.scale.step_s))
        if n == 0 or not self.insts:
            return
        span = max(1, self.step_ms - (first_ts - t_ms) - 1)
        offsets = np.sort(self.rng.integers(0, span, n)).tolist()
        which = self.rng.integers(0, len(self.insts), n).tolist()
        sizes = self.rng.integers(1, 20, n).tolist()
        rnd = self.rnd
        for off, j, size in zip(offsets, which, sizes, strict=True):
            inst = self.insts[j]
            has_bid, has_ask = bool(vis["ok"][j, 0]), bool(vis["ok"][j, 1])
            if not has_bid and not has_ask:
                continue
            spec = MARKETS[inst.mi]
            buy = (rnd.random() < 0.5 or not has_bid) and has_ask
            price = round(int(vis["px"][j, 1 if buy else 0]) * inst.tick, 8)
            amount = round(size * inst.min_amount, 6)
            ts = first_ts + off
            prev = None if math.isnan(self.s_last[j]) else float(self.s_last[j])
            tdir = int(self.s_tdir[j])
            same = prev is None or price == prev
            tdir = (1 if tdir in (0, 1) else 3) if same else (0 if price > prev else 2)
            self.s_tdir[j] = tdir
            self.s_seq[j] += 1
            self.s_last[j] = price
            if math.isnan(self.s_first[j]):
                self.s_first[j] = price
            self.s_high[j] = price if math.isnan(self.s_high[j]) else max(float(self.s_high[j]), price)
            self.s_low[j] = price if math.isnan(self.s_low[j]) else min(float(self.s_low[j]), price)
            self.s_vol[j] += amount
            self.s_oi[j] += amount * 0.5
            self.trade_id += 1
            dp = 2 if spec.base in ("BTC", "ETH") else 4
            mark, index = float(vis["mark"][j]), float(vis["index"][j])
            trade = {
                "trade_seq": int(self.s_seq[j]),
                "trade_id": self._id(1, self.trade_id),
                "timestamp": ts,
                "tick_direction": tdir,
                "price": price,
                "mark_price": round(mark, 8 if inst.kind == "option" else 4),
                "instrument_name": inst.name,
                "index_price": round(index, dp),
                "direction": "buy" if buy else "sell",
                "amount": amount,
            }
            if inst.kind == "option":
                F = float(vis["F"][j])
                usd = price * (1.0 if spec.linear else F)
                mark_usd = mark * (1.0 if spec.linear else F)
                trade["iv"] = round(
                    min(
                        500.0,
                        max(1.0, float(vis["iv"][j]) + (usd - mark_usd) / max(float(vis["vega"][j]), 1e-9)),
                    ),
                    2,
                )
            roll = rnd.random()
            if inst.kind != "option" and roll < 0.02:
                trade["liquidation"] = "T" if buy else "M"
            elif roll > 0.99:
                trade["block_trade_id"] = self._id(5, self.trade_id)
            desk = rnd.random() < DESK_SHARE
            late = (not desk) and self.config.late_rate and self._late(trade, ts)
            self._emit(
                out,
                "deribit.trades",
                inst.name,
                trade,
                f"trades.{inst.name}.100ms",
                ts,
                "late" if late else None,
            )
            if desk:
                self._fill(out, j, trade, buy, ts, vis)

    def _fill(self, out: _Out, j: int, trade: dict, taker_buys: bool, ts: int, vis: dict) -> None:
        inst = self.insts[j]
        spec = MARKETS[inst.mi]
        acct = ACCOUNTS[self.rnd.randrange(len(ACCOUNTS))]
        direction = ("sell" if taker_buys else "buy") if acct.maker else trade["direction"]
        price, amount = trade["price"], trade["amount"]
        if inst.kind == "option":
            notional = amount * (float(vis["index"][j]) if spec.linear else 1.0)
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
            "order_id": self._id(9, self.order_id),
            "order_type": "limit" if acct.maker else "market",
            "liquidity": "M" if acct.maker else "T",
            "fee": round(fee, 8),
            "fee_currency": "USDC" if spec.linear else spec.base,
            "label": f"{acct.account_id}-{inst.kind}",
            "reduce_only": False,
            "post_only": acct.maker,
            "profit_loss": 0.0,
            "underlying_price": round(float(vis["F"][j]), 4),
        }
        fill.pop("liquidation", None)
        self._emit(out, "desk.fills", acct.account_id, fill, f"user.trades.{inst.name}.raw", ts)

    def _transfer(
        self, out: _Out, acct: Account, currency: str, amount: float, ts: int, transfer_id: str, at_ms: int
    ) -> None:
        """A transfer made at `at_ms`, received at `ts` (later for the opening deposits)."""
        obj = {
            "account_id": acct.account_id,
            "currency": currency,
            "amount": amount,
            "timestamp": at_ms,
            "transfer_id": transfer_id,
        }
        self._emit(out, "desk.transfers", acct.account_id, obj, "private/get_transfers", ts)

    # --- the run ---------------------------------------------------------------------------------

    def blocks(self) -> Iterator[_Block]:
        """The messages of [start, end) step by step (forever if end is None), counted in `stats`.

        Ordinary steps are computed `n_phases` at a time (one ticker interval: every instrument ticks at
        most once), so the numpy work is amortised over ~10x more rows; the first step and the 08:00
        expiry step (listings, snapshots of every new book) are computed alone.
        """
        cfg = self.config
        start_ms = _ms(cfg.start)
        end_ms = _ms(cfg.end) if cfg.end is not None else None
        t_ms = -(-start_ms // self.step_ms) * self.step_ms
        step_no = t_ms // self.step_ms
        out = _Out()
        for acct in ACCOUNTS:  # the opening deposits come before any fill, the same ones in every run
            for cur, amount in acct.deposits:
                self._transfer(out, acct, cur, amount, t_ms, f"tr-open-{acct.account_id}-{cur}", OPENING_MS)
        yield self._count(out.close(t_ms, self.latency))
        first = True
        while end_ms is None or t_ms < end_ms:
            n = 1
            if not first and t_ms % DAY_MS != EXPIRY_MS:
                while n < self.batch_steps and (end_ms is None or t_ms + n * self.step_ms < end_ms):
                    if (t_ms + n * self.step_ms) % DAY_MS == EXPIRY_MS:
                        break
                    n += 1
            with _NoGC():
                blocks = self._steps(t_ms, step_no, n, first)
            for block in blocks:  # counted as handed out: a run stopped midway counts only what it sent
                yield self._count(block)
            first = False
            t_ms += n * self.step_ms
            step_no += n

    def _steps(self, t0: int, step0: int, n_steps: int, first: bool) -> list[_Block]:
        """`n_steps` market steps from `t0`: per step the index, listings/expiries, the instruments that
        tick, trades and transfers; the ticking instruments of all steps are priced, moved and encoded
        together (each ticks at most once), the few trades run step by step against what was visible then.
        """
        special = first or t0 % DAY_MS == EXPIRY_MS
        outs: list[_Out] = []
        rows: list[np.ndarray] = []
        spots, premiums, twaps = [], [], []
        for k in range(n_steps):
            t_ms = t0 + k * self.step_ms
            out = _Out()
            self._next_spot()
            day_ms = t_ms % DAY_MS
            if special:
                self._settle(out, t_ms, first)
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
                chan = f"deribit_price_index.{spec.index_name}"
                self._emit(out, "deribit.index", spec.index_name, obj, chan, t_ms)
            twaps.append(
                [
                    round(float(self.twap_sum[mi] / c), 2 if m.base in ("BTC", "ETH") else 4) if c else NAN
                    for mi, (c, m) in enumerate(zip(self.twap_n, MARKETS, strict=True))
                ]
            )
            if special:
                idx = np.flatnonzero(self.a_created == t_ms)
                for j in idx.tolist():
                    inst = self.insts[j]
                    obj = self._instrument_obj(inst)
                    self._emit(out, "deribit.instruments", inst.name, obj, "public/get_instruments", t_ms)
            else:
                idx = np.flatnonzero(self.a_phase == (step0 + k) % self.n_phases)
            outs.append(out)
            rows.append(idx)
            spots.append(self.spot)
            premiums.append(self.premium)

        counts = np.array([len(r) for r in rows], dtype=np.int64)
        ends = np.cumsum(counts)
        starts = ends - counts
        idx = np.concatenate(rows)
        step_of = np.repeat(np.arange(n_steps), counts)
        t_rows = t0 + step_of * self.step_ms
        ts = t_rows + 1 + np.arange(len(idx)) - np.repeat(starts, counts)
        mi = self.a_mi[idx]
        # what trades see: the books and marks before this batch; a step's rows switch to the new ones
        vis = {
            "px": self.b_px[:, :, 0].copy(),
            "ok": self.b_ok[:, :, 0].copy(),
            "mark": self.s_mark.copy(),
            "F": self.s_F.copy(),
            "iv": self.s_iv.copy(),
            "vega": self.s_vega.copy(),
            "index": self.s_index.copy(),
        }
        cap: dict[str, np.ndarray] = {"settle": self.s_settle[idx]}
        p = self._price(idx, t_rows, np.array(spots)[step_of, mi], np.array(premiums)[step_of, mi])
        has_change, has_snap, changes, snaps = self._tick_books(idx, ts, p, snapshot_all=special)
        if special:
            self.s_settle[idx] = self.s_mark[idx]
        msgs_before = np.concatenate([[0], np.cumsum(1 + has_change.astype(np.int64) + has_snap)])
        n_tick_msgs = np.diff(msgs_before[ends], prepend=0).tolist()  # book + ticker messages per step

        # trades step by step: a ticker shows the trades of the steps before its own
        state = {k: getattr(self, f"s_{k}") for k in ("seq", "first", "last", "high", "low", "vol", "oi")}
        for k in state:
            cap[k] = np.empty(len(idx), dtype=state[k].dtype)
        trade_outs: list[_Out] = []
        for k in range(n_steps):
            t_ms = t0 + k * self.step_ms
            sl = slice(int(starts[k]), int(ends[k]))
            r = idx[sl]
            vis["px"][r], vis["ok"][r] = self.b_px[r, :, 0], self.b_ok[r, :, 0]
            for name in ("mark", "F", "iv", "vega", "index"):
                vis[name][r] = getattr(self, f"s_{name}")[r]
            for name, arr in state.items():
                cap[name][sl] = arr[r]
            tout = _Out()
            self._trades(tout, t_ms, t_ms + 2 + len(outs[k]) + n_tick_msgs[k], vis)
            if t_ms % DAY_MS == 12 * 3_600_000:
                self._daily_transfers(tout, t_ms)
            trade_outs.append(tout)

        index = _round_dp(p["spot"], self.a_dp2[idx])
        est = self._delivery_estimates(idx, t_rows, index, np.array(twaps)[step_of, mi])
        tickers = self._tickers(idx, ts, p, est, cap)
        ticks = self._interleave(idx, ts, has_change, has_snap, changes, snaps, tickers)
        blocks = []
        at = 0
        for k in range(n_steps):
            out = outs[k]
            upto = at + n_tick_msgs[k]
            self._add_ticks(out, ticks, at, upto)
            at = upto
            out.extend(trade_outs[k])
            blocks.append(out.close(t0 + k * self.step_ms, self.latency))
        return blocks

    def _interleave(
        self,
        idx: np.ndarray,
        ts: np.ndarray,
        has_change: np.ndarray,
        has_snap: np.ndarray,
        changes: list[bytes],
        snaps: list[bytes],
        tickers: np.ndarray,
    ) -> tuple[list, ...]:
        """Message columns in order, per instrument: [book change] [book snapshot] ticker."""
        hc, hs = has_change.astype(np.int64), has_snap.astype(np.int64)
        per = hc + hs + 1
        start = np.cumsum(per) - per
        total = int(per.sum())
        values = np.empty(total, dtype=object)
        values[start[has_change]] = _objects(changes)
        values[(start + hc)[has_snap]] = _objects(snaps)
        at_ticker = start + hc + hs
        values[at_ticker] = tickers
        is_ticker = np.zeros(total, dtype=bool)
        is_ticker[at_ticker] = True
        snapshot = np.zeros(total, dtype=bool)
        snapshot[(start + hc)[has_snap]] = True
        row = np.repeat(idx, per)
        kinds = _TICK_KINDS[is_ticker.view(np.int8)].tolist()  # two shared str objects, not one per row
        keys = self.o_key[row].tolist()
        chans = self.o_chan[row + is_ticker * len(self.insts)].tolist()
        return kinds, keys, values.tolist(), chans, np.repeat(ts, per).tolist(), snapshot.tolist()

    def _add_ticks(self, out: _Out, ticks: tuple[list, ...], a: int, b: int) -> None:
        kinds, keys, values, chans, ts, snapshot = ticks
        if not self._fault_active:
            out.kinds += kinds[a:b]
            out.keys += keys[a:b]
            out.values += values[a:b]
            out.chans += chans[a:b]
            out.ts += ts[a:b]
            out.marks += [None] * (b - a)
            return
        for m in range(a, b):
            self._tick_faults(out, kinds[m], keys[m], values[m], chans[m], ts[m], snapshot[m])

    def messages(self) -> Iterator[FeedMessage]:
        """All messages of [start, end) in simulated-time order (forever if end is None)."""
        for b in self.blocks():
            for kind, key, value, headers, mark in zip(
                b.kinds, b.keys, b.values, b.headers, b.marks, strict=True
            ):
                yield FeedMessage(kind, key, value, headers, mark, b.step_ms)

    def _settle(self, out: _Out, t_ms: int, first: bool) -> None:
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
                    self._emit(out, "deribit.instruments", inst.name, obj, "public/get_instruments", t_ms)
            live = self.a_exp_ms > t_ms
            self.s_settle[live] = self.s_mark[live]
            self.s_vol[live] = 0.0
            self.s_high[live] = self.s_low[live] = self.s_first[live] = NAN
        self._roll(t_ms, first)

    def _daily_transfers(self, out: _Out, t_ms: int) -> None:
        for acct in ACCOUNTS:
            if self.rnd.random() < 0.5:
                cur, amount = acct.deposits[self.rnd.randrange(len(acct.deposits))]
                signed = round(amount * (self.rnd.random() * 0.2 - 0.05), 4)
                self.transfer_id += 1
                tid = f"tr-{self.tag:010d}-{self.transfer_id:08d}"
                self._transfer(out, acct, cur, signed, t_ms + 5, tid, t_ms + 5)

    def _count(self, block: _Block) -> _Block:
        st = self.stats
        if not block.values:
            return block
        st.messages.update(block.kinds)
        if block.n_marked:
            st.faults.update(m for m in block.marks if m is not None)
        if st.first_ts_ms is None:
            st.first_ts_ms = block.step_ms
        st.last_ts_ms = block.step_ms
        return block


def iter_messages(config: SimulatorConfig) -> Iterator[FeedMessage]:
    """The run's messages in time order, without producing them (tests, benchmarks)."""
    return Simulator(config).messages()


def option_series(config: SimulatorConfig) -> int:
    """How many option series the venue lists at the start of the run (its scale)."""
    sim = Simulator(config)
    blocks = sim.blocks()
    next(blocks)  # initial deposits
    next(blocks)  # first step: listings
    return sum(1 for i in sim.insts if i.kind == "option")


def simulate(
    config: SimulatorConfig,
    sink: Sink,
    settings: KafkaSettings | None = None,
    stop: StopRequest | None = None,
) -> FeedStats:
    """Produce the run into `sink`; topic names resolved through `settings.topic(kind)` (kind if None).

    Raises `DeliveryFailed` (from the sink) when any message was not acknowledged: at the first failed
    delivery the run stops, the sink is flushed and the final count raised. With `realtime`, the window
    [start, end) goes out as fast as the broker takes it, then the run continues at wall-clock pace until
    interrupted or `stop` is set (checked after each step, so the stats count exactly what was sent). Each
    step goes to the sink as one batch (`send_many`) when the sink has it.
    """
    run_cfg = config
    if config.realtime:
        from dataclasses import replace

        run_cfg = replace(config, end=None)
    sim = Simulator(run_cfg)

    class _Topics(dict):
        def __missing__(self, kind: str) -> str:
            self[kind] = settings.topic(kind).name if settings is not None else kind
            return self[kind]

    topic = _Topics()
    send_many = getattr(sink, "send_many", None)
    end_ms = _ms(config.end) if config.end is not None else 0
    t0 = time.monotonic()
    try:
        for b in sim.blocks():
            if config.realtime and b.step_ms > end_ms:
                wait = b.step_ms / 1000 - time.time()
                if wait > 0:
                    # stopped while waiting: this step is already counted and at most one step early,
                    # so it still goes out before the stop
                    if stop is not None:
                        stop.sleep(wait)
                    else:
                        time.sleep(wait)
            topics = list(map(topic.__getitem__, b.kinds))
            marks = b.marks if b.n_marked else None
            if send_many is not None:
                send_many(topics, b.keys, b.values, b.headers, marks)
            else:
                for t, key, value, headers, mark in zip(
                    topics, b.keys, b.values, b.headers, b.marks, strict=True
                ):
                    sink.send(t, key, value, headers, mark)
            if stop:
                log.info("stop requested (%s): flushing", stop.reason)
                break
    except KeyboardInterrupt:
        if not config.realtime:
            raise
        log.info("interrupted: flushing")
    except DeliveryFailed as exc:
        log.error("%s: flushing what is queued", exc)  # close() raises the final count
    finally:
        sim.stats.elapsed_s = time.monotonic() - t0
    sink.close()
    sim.stats.faulty = list(sink.delivered)
    return sim.stats
