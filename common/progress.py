"""Progress bars for the long stages that read well on a terminal AND in a log file.

On a terminal, a tqdm bar on stderr is redrawn in place. In a log (CI, ``dvc repro 2>&1 | tee log``)
tqdm's in-place redraws are carriage returns that pile up on one line, so there the same bar is written
as a plain line at most every ``DEXTER_PROGRESS_INTERVAL`` seconds (default 15). Either way a bar that
finishes within its first interval (2 s on a terminal) prints nothing: short loops stay quiet.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

from tqdm import tqdm

INTERVAL_ENV = "DEXTER_PROGRESS_INTERVAL"
LOG_INTERVAL_S = 15.0
TTY_DELAY_S = 2.0


class LineWriter:
    """A file for tqdm that turns its in-place redraws into whole lines, at most one per ``interval``
    seconds (a caller may force redraws, e.g. ``set_postfix``); the final state of a bar that is left
    on screen is always written, a bar that clears itself (``leave=False``) leaves nothing behind."""

    def __init__(self, stream: IO[str], interval: float = LOG_INTERVAL_S) -> None:
        self.stream = stream
        self.interval = interval
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self._pending: str | None = None
        self._last = time.monotonic()
        self._last_count: str | None = None

    def write(self, s: str) -> int:
        text = s.replace("\r", "").strip()
        if text:
            self._pending = text
            if time.monotonic() - self._last >= self.interval:
                self._emit()
        elif "\n" in s:  # tqdm ends a bar that stays on screen: its final state
            self._emit()
        elif "\r" in s:  # a bar clearing itself
            self._pending = None
        return len(s)

    def _emit(self) -> None:
        if self._pending is not None:
            count = self._pending.split("[", 1)[0]  # description, bar and count, without timings
            if count != self._last_count:
                self.stream.write(self._pending + "\n")
                self._last_count = count
            self._pending = None
            self._last = time.monotonic()

    def flush(self) -> None:
        self.stream.flush()


def log_interval() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None:
        return LOG_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds") from None
    return max(value, 0.0)


def progress_bar(iterable=None, *, desc: str | None = None, total: float | None = None, unit: str = "it",
                 leave: bool = True, disable: bool = False, stream: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on ``stream`` (default stderr): in place on a terminal, periodic lines elsewhere."""
    stream = stream if stream is not None else sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if is_tty:
        settings = dict(file=stream, mininterval=0.5, delay=TTY_DELAY_S, dynamic_ncols=True)
    else:
        interval = log_interval()
        settings = dict(file=LineWriter(stream, interval), mininterval=interval, maxinterval=max(interval, 10.0),
                        delay=interval)
    settings.update(kwargs)
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, **settings)
