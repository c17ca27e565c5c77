"""`desk.transfers`: deposits and withdrawals -> desk.transfers (deduplicated on transfer_id)."""

from derivlake.normalize.spec import Output, TopicNormalizer

SPEC = TopicNormalizer(
    kind="desk.transfers",
    fields={
        "account_id": "VARCHAR", "transfer_id": "VARCHAR", "currency": "VARCHAR", "amount": "DOUBLE",
        "timestamp": "BIGINT",
    },
    required=("account_id", "transfer_id", "currency", "amount", "timestamp"),
    outputs=(Output("desk.transfers", "transfers.sql", dedup_key=("transfer_id",)),),
    key_fallback="account_id",
)  # fmt: skip
