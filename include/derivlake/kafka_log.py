"""librdkafka's log lines, through Python logging and without their repeats.

Left to itself librdkafka writes to stderr, outside logging: a broker that is down gave ~20
"Connect to ... failed" lines a second, burying the task's own error in the Airflow log (190 lines
for one drain that failed after 10 s). Routed here, each distinct line shows once per window; the
next one after the window says how many like it were held back.
"""

from __future__ import annotations

import logging
import re
import time

_NUMBERS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Let a message through once per `window_s`, by its text with the numbers taken out."""

    def __init__(self, window_s: float = 60.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[str, tuple[float, int]] = {}  # shape -> (last shown, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        shape = _NUMBERS.sub("#", record.getMessage())
        now = time.monotonic()
        shown, held = self._seen.get(shape, (None, 0))
        if shown is not None and now - shown < self.window_s:
            self._seen[shape] = (shown, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {now - shown:.0f}s)"
        self._seen[shape] = (now, 0)
        if len(self._seen) > 1000:  # bounded: the oldest shapes go
            for key in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                del self._seen[key]
        return True


CLIENT_LOG = logging.getLogger("derivlake.kafka.client")
CLIENT_LOG.addFilter(RepeatFilter())


def logged(config: dict[str, object]) -> dict[str, object]:
    """A client config whose librdkafka log lines go to CLIENT_LOG."""
    return {**config, "logger": CLIENT_LOG}
