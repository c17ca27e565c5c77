"""The feed's `received_at` header: a bad one falls back to the Kafka timestamp, never stops a drain."""

from __future__ import annotations

import pytest

from derivlake.ingest.drain import _header_us


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"1735000000000000", 1_735_000_000_000_000),
        (b"99999999999999999999999", None),  # beyond int64: its Arrow array overflowed, every run
        (b"32503766400000000", None),  # year 3000 and later
        (b"-5", None),
        (b"soon", None),
        (b"", None),
    ],
)
def test_received_at_header(value: bytes, expected: int | None) -> None:
    assert _header_us([("source", b"simulator"), ("received_at", value)]) == expected
    assert _header_us(None) is None
