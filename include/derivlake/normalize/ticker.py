"""`deribit.ticker`: one topic, two tables: options_ticker and derivative_ticker (futures, perpetuals)."""

from derivlake.normalize.spec import Output, TopicNormalizer

SPEC = TopicNormalizer(
    kind="deribit.ticker",
    fields={
        "instrument_name": "VARCHAR", "timestamp": "BIGINT", "state": "VARCHAR",
        "stats": {"volume": "DOUBLE", "volume_usd": "DOUBLE", "high": "DOUBLE", "low": "DOUBLE",
                  "price_change": "DOUBLE"},
        "open_interest": "DOUBLE", "best_bid_price": "DOUBLE", "best_bid_amount": "DOUBLE",
        "best_ask_price": "DOUBLE", "best_ask_amount": "DOUBLE", "index_price": "DOUBLE",
        "mark_price": "DOUBLE", "last_price": "DOUBLE", "underlying_price": "DOUBLE",
        "underlying_index": "VARCHAR", "interest_rate": "DOUBLE", "bid_iv": "DOUBLE", "ask_iv": "DOUBLE",
        "mark_iv": "DOUBLE",
        "greeks": {"delta": "DOUBLE", "gamma": "DOUBLE", "vega": "DOUBLE", "theta": "DOUBLE", "rho": "DOUBLE"},
        "settlement_price": "DOUBLE", "estimated_delivery_price": "DOUBLE", "current_funding": "DOUBLE",
        "funding_8h": "DOUBLE",
    },
    required=("instrument_name", "timestamp", "mark_price"),
    type_checked=("mark_iv", "underlying_price", "best_bid_price", "best_ask_price", "open_interest", "greeks.delta"),
    outputs=(
        Output("market.options_ticker", "options_ticker.sql"),
        Output("market.derivative_ticker", "derivative_ticker.sql"),
    ),
    symbol_field="instrument_name",
)  # fmt: skip
