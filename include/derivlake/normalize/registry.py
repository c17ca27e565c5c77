"""Topic kind -> its normalizer."""

from __future__ import annotations

from dataclasses import replace

from derivlake.normalize import book, fills, index, instruments, ticker, trades, transfers
from derivlake.normalize.spec import TopicNormalizer

NORMALIZERS: dict[str, TopicNormalizer] = {
    spec.kind: spec
    for spec in (
        instruments.SPEC, ticker.SPEC, trades.SPEC, book.SPEC, index.SPEC, fills.SPEC, transfers.SPEC
    )
}  # fmt: skip


def normalizer_for(kind: str, extra_currencies: tuple[str, ...] = ()) -> TopicNormalizer:
    """The topic kind's normalizer; `extra_currencies` (DERIVLAKE_EXTRA_CURRENCIES) are taken in
    instrument and index names besides KNOWN_CURRENCIES (a listing newer than this version)."""
    try:
        spec = NORMALIZERS[kind]
    except KeyError:
        raise ValueError(f"no normalizer for topic kind {kind!r}; known: {sorted(NORMALIZERS)}") from None
    extra = tuple(c for c in extra_currencies if c not in spec.currencies)
    return replace(spec, currencies=spec.currencies + extra) if extra else spec
