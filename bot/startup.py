"""Start-up checks of the data folder: the database takes writes, and the data key fits it.

A failed check stops start-up with one line for the operator (StartupError), instead of a
service that answers every message with an error or can no longer read what it stored.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from bot.privacy import Vault, load_or_create_key
from bot.settings import Settings
from bot.storage import applications, engine, kv, migrations

DATA_KEY_FILE = "secret.key"
CONSOLE_KEY_FILE = "console.key"


class StartupError(Exception):
    """The service cannot start; the message says why and what to do, in one line."""


def prepare_storage(settings: Settings) -> Vault:
    """Migrate the database, prove it takes a write, and return the vault for its data."""
    path = settings.storage.database
    try:
        migrations.migrate(path)
        database = engine.connect(path)
        try:
            kv.note_start(database, f"pid {os.getpid()}")
            return data_vault(settings, database)
        finally:
            database.close()
    except (sqlite3.DatabaseError, OSError) as exc:
        raise StartupError(f"数据库 {path} 无法写入（{storage_failure(exc)}），"
                           "请检查磁盘空间和文件权限") from None


def data_vault(settings: Settings, database: Database) -> Vault:
    """The vault for personal data at rest, refusing a key that cannot read the stored data.

    A missing key file is generated only while the database holds no encrypted data:
    otherwise a new key would silently make every stored ID number unreadable.
    """
    key_file = settings.data_dir / DATA_KEY_FILE
    sample = applications.encrypted_sample(database)
    configured = settings.storage.encryption_key
    if configured:
        source = "配置项 storage.encryption_key（CYT_ENCRYPTION_KEY）"
    elif key_file.exists():
        source = f"密钥文件 {key_file}"
    elif sample is not None:
        raise StartupError(f"找不到密钥文件 {key_file}：数据库里已有加密的身份证号、手机号等，"
                           "只有原来的密钥能读取。请从备份恢复这个文件后再启动，不要换新密钥")
    else:
        source = f"密钥文件 {key_file}"
    try:
        vault = Vault(load_or_create_key(configured, key_file))
    except ValueError:
        raise StartupError(f"{source} 的内容不是有效的密钥") from None
    if sample is not None:
        try:
            vault.decrypt(sample)
        except ValueError:
            raise StartupError(f"{source} 与数据库里已加密的数据不匹配，请换回原来的密钥") from None
    return vault


def key_files(settings: Settings) -> list[Path]:
    """The generated key files in the data folder (what a backup must carry with the database)."""
    folder = settings.data_dir
    return [folder / name for name in (DATA_KEY_FILE, CONSOLE_KEY_FILE) if (folder / name).exists()]


def storage_failure(exc: BaseException) -> str:
    """A storage error in a few words (SQLite's own message, or the system's)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
