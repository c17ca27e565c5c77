"""librdkafka's log lines: each shape once per window, then a count of what was held back."""

from __future__ import annotations

import logging

from derivlake import kafka_log
from derivlake.kafka_log import RepeatFilter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("derivlake.kafka.client", logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_are_held_back_for_the_window_then_counted(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(kafka_log.time, "monotonic", lambda: now[0])
    f = RepeatFilter(window_s=60)
    line = "%s [%s] %s"
    fail = ("FAIL", "rdkafka#consumer-1", "Connect to ipv4#127.0.0.1:{} failed (after {}ms in state CONNECT)")
    assert f.filter(_record(line, fail[0], fail[1], fail[2].format(9092, 0)))
    shown = []
    for i in range(40):  # 20 a second for two seconds, other numbers each time
        now[0] += 0.05
        shown.append(f.filter(_record(line, fail[0], fail[1], fail[2].format(9092, i))))
    assert not any(shown)
    assert f.filter(_record(line, "FAIL", "rdkafka#consumer-1", "Disconnected"))  # another shape shows
    now[0] = 161.0
    record = _record(line, fail[0], fail[1], fail[2].format(9092, 3))
    assert f.filter(record)
    assert record.getMessage().endswith("(40 more like it in the last 61s)")
    now[0] += 1
    assert not f.filter(_record(line, fail[0], fail[1], fail[2].format(9092, 1)))
