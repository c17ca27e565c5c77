"""Parser of the capture line format of `fixtures/deribit-ws` (cryptofeed's sample_data layout).

Lines: `<url> <-> <ts>` opens a websocket session, `<url> <- <ts>: <json>` was sent by the client,
`<ts>: <json>` was received at local time ts (seconds), `<url> -> <ts>: <json>` is a REST response.
Anything else (e.g. cryptofeed's `configuration:` trailer, blank lines) is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_RECEIVED = re.compile(r"^(\d+(?:\.\d+)?): (.*)$")
_SENT = re.compile(r"^(\S+) <- (\d+(?:\.\d+)?): (.*)$")
_REST = re.compile(r"^(\S+) -> (\d+(?:\.\d+)?): (.*)$")
_OPEN = re.compile(r"^(\S+) <-> (\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class CaptureRecord:
    kind: str  # "open" | "sent" | "received" | "rest"
    local_ts: float  # seconds, the capturing machine's clock
    url: str | None
    payload: object  # decoded JSON (None for "open")

    @property
    def local_us(self) -> int:
        return round(self.local_ts * 1_000_000)


def parse_line(line: str) -> CaptureRecord | None:
    line = line.rstrip("\r\n")
    if m := _RECEIVED.match(line):
        return CaptureRecord("received", float(m[1]), None, json.loads(m[2]))
    if m := _SENT.match(line):
        return CaptureRecord("sent", float(m[2]), m[1], json.loads(m[3]))
    if m := _REST.match(line):
        return CaptureRecord("rest", float(m[2]), m[1], json.loads(m[3]))
    if m := _OPEN.match(line):
        return CaptureRecord("open", float(m[2]), m[1], None)
    return None


def capture_files(path: Path) -> list[Path]:
    """A capture file, or every `*.capture` file of a folder (sorted)."""
    return sorted(path.glob("*.capture")) if path.is_dir() else [path]


def read_capture(path: Path) -> Iterator[CaptureRecord]:
    """Records of one file or folder, in local-time order (stable for equal times)."""
    records: list[CaptureRecord] = []
    for file in capture_files(path):
        with open(file, encoding="utf-8") as fh:
            records.extend(r for r in map(parse_line, fh) if r is not None)
    records.sort(key=lambda r: r.local_ts)
    return iter(records)
