"""Storage failures while serving (read-only file, full disk): logged once a minute per cause.

While the database refuses writes every message fails the same way, and each failure
used to log a traceback from the dispatcher, the runtime and the courier threads: well
over a hundred lines a second that buried the one line saying what was wrong.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

LOG_INTERVAL = 60.0  # seconds between two lines about the same cause


def is_storage_failure(exc: BaseException | None) -> bool:
    """SQLite could not read or write the file (not a constraint or a programming error)."""
    return type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)


class StorageFailureFilter(logging.Filter):
    """Lets one record per storage failure cause through a minute, as one line without
    its traceback, counting the ones it held back."""

    def __init__(self, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._guard = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # cause -> (logged at, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not is_storage_failure(exc):
            return True
        cause = str(exc)
        t = self._clock()
        with self._guard:
            logged_at, held = self._last.get(cause, (float("-inf"), 0))
            if t - logged_at < self._interval:
                self._last[cause] = (logged_at, held + 1)
                return False
            self._last[cause] = (t, 0)
        record.msg = f"{record.getMessage()}: {cause}" + (
            f" ({held} more since the last line)" if held else "")
        record.args = None
        record.exc_info = record.exc_text = None
        return True
