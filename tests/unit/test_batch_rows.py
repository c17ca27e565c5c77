"""How many rows a batch of messages will project to: what sizes the drain's batches."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from derivlake.ingest.drain import estimated_rows
from derivlake.normalize import normalizer_for
from tests.conftest import subscription_data


def test_book_rows_are_the_levels_of_the_real_capture(fixtures_dir: Path) -> None:
    books = subscription_data(fixtures_dir / "deribit-ws-2021-07-22.capture", "book.")
    levels = [len(b["bids"]) + len(b["asks"]) for b in books]
    values = pa.array([json.dumps(b).encode() for b in books], pa.binary())
    lists = normalizer_for("deribit.book").exploded_lists
    assert lists == 2 and len(books) > 20 and sum(levels) > len(books)
    assert estimated_rows(values, lists, sample=len(books)) == sum(levels)  # every message counted
    # from every other message, scaled by bytes: an estimate (it only sizes batches); the capture mixes
    # snapshots of up to 27 levels with changes of one or two, so a small sample is a rough one
    assert abs(estimated_rows(values, lists, sample=len(books) // 2) - sum(levels)) <= 0.15 * sum(levels)


def test_a_message_that_does_not_explode_is_one_row() -> None:
    assert normalizer_for("deribit.ticker").exploded_lists == 0
    values = pa.array([b'{"bids": [[1, 2]], "instrument_name": "x"}'] * 7, pa.binary())
    assert estimated_rows(values, 0) == 7
