"""Claims on messages being answered, shared by every thread and process on one database.

WeChat resends a message it got no answer to, and the resend may reach another gunicorn
worker while the first is still answering. A claim says "this message is being answered":
a POSIX lock on one byte of a lock file, at an offset derived from the message's dedupe
key. The kernel checks it across processes in one system call and drops it when its
process dies, so a crash never leaves a message claimed; the message row in SQLite,
written with the answer, is what marks a message as done.

Not a row committed before answering: that was a second write transaction per message,
queueing for the one database write lock that every message's own writes need.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from pathlib import Path
from typing import IO

from bot.storage.engine import private_opener

# Keys map to byte offsets below 2**62 (a lock's offset is a signed 64-bit off_t). Two
# messages in flight at once share an offset with odds of about one in 10**17; if they
# did, the later one would get "success" and its answer would be lost.
_OFFSETS = 1 << 62


class Claims:
    """Non-blocking claims on keys: one holder at a time across threads and processes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        # POSIX locks belong to the process, so threads of one process are told apart here.
        self._guard = threading.Lock()
        self._held: dict[str, int] = {}  # key -> its locked offset
        self._file: tuple[int, IO[str]] | None = None  # (pid, file): forks need their own

    def claim(self, key: str) -> bool:
        """Take the claim on key; False if another thread or process holds it."""
        with self._guard:
            if key in self._held:
                return False
            offset = _offset(key)
            try:
                fcntl.lockf(self._lock_file(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            except OSError:  # EAGAIN/EACCES: another process holds it
                return False
            self._held[key] = offset
            return True

    def release(self, key: str) -> None:
        """Give up a claim taken with claim() (from any thread of the process)."""
        with self._guard:
            offset = self._held.pop(key, None)
            if offset is not None:
                fcntl.lockf(self._lock_file(), fcntl.LOCK_UN, 1, offset)

    def _lock_file(self) -> IO[str]:
        # Closing any descriptor of the file would drop all of the process's locks on it,
        # so each process opens it once and keeps it open.
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), open(self._path, "a", opener=private_opener))
        return self._file[1]


def _offset(key: str) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _OFFSETS
