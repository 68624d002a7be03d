"""Blueprint "webhook": WeChat's server calls /wechat. The pipeline and nothing else."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request
from wechatpy.exceptions import InvalidSignatureException
from werkzeug.datastructures import MultiDict

from bot import runtime as current_runtime
from bot.runtime import Runtime
from bot.wechat import protocol as wechat

bp = Blueprint("webhook", __name__)
logger = logging.getLogger(__name__)

SUCCESS = "success"


@bp.get("/wechat")
def verify_server() -> Response:
    """URL verification: echo echostr when the signature is right."""
    runtime = current_runtime()
    args = request.args
    _verify_signature(runtime, args)
    return _text(args.get("echostr", ""))


@bp.post("/wechat")
def receive() -> Response:
    """Receive one message: verify, decrypt, parse, answer once, render, encrypt."""
    runtime = current_runtime()
    args = request.args
    _verify_signature(runtime, args)
    # Compatible and safe mode send an Encrypt element; plain mode sends the message.
    crypto = runtime.crypto if args.get("encrypt_type", "raw").lower() == "aes" else None
    body = request.get_data(cache=False)
    if crypto is not None:
        body = _decrypt(crypto, body, args)
    try:
        inbound = wechat.parse_inbound(body)
    except wechat.BadRequest as exc:
        logger.warning("refused a malformed message: %s", exc)
        abort(400)
    reply = runtime.answer_once(inbound)
    if reply.kind == "empty":
        return _text(SUCCESS)
    xml = wechat.render(reply, inbound)
    if crypto is not None:
        xml = crypto.encrypt(xml, args.get("nonce", ""), args.get("timestamp") or None)
    return _text(xml)


def _verify_signature(runtime: Runtime, args: MultiDict[str, str]) -> None:
    if not wechat.signature_ok(runtime.settings.wechat.token, args.get("signature", ""),
                               args.get("timestamp", ""), args.get("nonce", "")):
        abort(403)


def _decrypt(crypto: wechat.Crypto, body: bytes, args: MultiDict[str, str]) -> bytes:
    try:
        plain = crypto.decrypt(body, args.get("msg_signature", ""), args.get("timestamp", ""),
                               args.get("nonce", ""))
    except InvalidSignatureException:
        abort(403)
    except wechat.BadRequest as exc:
        logger.warning("refused an encrypted message: %s", exc)
        abort(400)
    return plain.encode("utf-8") if isinstance(plain, str) else plain


def _text(body: str) -> Response:
    return Response(body, mimetype="text/xml" if body.startswith("<") else "text/plain")


@bp.app_errorhandler(413)
def too_large(_error: Exception) -> tuple[str, int]:
    """Bodies over [server] max_body_bytes."""
    return "request too large", 413
