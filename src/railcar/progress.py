"""Progress reporting for long work (payload generation, apply, downloads, builds).

Core code takes a :class:`Progress` and calls ``start``/``advance``/``finish``; it never knows
whether anyone watches. The CLI passes :class:`TerminalProgress` when stderr is a terminal and
:data:`NO_PROGRESS` otherwise, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    """Reports nothing."""

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


NO_PROGRESS = NoProgress()

_MIB = 1 << 20


class TerminalProgress:
    """One self-rewriting line on a terminal: label, percent, MiB done, rate."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.1) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._label = ""
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._last_draw = 0.0

    def start(self, label: str, total: int) -> None:
        self._label, self._total, self._done = label, total, 0
        self._started = self._last_draw = time.monotonic()
        self._draw(time.monotonic())

    def advance(self, amount: int) -> None:
        self._done += amount
        now = time.monotonic()
        if now - self._last_draw >= self._interval:
            self._draw(now)

    def finish(self) -> None:
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        self._last_draw = now
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / _MIB / elapsed
        if self._total:
            pct = min(100.0, 100.0 * self._done / self._total)
            line = (
                f"\r{self._label}: {pct:5.1f}%  {self._done / _MIB:,.0f}/"
                f"{self._total / _MIB:,.0f} MiB  {rate:,.1f} MiB/s"
            )
        else:
            line = f"\r{self._label}: {self._done / _MIB:,.0f} MiB  {rate:,.1f} MiB/s"
        self._stream.write(line)
        self._stream.flush()


def for_terminal(stream: TextIO | None = None) -> Progress:
    """TerminalProgress when ``stream`` (stderr by default) is a terminal, else NO_PROGRESS."""
    stream = stream if stream is not None else sys.stderr
    return TerminalProgress(stream) if stream.isatty() else NO_PROGRESS
