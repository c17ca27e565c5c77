"""`desk.fills`: account fills (`user.trades` shape, account in the Kafka key) -> desk.fills."""

from derivlake.normalize.spec import Output, TopicNormalizer

SPEC = TopicNormalizer(
    kind="desk.fills",
    fields={
        "account_id": "VARCHAR", "trade_id": "VARCHAR", "order_id": "VARCHAR", "instrument_name": "VARCHAR",
        "timestamp": "BIGINT", "direction": "VARCHAR", "price": "DOUBLE", "amount": "DOUBLE",
        "liquidity": "VARCHAR", "fee": "DOUBLE", "fee_currency": "VARCHAR", "order_type": "VARCHAR",
        "iv": "DOUBLE", "underlying_price": "DOUBLE", "index_price": "DOUBLE", "mark_price": "DOUBLE",
        "label": "VARCHAR", "reduce_only": "BOOLEAN", "post_only": "BOOLEAN", "profit_loss": "DOUBLE",
        "block_trade_id": "VARCHAR",
    },
    required=("account_id", "trade_id", "instrument_name", "timestamp", "direction", "price", "amount"),
    type_checked=("fee", "iv", "underlying_price", "mark_price"),
    outputs=(Output("desk.fills", "fills.sql", dedup_key=("account_id", "trade_id")),),
    symbol_field="instrument_name",
    key_fallback="account_id",
)  # fmt: skip
