"""Column-wise parse and validation of a whole batch in DuckDB, staged as Arrow.

The batch arrives as an Arrow table of raw Kafka records. One lenient `json_transform` types every
field of every message at once (in parallel over the batch's chunks). Only a row with a NULL where a
checked path must be, or that did not parse, is looked at again: a `json_extract` of the checked paths
tells a missing value from a mistyped one, and `json_valid` malformed JSON from JSON that is not an
object. Clean batches thus cost one parse per message; a batch holding malformed JSON is parsed again
with every text validated first.

The parsed rows and every output's projection (the spec's `.sql` files) are Arrow tables, never
DuckDB temp tables: building a temp table copies every value again on one thread, which cost more
than the parse itself. The intermediates are registered on the connection only while a batch stages.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from derivlake.normalize.spec import MS_TIMESTAMP_MAX, MS_TIMESTAMP_MIN, SQL_DIR, TopicNormalizer

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

# Arrow results come back in batches of this many rows, so the next query over them runs on all cores
ARROW_BATCH_ROWS = 16_384
NAMED_REASONS = ("unknown_instrument:", "malformed_instrument:")
"""Reasons that end with the offending name: counted and reported as one reason, the name cut off."""
_HAS_MACROS: weakref.WeakSet = weakref.WeakSet()


@dataclass(frozen=True)
class StagedBatch:
    """What one batch became, as Arrow tables: the rows of each output lake table, and the
    quarantined messages shaped as `ops.quarantine` (less the run's own columns)."""

    messages: int
    quarantined: int
    outputs: tuple[tuple[str, pa.Table], ...]  # (lake table, its rows)
    quarantine: pa.Table


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _path_expr(root: str, path: str) -> str:
    return root + "".join(f'."{part}"' for part in path.split("."))


def suspect_expression(spec: TopicNormalizer) -> str:
    """True when a row needs the second look: it did not parse, or a checked path came out NULL."""
    return " OR ".join(["t IS NULL", *(f"{_path_expr('t', p)} IS NULL" for p in spec.checked)])


def reason_expression(spec: TopicNormalizer) -> str:
    """A SQL CASE giving the first reason a parsed message is unusable, or NULL.

    `ok` says the text is JSON, `t` is the typed struct and `raw[i]` the i-th checked path as raw
    JSON, present only for suspect rows: a NULL typed value with a non-null raw one had the
    wrong type.
    """
    whens = ["WHEN NOT ok THEN 'malformed_json'"]
    for i, path in enumerate(spec.checked, start=1):
        typed, raw = _path_expr("t", path), f"raw[{i}]"
        if path in spec.required:
            whens.append(
                f"WHEN {typed} IS NULL AND ({raw} IS NULL OR json_type({raw}) = 'NULL') THEN 'missing_field:{path}'"
            )
        whens.append(
            f"WHEN {typed} IS NULL AND {raw} IS NOT NULL AND json_type({raw}) <> 'NULL' THEN 'wrong_type:{path}'"
        )
    for path in spec.ms_timestamps:
        typed = _path_expr("t", path)
        whens.append(
            f"WHEN {typed} NOT BETWEEN {MS_TIMESTAMP_MIN} AND {MS_TIMESTAMP_MAX} THEN 'out_of_range:{path}'"
        )
    if spec.doubles:  # a NaN mark or an infinite size would poison every sum over it downstream
        # x * 0 is NaN for NaN and infinity, else 0 (or NULL): one test per row; the path only for those
        probe = " + ".join(f"coalesce({_path_expr('t', p)} * 0, 0)" for p in spec.doubles)
        name = " ".join(
            f"WHEN NOT isfinite({_path_expr('t', p)}) THEN 'not_finite:{p}'" for p in spec.doubles
        )
        whens.append(f"WHEN NOT isfinite({probe}) THEN CASE {name} END")
    if spec.kind == "deribit.book":
        bad_level = (
            "len(l) <> 3 OR l[1] NOT IN ('new', 'change', 'delete') "
            "OR NOT coalesce(isfinite(TRY_CAST(l[2] AS DOUBLE)), false) "
            "OR NOT coalesce(isfinite(TRY_CAST(l[3] AS DOUBLE)), false)"
        )
        whens.append(
            f"WHEN coalesce(list_bool_or(list_transform(t.bids, l -> {bad_level})), false) "
            f"OR coalesce(list_bool_or(list_transform(t.asks, l -> {bad_level})), false) "
            "THEN 'wrong_type:book_level'"
        )
    if spec.symbol_field:
        # a name off the grammar: `unknown_instrument` when its currency (the leading letters and digits,
        # as `quarantine list` cuts them) is one DERIVLAKE_EXTRA_CURRENCIES could add, else the name itself
        # is wrong (`malformed_instrument`: BTC-FOO, btc-perpetual, a day 32)
        sym = _path_expr("t", spec.symbol_field)
        known = ", ".join(_sql_str(c.upper()) for c in ("", *spec.currencies))
        whens.append(
            f"WHEN NOT regexp_full_match({sym}, {_sql_str(spec.symbol_pattern)}) "
            f"THEN CASE WHEN upper(regexp_extract({sym}, '^[A-Za-z0-9]*')) IN ({known}) "
            f"THEN 'malformed_instrument:' ELSE 'unknown_instrument:' END || {sym}"
        )
    return "CASE " + " ".join(whens) + " END"


def parse_query(spec: TopicNormalizer, source: str = "raw_batch", guarded: bool = False) -> str:
    """One pass over the raw records: provenance, the typed struct `t` and the quarantine reason.

    Unguarded, malformed JSON anywhere in the batch makes the query fail; `guarded` validates every
    text first (a second parse of each message), so it is the fallback for batches that need it.
    """
    transform = f"json_transform(txt, {_sql_str(spec.structure())})"
    if guarded:
        transform = f"CASE WHEN json_valid(txt) THEN {transform} END"
    fix = "t0"
    if spec.key_fallback:
        # the Kafka key carries the account; the exchange's own payload does not (empty is absent)
        fb = spec.key_fallback
        fix = f"struct_update(t0, {fb} := coalesce(nullif(t0.{fb}, ''), nullif(try(decode(key)), '')))"
    paths = ", ".join(_sql_str("$." + p) for p in spec.checked)
    return f"""
        WITH decoded AS (
            SELECT kafka_topic, kafka_partition, kafka_offset, received_at_us, key, try(decode(value)) AS txt
            FROM {source}
        ), typed AS (
            SELECT *, {transform} AS t0 FROM decoded
        ), fixed AS (
            -- json_valid only where the typed parse failed (malformed text, or the JSON `null`); a CASE,
            -- since DuckDB evaluates both sides of an OR on every row: that was a second parse of each
            SELECT *, {fix} AS t,
                   CASE WHEN t0 IS NOT NULL THEN true ELSE coalesce(json_valid(txt), false) END AS ok
            FROM typed
        ), checked AS (
            SELECT *, CASE WHEN ok AND ({suspect_expression(spec)}) THEN json_extract(txt, [{paths}]) END AS raw
            FROM fixed
        )
        SELECT kafka_topic, kafka_partition, kafka_offset, received_at_us, t, {reason_expression(spec)} AS reason
        FROM checked
        """


def stage_batch(con: duckdb.DuckDBPyConnection, raw: pa.Table, spec: TopicNormalizer) -> StagedBatch:
    """Parse, validate and project one batch (no lake write): `con` only holds the intermediate
    views while it runs, so the drain stages the next batch on its own connection meanwhile."""
    import duckdb

    if con not in _HAS_MACROS:  # once per connection: each DDL statement also costs a lake transaction
        con.execute((SQL_DIR / "macros.sql").read_text())
        _HAS_MACROS.add(con)
    con.register("raw_batch", raw)
    try:
        try:
            parsed = con.sql(parse_query(spec)).to_arrow_table(ARROW_BATCH_ROWS)
        except duckdb.InvalidInputException:
            # malformed JSON in the batch: parse again with every text validated first (per-row `try`
            # would be 4x slower on a batch with 1% malformed messages)
            parsed = con.sql(parse_query(spec, guarded=True)).to_arrow_table(ARROW_BATCH_ROWS)
        con.register("parsed", parsed)
        con.execute("CREATE OR REPLACE TEMP VIEW good AS SELECT * FROM parsed WHERE reason IS NULL")
        quarantine = con.sql((SQL_DIR / "quarantine.sql").read_text()).to_arrow_table(ARROW_BATCH_ROWS)
        outputs = tuple(
            (out.table, con.sql(out.sql).to_arrow_table(ARROW_BATCH_ROWS)) for out in spec.outputs
        )
    finally:
        for name in ("raw_batch", "parsed"):
            con.unregister(name)
    return StagedBatch(parsed.num_rows, quarantine.num_rows, outputs, quarantine)
