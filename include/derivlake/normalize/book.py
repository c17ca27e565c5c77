"""`deribit.book`: snapshots and changes exploded into one row per level (deduplicated on change_id)."""

from derivlake.normalize.spec import Output, TopicNormalizer

SPEC = TopicNormalizer(
    kind="deribit.book",
    fields={
        "type": "VARCHAR", "timestamp": "BIGINT", "instrument_name": "VARCHAR", "change_id": "BIGINT",
        "prev_change_id": "BIGINT", "bids": [["VARCHAR"]], "asks": [["VARCHAR"]],
    },
    required=("instrument_name", "timestamp", "change_id"),
    type_checked=("prev_change_id", "bids", "asks"),  # a list of levels, or absent (no levels)
    outputs=(Output("market.book_l2", "book_l2.sql", dedup_key=("symbol", "change_id", "is_snapshot"), exploded=True,
                   dedup_same_time=True),),
    symbol_field="instrument_name",
)  # fmt: skip
