"""Topic kind -> its normalizer."""

from __future__ import annotations

from derivlake.normalize import book, fills, index, instruments, ticker, trades, transfers
from derivlake.normalize.spec import TopicNormalizer

NORMALIZERS: dict[str, TopicNormalizer] = {
    spec.kind: spec
    for spec in (
        instruments.SPEC, ticker.SPEC, trades.SPEC, book.SPEC, index.SPEC, fills.SPEC, transfers.SPEC
    )
}  # fmt: skip


def normalizer_for(kind: str) -> TopicNormalizer:
    try:
        return NORMALIZERS[kind]
    except KeyError:
        raise ValueError(f"no normalizer for topic kind {kind!r}; known: {sorted(NORMALIZERS)}") from None
