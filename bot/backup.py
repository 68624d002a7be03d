"""`run.py backup DEST`: the database and the key files it needs, copied while serving."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from bot.settings import Settings
from bot.startup import key_files
from bot.storage import engine
from bot.storage.engine import private_opener


class BackupError(Exception):
    """The backup cannot be made; the message says why."""


def backup(settings: Settings, dest: Path) -> list[Path]:
    """Copy the database and the generated key files into dest (owner-only); returns the files.

    A copy without its key cannot be read, so both go into one folder, which must be new
    or empty: files of two moments must not mix.
    """
    database = settings.storage.database
    if not database.exists():
        raise BackupError(f"数据库 {database} 不存在")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    if any(dest.iterdir()):
        raise BackupError(f"备份文件夹 {dest} 不是空的，请换一个新文件夹")
    written = [dest / database.name]
    engine.backup(database, written[0])
    for key in key_files(settings):
        with open(key, "rb") as source, open(dest / key.name, "wb", opener=private_opener) as copy:
            shutil.copyfileobj(source, copy)
        written.append(dest / key.name)
    return written
