"""A partition that stops delivering mid-drain (its leader gone, a fetch that never returns).

One embedded broker cannot make one partition stall while another flows, so this is the fault the
test scripts: a stand-in consumer serves partition 0 to its end and partition 1 halfway. The lake is
real. The drain ends at its idle timeout and must commit what it read: it used to drop it, so while
the backlog fit in one batch no partition of the topic ever moved on.
"""

from __future__ import annotations

import json
from collections import deque

from confluent_kafka import KafkaError

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings, TopicSpec
from derivlake.ingest.drain import Drain
from derivlake.lake.catalog import open_lake


class _Message:
    def __init__(self, partition: int, offset: int, value: bytes | None = None, err=None) -> None:
        self._p, self._o, self._v, self._e = partition, offset, value, err

    def error(self):
        return self._e

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._v

    def headers(self) -> list:
        return [("received_at", b"1735000000000000")]

    def timestamp(self) -> tuple[int, int]:
        return (1, 1735000000000)


class _StallingConsumer:
    """Partition 0: 10 messages and its end. Partition 1: high watermark 20, but only 10 come."""

    def __init__(self) -> None:
        self.high = {0: 10, 1: 20}
        self.queue: deque[_Message] = deque()

    def get_watermark_offsets(self, tp, timeout=None, cached=False) -> tuple[int, int]:
        return 0, self.high[tp.partition]

    def assign(self, tps) -> None:
        for tp in tps:
            self.queue.extend(_Message(tp.partition, o, _tick(o)) for o in range(tp.offset, 10))
            if tp.partition == 0:
                self.queue.append(_Message(0, 10, err=KafkaError(KafkaError._PARTITION_EOF)))

    def consume(self, num_messages: int = 1, timeout: float = 0) -> list[_Message]:
        return [self.queue.popleft() for _ in range(min(num_messages, len(self.queue)))]

    def pause(self, tps) -> None: ...
    def unassign(self) -> None: ...
    def commit(self, offsets=None, asynchronous: bool = False) -> None: ...
    def close(self) -> None: ...
    def list_topics(self, topic=None, timeout=None) -> None: ...
    def poll(self, timeout: float) -> None: ...


def _tick(offset: int) -> bytes:
    return json.dumps(
        {"instrument_name": "BTC-PERPETUAL", "timestamp": 1735000000000 + offset, "mark_price": 1.0}
    ).encode()


class _StallingDrain(Drain):
    def _consumer(self) -> _StallingConsumer:
        return _StallingConsumer()

    def _partitions(self, consumer) -> list[int]:
        return [0, 1]

    def _topic_id(self) -> None:  # no broker to ask
        return None


def test_a_stalled_partition_ends_the_drain_with_what_was_read_committed(lake_settings: LakeSettings) -> None:
    topic = TopicSpec("deribit.ticker", "deribit.ticker", 2, "ticker")
    drain = _StallingDrain(KafkaSettings(), lake_settings, topic, DrainSettings(idle_timeout_s=1.0))
    result = drain.run()
    assert result.stopped_early.startswith("no data or end-of-partition for 1.0s"), result
    assert (result.messages, result.offsets, result.lag) == (20, {0: 10, 1: 10}, 10)
    con = open_lake(lake_settings, read_only=True)
    try:
        rows = con.execute(
            "SELECT kafka_partition, count(*), max(kafka_offset) FROM market.derivative_ticker GROUP BY ALL ORDER BY 1"
        ).fetchall()
        stored = con.execute(
            "SELECT partition, next_offset FROM ops.kafka_offsets WHERE topic = 'deribit.ticker' ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert rows == [(0, 10, 9), (1, 10, 9)] and stored == [(0, 10), (1, 10)]
