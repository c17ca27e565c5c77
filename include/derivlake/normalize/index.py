"""`deribit.index`: index price ticks -> market.index_prices."""

from derivlake.normalize.spec import Output, TopicNormalizer, index_pattern

SPEC = TopicNormalizer(
    kind="deribit.index",
    fields={"index_name": "VARCHAR", "price": "DOUBLE", "timestamp": "BIGINT"},
    required=("index_name", "price", "timestamp"),
    outputs=(Output("market.index_prices", "index_prices.sql"),),
    symbol_field="index_name",
    symbol_grammar=index_pattern,
)
