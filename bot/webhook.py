"""Blueprint "webhook": WeChat's server calls /wechat. The pipeline and nothing else."""
from __future__ import annotations

import logging
import threading
import time
from typing import NoReturn

from flask import Blueprint, Response, abort, current_app, request
from werkzeug.datastructures import MultiDict

from bot import current_runtime
from bot.runtime import ReplayRefused, Runtime
from bot.wechat import protocol as wechat

bp = Blueprint("webhook", __name__)
logger = logging.getLogger(__name__)

SUCCESS = "success"
# What every response gets unless its blueprint set its own (the console, the simulator):
# nothing here is a page, so nothing may load, run or frame it.
DEFAULT_HEADERS = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                   "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines for one cause of refusal


@bp.get("/wechat")
def verify_server() -> Response:
    """URL verification: echo echostr (as plain text) when the signature is right and fresh."""
    runtime = current_runtime()
    args = request.args
    _verify_signature(runtime, args)
    return Response(args.get("echostr", ""), mimetype="text/plain")


@bp.post("/wechat")
def receive() -> Response:
    """Receive one message: verify, decrypt, parse, answer once, render, encrypt."""
    runtime = current_runtime()
    args = request.args
    _verify_signature(runtime, args)
    # Compatible and safe mode send an Encrypt element; plain mode sends the message.
    encrypted = args.get("encrypt_type", "raw").lower() == "aes"
    crypto = runtime.crypto if encrypted else None
    if encrypted and crypto is None:
        _refuse(403, "an encrypted message arrived but [wechat] encoding_aes_key is not set")
    if not encrypted and runtime.settings.wechat.message_mode == "safe":
        # In plain mode nothing signs the body: safe mode accepts only what msg_signature covers.
        _refuse(403, "a plain-mode message arrived in safe mode")
    body = request.get_data(cache=False)
    if crypto is not None:
        body = _decrypt(crypto, body, args)
    try:
        inbound = wechat.parse_inbound(body)
    except wechat.BadRequest as exc:
        logger.warning("refused a malformed message: %s", exc)
        abort(400)
    try:
        reply = runtime.answer_once(inbound, f"{args.get('timestamp')}:{args.get('nonce')}")
    except ReplayRefused:
        _refuse(403, "a signed nonce came again with another message (replayed URL)")
    if reply.kind == "empty":
        return _text(SUCCESS)
    xml = wechat.render(reply, inbound)
    if crypto is not None:
        xml = crypto.encrypt(xml, args.get("nonce", ""), args.get("timestamp") or None)
    return _text(xml)


def _verify_signature(runtime: Runtime, args: MultiDict[str, str]) -> None:
    timestamp = args.get("timestamp", "")
    if not wechat.signature_ok(runtime.settings.wechat.token, args.get("signature", ""),
                               timestamp, args.get("nonce", "")):
        _refuse(403, "bad signature (wrong [wechat] token, or not from WeChat)")
    try:
        skew = abs(time.time() - int(timestamp))
    except ValueError:
        skew = float("inf")
    if skew > runtime.settings.wechat.max_clock_skew_seconds:
        _refuse(403, "signed timestamp outside [wechat] max_clock_skew_seconds (replay or clock)")


def _decrypt(crypto: wechat.Crypto, body: bytes, args: MultiDict[str, str]) -> bytes:
    try:
        plain = crypto.decrypt(body, args.get("msg_signature", ""), args.get("timestamp", ""),
                               args.get("nonce", ""))
    except wechat.BadSignature:
        _refuse(403, "bad msg_signature on an encrypted message")
    except wechat.CannotDecrypt:
        _refuse(403, "cannot decrypt: wrong [wechat] encoding_aes_key or app_id")
    except wechat.BadRequest as exc:
        logger.warning("refused an encrypted message: %s", exc)
        abort(400)
    return plain.encode("utf-8") if isinstance(plain, str) else plain


def _refuse(code: int, cause: str) -> NoReturn:
    """Abort with code, logging the cause at most once a minute (a flood is one line)."""
    refusals = current_app.extensions.get("webhook.refusals")
    if refusals is None:
        refusals = current_app.extensions.setdefault("webhook.refusals", _Refusals())
    refusals.note(cause)
    abort(code)


class _Refusals:
    """Per cause, the time it was last logged and how many refusals came since."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logged_at: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def note(self, cause: str) -> None:
        """Count one refusal; log it if its cause was not logged in the last minute."""
        now = time.monotonic()
        with self._lock:
            if now - self._logged_at.get(cause, -REFUSAL_LOG_INTERVAL) < REFUSAL_LOG_INTERVAL:
                self._since[cause] = self._since.get(cause, 0) + 1
                return
            self._logged_at[cause] = now
            more = self._since.pop(cause, 0)
        logger.warning("refused a webhook request: %s (%d more since the last report)", cause, more)


def _text(body: str) -> Response:
    return Response(body, mimetype="text/xml" if body.startswith("<") else "text/plain")


@bp.after_app_request
def harden(response: Response) -> Response:
    """Restrictive default headers on every response whose blueprint set none."""
    for name, value in DEFAULT_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.app_errorhandler(413)
def too_large(_error: Exception) -> tuple[str, int]:
    """Bodies over [server] max_body_bytes."""
    return "request too large", 413
