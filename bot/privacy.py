"""Personal data: masking for screens and logs, encryption at rest."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import unicodedata
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Phone and ID numbers in every form the validators accept, and near misses (10-digit
# phones, 17-digit IDs): any Unicode digit (full-width, mathematical), the Chinese digits
# voice input writes, and spaces, dashes, dots, underscores or middle dots between them.
_DIGIT = r"[\d零〇幺一二两三四五六七八九]"
_SEP = r"[\s\-‐‑–—_.·・－．＿]"
_ID = re.compile(rf"(?<!{_DIGIT}){_DIGIT}(?:{_SEP}*{_DIGIT}){{16}}(?:{_SEP}*[\dxXｘＸ])?(?!{_DIGIT})")
# A phone starts with 1, in whichever script: _phone() checks that.
_PHONE = re.compile(rf"(?:(?<!{_DIGIT})(?:\+|＋)?[8８][6６]{_SEP}*|(?<!{_DIGIT})){_DIGIT}"
                    rf"(?:{_SEP}*{_DIGIT}){{9,10}}(?!{_DIGIT})")
# Ten digits in a row (separators allowed): the least either kind needs. Most texts have
# none, and one scan for this is cheaper than the two full ones.
_LONG_NUMBER = re.compile(rf"{_DIGIT}(?:{_SEP}*{_DIGIT}){{9}}")
_SPOKEN = str.maketrans("零〇幺一二两三四五六七八九ｘx", "0011223456789XX")


def _digits(typed: str) -> str:
    """The number as digits: ASCII, separators gone, a +86 / 86 prefix dropped."""
    plain = unicodedata.normalize("NFKC", typed).translate(_SPOKEN)
    plain = re.sub(r"[^0-9X]", "", plain)
    return plain[2:] if typed.lstrip(" +＋").startswith(("86", "８６")) and len(plain) > 11 else plain


def mask_phone(phone: str) -> str:
    """138****5678."""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"


def mask_id(number: str) -> str:
    """3401**********123X."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:] if len(number) >= 8 else "****"


def mask_text(text: str) -> str:
    """Mask every phone or ID number found in free text (for logs and the message log)."""
    if not _LONG_NUMBER.search(text):
        return text
    text = _ID.sub(lambda m: mask_id(_digits(m.group())), text)
    return _PHONE.sub(_phone, text)


def _phone(match: re.Match[str]) -> str:
    digits = _digits(match.group())
    return mask_phone(digits) if digits.startswith("1") else match.group()


class RedactingFormatter(logging.Formatter):
    """Masks phone and ID numbers in each finished log line, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


_GCM = "g1:"  # marks an AES-GCM token; Fernet tokens are base64 and never contain ":"
_NONCE_BYTES = 12


class Vault:
    """Symmetric encryption for personal data at rest: AES-256-GCM.

    Tokens written before it are Fernet (AES-128-CBC + HMAC) and still decrypt. A form is
    decrypted on every message its user sends; Fernet's padding and HMAC checks in Python
    took 15 us of that, GCM takes 3.
    """

    def __init__(self, key: str | bytes):
        self._fernet = Fernet(key)
        raw = key.encode("ascii") if isinstance(key, str) else key
        # Further keys derived from the configured one, so that one key still suffices.
        self._fingerprint_key = hashlib.sha256(b"cyt-fingerprint:" + raw).digest()
        self._gcm = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                info=b"cyt-aes-gcm").derive(raw))

    def fingerprint(self, plain: str) -> str:
        """A keyed hash to find equal values (the same ID number) without decrypting them.

        Unlike a plain hash it cannot be reversed by trying every birth date and sequence.
        """
        return hmac.new(self._fingerprint_key, plain.encode("utf-8"), hashlib.sha256).hexdigest()

    def encrypt(self, plain: str) -> str:
        """Encrypt a string; the token is ASCII and safe to store in a TEXT column."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._gcm.encrypt(nonce, plain.encode("utf-8"), None)
        return _GCM + base64.urlsafe_b64encode(sealed).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a token made by encrypt() (or by the Fernet versions before it)."""
        try:
            if token.startswith(_GCM):
                sealed = base64.urlsafe_b64decode(token[len(_GCM):])
                plain = self._gcm.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], None)
            else:
                plain = self._fernet.decrypt(token.encode("ascii"))
            return plain.decode("utf-8")
        except (InvalidTag, InvalidToken, binascii.Error, ValueError):
            raise ValueError("数据无法解密：加密密钥与数据不匹配") from None


def load_or_create_key(configured: str, key_file: Path) -> str:
    """The configured key, else one kept in key_file (created owner-only on first run)."""
    if configured:
        return configured
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        key = Fernet.generate_key().decode("ascii")
        # Write aside, then link into place: link fails if another process won the race,
        # and nobody ever reads a half-written key.
        tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        try:
            os.link(tmp, key_file)
        except FileExistsError:
            key = key_file.read_text().strip()
        finally:
            tmp.unlink()
        return key
