"""A stop request from SIGTERM / Ctrl-C that the feeds honour between batches, so the producer flushes.

`docker stop`, systemd and `scripts/demo.sh` stop the feed with SIGTERM, and in docker-compose it runs as
PID 1, where SIGTERM has no default action at all. The handler only sets a flag (and wakes an event loop):
raising from it could land between a produce and its count, or inside a delivery callback, and the counts
the feed reports would no longer match the topics. The feeds check the flag after each batch and return
normally; the CLI then flushes and reports delivered / lost. A second signal aborts at once (raises
KeyboardInterrupt), as a second Ctrl-C is meant to.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Set once by a signal handler (or a test); falsy until then."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._wakeups: list[Callable[[], None]] = []

    def __bool__(self) -> bool:
        return self.reason is not None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        for wake in list(self._wakeups):
            wake()

    def on_stop(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` when the stop is set (from the signal handler: it must only schedule work, e.g.
        `loop.call_soon_threadsafe`); returns the function that unregisters it."""
        self._wakeups.append(wake)
        return lambda: self._wakeups.remove(wake)

    def sleep(self, seconds: float) -> bool:
        """Sleep, cut short by a stop (a signal does not end `time.sleep` by itself); False if stopped."""
        end = time.monotonic() + seconds
        while not self:
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.1))
        return False


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """While inside, the first of `signals` sets `stop`; another one raises KeyboardInterrupt."""

    def handler(signum: int, frame: object) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.set(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
