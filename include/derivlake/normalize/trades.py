"""`deribit.trades`: one public trade per message -> market.trades (deduplicated on trade_id)."""

from derivlake.normalize.spec import Output, TopicNormalizer

SPEC = TopicNormalizer(
    kind="deribit.trades",
    fields={
        "trade_id": "VARCHAR", "trade_seq": "BIGINT", "instrument_name": "VARCHAR", "timestamp": "BIGINT",
        "direction": "VARCHAR", "price": "DOUBLE", "amount": "DOUBLE", "index_price": "DOUBLE",
        "mark_price": "DOUBLE", "iv": "DOUBLE", "tick_direction": "INTEGER", "liquidation": "VARCHAR",
        "block_trade_id": "VARCHAR",
    },
    required=("trade_id", "instrument_name", "timestamp", "direction", "price", "amount"),
    type_checked=("trade_seq", "index_price", "mark_price", "iv"),
    outputs=(Output("market.trades", "trades.sql", dedup_key=("symbol", "id"), dedup_same_time=True),),
    symbol_field="instrument_name",
)  # fmt: skip
