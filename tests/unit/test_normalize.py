"""The column-wise normalizer against a per-message Python reading of the same rules.

`stage_batch` parses a whole batch in DuckDB and looks twice only at suspect rows; the reference here
decides each message on its own with `json.loads`. Both must give every message the same fate.
"""

from __future__ import annotations

import json
import math
import re

import duckdb
import pyarrow as pa
import pytest

from derivlake.normalize import normalizer_for
from derivlake.normalize.core import stage_batch
from derivlake.normalize.spec import TopicNormalizer


def castable(value: object, duck_type: str) -> bool:
    """DuckDB's lenient JSON transform: a value that casts to the column type is taken (a numeric
    string or a boolean for a number, anything for a VARCHAR); one that does not is a wrong type."""
    if duck_type == "VARCHAR":
        return True
    if isinstance(value, bool | int) or (isinstance(value, float) and duck_type == "DOUBLE"):
        return True
    if isinstance(value, str):
        try:
            (float if duck_type == "DOUBLE" else int)(value)
        except ValueError:
            return False
        return True
    return False


def _at(doc: dict, path: str) -> object:
    """The value at a dotted path, None where any step is absent or not an object."""
    node: object = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def reference_reason(spec: TopicNormalizer, value: bytes, key: bytes | None) -> str | None:
    """The quarantine reason of one message, or None: the rules of core.reason_expression, one by one."""
    try:
        doc = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "malformed_json"
    doc = doc if isinstance(doc, dict) else {}
    if spec.key_fallback and doc.get(spec.key_fallback) in (None, ""):
        doc[spec.key_fallback] = (key or b"").decode() or None
    for path in spec.checked:
        node, duck_type = _at(doc, path), spec.fields
        for part in path.split("."):
            duck_type = duck_type[part]
        if node is None:
            if path in spec.required:
                return f"missing_field:{path}"
        elif not castable(node, duck_type):
            return f"wrong_type:{path}"
    for path in spec.ms_timestamps:  # epoch ms between 2000-01-01 and 3000-01-02
        if doc.get(path) is not None and not 946_684_800_000 <= int(doc[path]) <= 32_503_766_400_000:
            return f"out_of_range:{path}"
    for path in spec.doubles:  # NaN, Infinity, "inf", 1e999: parsed, but not finite
        node = _at(doc, path)
        if node is not None and castable(node, "DOUBLE") and not math.isfinite(float(node)):
            return f"not_finite:{path}"
    if spec.symbol_field:
        symbol = str(doc[spec.symbol_field])
        if not re.fullmatch(spec.symbol_pattern, symbol):
            currency = re.match("[A-Za-z0-9]*", symbol).group().upper()  # as `quarantine list` cuts it
            known = currency in ("", *(c.upper() for c in spec.currencies))
            return f"{'malformed_instrument' if known else 'unknown_instrument'}:{symbol}"
    return None


def ticker(i: int, **change) -> dict:
    doc = {
        "instrument_name": f"BTC-27DEC24-{90000 + 1000 * (i % 7)}-{'CP'[i % 2]}", "timestamp": 1_735_000_000_000 + i,
        "mark_price": 0.05, "mark_iv": 55.0, "underlying_price": 95000.0, "best_bid_price": 0.049,
        "best_ask_price": 0.051, "open_interest": 10.0, "greeks": {"delta": 0.5, "gamma": 0.0001},
    }  # fmt: skip
    doc.update(change)
    return {k: v for k, v in doc.items() if v != "<absent>"}


def fill(i: int, **change) -> dict:
    doc = {
        "trade_id": f"T-{i}", "instrument_name": "ETH-PERPETUAL", "timestamp": 1_735_000_000_000 + i,
        "direction": "buy", "price": 3300.5, "amount": 1.0, "fee": 0.0001,
    }  # fmt: skip
    doc.update(change)
    return {k: v for k, v in doc.items() if v != "<absent>"}


def cases(kind: str) -> list[tuple[bytes | None, bytes]]:
    make = ticker if kind == "deribit.ticker" else fill
    price, other = ("mark_price", "best_ask_price") if kind == "deribit.ticker" else ("price", "fee")
    bad_values = [
        b'{"instrument_name": "BTC-27DEC24-100000-C", "timest',  # truncated
        b"\xff\xfe not utf-8",
        b"",
        b"null",
        b"[1, 2, 3]",
        b"42",
        b'"a string"',
        b"{}",
        json.dumps(make(1, timestamp="<absent>")).encode(),
        json.dumps(make(2, timestamp=None)).encode(),
        json.dumps(make(3, timestamp="1735000000000")).encode(),
        json.dumps(make(4, instrument_name=12345)).encode(),
        json.dumps(make(5, instrument_name="XYZ-31DEC99-100-C")).encode(),
        json.dumps(make(6, instrument_name="BTC-PERPETUAL-X")).encode(),
        # a known currency's name off the grammar is malformed, an unknown currency's is unknown
        json.dumps(make(22, instrument_name="BTC-32JAN25-1000-C")).encode(),
        json.dumps(make(23, instrument_name="btc-perpetual")).encode(),
        json.dumps(make(24, instrument_name="-PERPETUAL")).encode(),
        json.dumps(make(25, instrument_name="DOGE2-1JAN25")).encode(),
        # epoch ms in ns, µs, negative, a boolean: an int64 overflow stopped the whole drain
        json.dumps(make(12, timestamp=1_735_000_000_000_000_000)).encode(),
        json.dumps(make(13, timestamp=1_735_000_000_000_000)).encode(),
        json.dumps(make(14, timestamp=-9_300_000_000_000_000)).encode(),
        json.dumps(make(15, timestamp=True)).encode(),
        # numbers that parse but are not finite: JSON's NaN / Infinity tokens (json.dumps writes them),
        # a string DuckDB casts to -inf, an exponent past the double range (in an unknown field: ignored)
        json.dumps(make(16, **{price: float("nan")})).encode(),
        json.dumps(make(17, **{other: float("inf")})).encode(),
        json.dumps(make(18, **{price: "-inf"})).encode(),
        json.dumps(make(19)).replace('"timestamp"', '"x": 1e999, "timestamp"').encode(),
        json.dumps(make(20, **{other: 0.125})).replace("0.125", "1e999").encode(),
    ]
    if kind == "deribit.ticker":
        bad_values += [
            json.dumps(ticker(7, mark_iv="high")).encode(),
            json.dumps(ticker(8, greeks={"delta": "0.5"})).encode(),
            json.dumps(ticker(9, greeks=[0.5])).encode(),
            json.dumps(ticker(10, mark_iv=None, greeks="<absent>")).encode(),  # optional and absent: fine
            json.dumps(ticker(11, mark_price=True)).encode(),
            json.dumps(ticker(21, greeks={"delta": 0.5, "gamma": float("-inf")})).encode(),
        ]
    else:
        bad_values += [
            json.dumps(fill(7, price="3300")).encode(),
            json.dumps(fill(8, fee="<absent>", direction=None)).encode(),
            json.dumps(fill(9, amount=[1])).encode(),
        ]
    good = [json.dumps(make(100 + i)).encode() for i in range(300)]
    values = good[:150] + bad_values + good[150:]
    if kind == "desk.fills":
        # the account is in the key; one message carries it in the value, one has neither
        keys: list[bytes | None] = [b"acct-%d" % (i % 3) for i in range(len(values))]
        values.append(json.dumps(fill(500, account_id="acct-in-value")).encode())
        keys.append(None)
        values.append(json.dumps(fill(501)).encode())
        keys.append(None)
        # an empty account in the value is absent (the key's is taken); an empty key is none
        values += [json.dumps(fill(502, account_id="")).encode(), json.dumps(fill(503)).encode()]
        keys += [b"acct-from-key", b""]
    else:
        keys = [b"k"] * len(values)
    return list(zip(keys, values, strict=True))


@pytest.mark.parametrize("kind", ["deribit.ticker", "desk.fills"])
@pytest.mark.parametrize("with_malformed", [True, False], ids=["malformed-fallback", "one-parse"])
def test_every_message_gets_the_fate_a_per_message_reading_gives(kind: str, with_malformed: bool) -> None:
    spec = normalizer_for(kind)
    msgs = cases(kind)
    if not with_malformed:  # the batch parses in one pass, without the validating fallback
        msgs = [(k, v) for k, v in msgs if reference_reason(spec, v, k) != "malformed_json"]
    n = len(msgs)
    raw = pa.table(
        {
            "kafka_topic": pa.array([kind] * n),
            "kafka_partition": pa.array([0] * n, pa.int32()),
            "kafka_offset": pa.array(range(n), pa.int64()),
            "key": pa.array([k for k, _ in msgs], pa.binary()),
            "value": pa.array([v for _, v in msgs], pa.binary()),
            "received_at_us": pa.array([1_735_000_000_000_000] * n, pa.int64()),
        }
    )
    # several chunks, as the drain hands them over: DuckDB parses them in parallel
    raw = pa.Table.from_batches(raw.to_batches(max_chunksize=64))
    con = duckdb.connect()
    staged = stage_batch(con, raw, spec)

    expected = {i: reference_reason(spec, v, k) for i, (k, v) in enumerate(msgs)}
    con.register("quarantine", staged.quarantine)
    got = dict(con.execute('SELECT "offset", error FROM quarantine').fetchall())
    assert got == {i: r for i, r in expected.items() if r is not None}
    assert staged.messages == n
    assert staged.quarantined == len(got) >= (22 if with_malformed else 18)
    quarantined_raw = dict(con.execute('SELECT "offset", raw_value FROM quarantine').fetchall())
    assert quarantined_raw == {i: msgs[i][1] for i in got}  # the exact bytes are kept

    # every good message is in exactly one output, with its provenance
    landed = []
    for _table, rows in staged.outputs:
        landed += rows.column("kafka_offset").to_pylist()
    assert sorted(landed) == sorted(i for i, r in expected.items() if r is None)
    if kind == "desk.fills":
        fills = staged.outputs[0][1]
        accounts = dict(
            zip(fills.column("kafka_offset").to_pylist(), fills.column("account_id").to_pylist(), strict=True)
        )
        for offset, account in accounts.items():
            key, value = msgs[offset]
            assert account == (json.loads(value).get("account_id") or key.decode())


def test_a_book_level_with_a_price_or_amount_that_is_not_a_finite_number_is_quarantined() -> None:
    spec = normalizer_for("deribit.book")
    level_lists = [
        [["new", 95000.5, 10.0]],
        [["new", float("nan"), 10.0]],
        [["change", 95000.5, float("inf")]],
        [["new", "95000.5", "1e999"]],
        [["delete", 95000.5, 0.0], ["new", "abc", 1.0]],
        [["new", 95000.5, 10.0], ["new", 94000.0]],
    ]
    values = [
        json.dumps(
            {"type": "change", "timestamp": 1_735_000_000_000 + i, "instrument_name": "BTC-PERPETUAL",
             "change_id": i + 1, "prev_change_id": i, "bids": bids, "asks": []}
        ).encode()
        for i, bids in enumerate(level_lists)
    ]  # fmt: skip
    n = len(values)
    raw = pa.table(
        {
            "kafka_topic": pa.array(["deribit.book"] * n),
            "kafka_partition": pa.array([0] * n, pa.int32()),
            "kafka_offset": pa.array(range(n), pa.int64()),
            "key": pa.array([b"BTC-PERPETUAL"] * n, pa.binary()),
            "value": pa.array(values, pa.binary()),
            "received_at_us": pa.array([1_735_000_000_000_000] * n, pa.int64()),
        }
    )
    con = duckdb.connect()
    staged = stage_batch(con, raw, spec)
    con.register("quarantine", staged.quarantine)
    got = dict(con.execute('SELECT "offset", error FROM quarantine').fetchall())
    assert got == dict.fromkeys(range(1, n), "wrong_type:book_level")
    assert staged.outputs[0][1].column("kafka_offset").to_pylist() == [0]


def _reasons(spec: TopicNormalizer, docs: list[dict]) -> list[str | None]:
    """Each message's quarantine reason (None: taken) as the drain's parse gives it."""
    n = len(docs)
    raw = pa.table(
        {
            "kafka_topic": pa.array([spec.kind] * n),
            "kafka_partition": pa.array([0] * n, pa.int32()),
            "kafka_offset": pa.array(range(n), pa.int64()),
            "key": pa.array([b"k"] * n, pa.binary()),
            "value": pa.array([json.dumps(d).encode() for d in docs], pa.binary()),
            "received_at_us": pa.array([1_735_000_000_000_000] * n, pa.int64()),
        }
    )
    con = duckdb.connect()
    staged = stage_batch(con, raw, spec)
    con.register("quarantine", staged.quarantine)
    got = dict(con.execute('SELECT "offset", error FROM quarantine').fetchall())
    return [got.get(i) for i in range(n)]


def test_a_name_off_the_grammar_is_unknown_only_when_its_currency_is() -> None:
    """`unknown_instrument:<name>` is what DERIVLAKE_EXTRA_CURRENCIES fixes; a known currency's bad name
    is `malformed_instrument:<name>` (until 2026-12-03 BTC-FOO was `unknown_instrument`, and `quarantine
    list` showed it as `unknown_instrument:BTC`, a currency to add that is known already)."""
    names = ["BTC-FOO", "BTC-32JAN25-1000-C", "btc-perpetual", "XYZ-31DEC99-100-C", "DOGE2-1JAN25",
             "FOO_USDC-PERPETUAL", "HYPE-PERPETUAL", "HYPE-FOO"]  # fmt: skip
    reasons = _reasons(
        normalizer_for("deribit.ticker"), [ticker(i, instrument_name=n) for i, n in enumerate(names)]
    )
    kinds = [r.split(":")[0] for r in reasons]
    assert kinds == ["malformed_instrument"] * 3 + ["unknown_instrument"] * 5
    assert reasons[0] == "malformed_instrument:BTC-FOO"
    # once HYPE is named in DERIVLAKE_EXTRA_CURRENCIES its instruments are taken, its bad names malformed
    extra = _reasons(
        normalizer_for("deribit.ticker", ("HYPE",)),
        [ticker(i, instrument_name=n) for i, n in enumerate(names[-2:])],
    )
    assert extra == [None, "malformed_instrument:HYPE-FOO"]
    index = [
        {"index_name": n, "price": 1.0, "timestamp": 1_735_000_000_000}
        for n in ("btc_eur", "xyz_usd", "eth_usd")
    ]
    assert _reasons(normalizer_for("deribit.index"), index) == [
        "malformed_instrument:btc_eur", "unknown_instrument:xyz_usd", None
    ]  # fmt: skip
