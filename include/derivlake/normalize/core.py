"""Column-wise parse and validation of a whole batch in DuckDB.

The batch arrives as an Arrow table of raw Kafka records. One lenient `json_transform` types every
field of every message at once; one `json_extract` of the checked paths tells a missing value from a
mistyped one (which the lenient transform turned into NULL). Rows with a reason go to quarantine, the rest are projected by the spec's `.sql`
files into temp tables named `stage_<n>`, ready for the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from derivlake.normalize.spec import SQL_DIR, TopicNormalizer

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

RAW_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "key", "value", "received_at_us")


@dataclass(frozen=True)
class StagedBatch:
    """What one batch became: per-output temp tables and the quarantine temp table."""

    messages: int
    quarantined: int
    stage_tables: tuple[tuple[str, str], ...]  # (lake table, temp table)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _path_expr(root: str, path: str) -> str:
    return root + "".join(f'."{part}"' for part in path.split("."))


def reason_expression(spec: TopicNormalizer) -> str:
    """A SQL CASE giving the first reason a parsed message is unusable, or NULL.

    `raw[i]` is the i-th checked path as raw JSON (NULL when absent): present but NULL after the
    typed transform means the value had the wrong type.
    """
    # valid JSON that is not an object fails on its required fields: no extra parse for it
    whens = ["WHEN js IS NULL THEN 'malformed_json'"]
    for i, path in enumerate(spec.checked, start=1):
        raw = f"raw[{i}]"
        if path in spec.required:
            whens.append(f"WHEN {raw} IS NULL OR json_type({raw}) = 'NULL' THEN 'missing_field:{path}'")
        whens.append(
            f"WHEN {_path_expr('t', path)} IS NULL AND {raw} IS NOT NULL AND json_type({raw}) <> 'NULL' "
            f"THEN 'wrong_type:{path}'"
        )
    if spec.kind == "deribit.book":
        bad_level = (
            "len(l) <> 3 OR l[1] NOT IN ('new', 'change', 'delete') OR TRY_CAST(l[2] AS DOUBLE) IS NULL "
            "OR TRY_CAST(l[3] AS DOUBLE) IS NULL"
        )
        whens.append(
            f"WHEN coalesce(list_bool_or(list_transform(t.bids, l -> {bad_level})), false) "
            f"OR coalesce(list_bool_or(list_transform(t.asks, l -> {bad_level})), false) "
            "THEN 'wrong_type:book_level'"
        )
    if spec.symbol_field:
        sym = _path_expr("t", spec.symbol_field)
        whens.append(
            f"WHEN NOT regexp_full_match({sym}, {_sql_str(spec.symbol_pattern)}) "
            f"THEN 'unknown_instrument:' || {sym}"
        )
    return "CASE " + " ".join(whens) + " END"


def stage_batch(con: duckdb.DuckDBPyConnection, raw: pa.Table, spec: TopicNormalizer) -> StagedBatch:
    """Parse, validate and project one batch into temp tables on `con` (no lake write yet)."""
    con.execute((SQL_DIR / "macros.sql").read_text())
    con.register("raw_batch", raw)
    typed_expr = f"json_transform(js, {_sql_str(spec.structure())})"
    paths = ", ".join(_sql_str("$." + p) for p in spec.checked)
    raw_expr = f"json_extract(js, [{paths}])"
    if spec.key_fallback:
        # the Kafka key carries the account; the exchange's own payload does not
        fb, i = spec.key_fallback, spec.checked.index(spec.key_fallback) + 1
        fix_t = f"struct_update(t0, {fb} := coalesce(t0.{fb}, try(decode(key))))"
        fix_raw = f"list_transform(raw0, (x, i) -> CASE WHEN i = {i} THEN coalesce(x, to_json(try(decode(key)))) ELSE x END)"
    else:
        fix_t, fix_raw = "t0", "raw0"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE parsed AS
        WITH decoded AS (
            SELECT *, try(decode(value)) AS txt FROM raw_batch
        ), valid AS (
            SELECT *, CASE WHEN json_valid(txt) THEN txt END AS js FROM decoded
        ), typed AS (
            SELECT *, {typed_expr} AS t0, {raw_expr} AS raw0 FROM valid
        ), fixed AS (
            SELECT *, {fix_t} AS t, {fix_raw} AS raw FROM typed
        )
        SELECT kafka_topic, kafka_partition, kafka_offset, key, value, received_at_us, t,
               {reason_expression(spec)} AS reason
        FROM fixed
        """
    )
    con.unregister("raw_batch")
    con.execute("CREATE OR REPLACE TEMP VIEW good AS SELECT * FROM parsed WHERE reason IS NULL")
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE stage_quarantine AS
        SELECT kafka_topic AS topic, kafka_partition AS partition, kafka_offset AS "offset", key,
               value AS raw_value, reason AS error, make_timestamp(received_at_us) AS received_at
        FROM parsed WHERE reason IS NOT NULL
        """
    )
    stages = []
    for i, out in enumerate(spec.outputs):
        name = f"stage_{i}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {out.sql}")
        stages.append((out.table, name))
    messages, quarantined = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE reason IS NOT NULL) FROM parsed"
    ).fetchone()
    return StagedBatch(int(messages), int(quarantined), tuple(stages))
