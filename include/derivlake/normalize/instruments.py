"""`deribit.instruments`: get_instruments objects -> market.instruments versions."""

from derivlake.normalize.spec import Output, TopicNormalizer

# A new version is kept only when one of these changes; identical repeats are upstream duplicates.
VERSION_KEY = (
    "instrument_name", "kind", "instrument_type", "option_type", "strike", "expiration_ts", "creation_ts",
    "settlement_period", "contract_size", "tick_size", "min_trade_amount", "price_index", "is_active",
    "maker_commission", "taker_commission", "block_trade_commission",
)  # fmt: skip

SPEC = TopicNormalizer(
    kind="deribit.instruments",
    fields={
        "instrument_name": "VARCHAR", "kind": "VARCHAR", "base_currency": "VARCHAR",
        "quote_currency": "VARCHAR", "settlement_currency": "VARCHAR", "counter_currency": "VARCHAR",
        "instrument_type": "VARCHAR", "future_type": "VARCHAR", "option_type": "VARCHAR", "strike": "DOUBLE",
        "expiration_timestamp": "BIGINT", "creation_timestamp": "BIGINT", "settlement_period": "VARCHAR",
        "contract_size": "DOUBLE", "tick_size": "DOUBLE", "min_trade_amount": "DOUBLE",
        "price_index": "VARCHAR", "is_active": "BOOLEAN", "maker_commission": "DOUBLE",
        "taker_commission": "DOUBLE", "block_trade_commission": "DOUBLE",
    },
    required=("instrument_name", "kind", "base_currency", "expiration_timestamp"),
    type_checked=("strike", "contract_size", "tick_size", "creation_timestamp", "is_active"),
    outputs=(Output("market.instruments", "instruments.sql", dedup_key=VERSION_KEY, versions_of="instrument_name"),),
    symbol_field="instrument_name",
)  # fmt: skip
