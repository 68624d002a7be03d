"""The WeChat protocol: signatures, AES, parsing into Inbound, Reply to XML.

Official docs: https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html
(signatures), .../Message_Management/Receiving_standard_messages.html (messages),
.../Message_Management/Passive_user_reply_message.html (replies) and
.../Basic_Information/Message_encryption_and_decryption_instructions.html (AES modes).
"""
from __future__ import annotations

from typing import Any
from xml.parsers import expat

from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import EmptyReply, TextReply
from wechatpy.utils import check_signature as _check_signature

from bot.router import Inbound, Reply

# WeChat nests at most four levels (<xml><SendPicsInfo><PicList><item><PicMd5Sum>).
MAX_DEPTH = 8
# Message types that carry content the bot can read; everything else is an event or media.
_MEDIA_TYPES = {"image", "voice", "video", "shortvideo", "location", "link", "file"}


class BadRequest(Exception):
    """A body that is not a WeChat message (malformed, hostile or incomplete)."""


def signature_ok(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    """Check the plain-mode signature WeChat puts in the query string."""
    try:
        _check_signature(token, signature, timestamp, nonce)
        return True
    except InvalidSignatureException:
        return False


class Crypto:
    """Compatible and safe (AES) mode; wraps wechatpy's WeChatCrypto."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str):
        self._crypto = WeChatCrypto(token, encoding_aes_key, app_id)

    def decrypt(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> bytes:
        """Return the inner XML; raise InvalidSignatureException on a bad signature."""
        envelope = parse_xml(body)
        if not envelope.get("Encrypt"):
            raise BadRequest("no Encrypt element")
        try:
            return self._crypto.decrypt_message(envelope, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise
        except Exception as exc:  # wechatpy raises assorted errors for corrupt ciphertext
            raise InvalidSignatureException() from exc

    def encrypt(self, xml: str, nonce: str, timestamp: str | None = None) -> str:
        """Wrap a reply in the encrypted envelope WeChat expects."""
        return self._crypto.encrypt_message(xml, nonce, timestamp)


def parse_xml(body: bytes) -> dict[str, Any]:
    """Parse a WeChat XML body, refusing DTDs, entities and anything not <xml>…</xml>."""
    if not body or not body.strip():
        raise BadRequest("empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(str(exc)) from None
    return _Elements().parse(text)


class _Elements:
    """One parse with expat (C) straight into nested dicts.

    WeChat never sends a DOCTYPE, and a DOCTYPE is the only way to declare entities (XXE,
    billion laughs), so it is refused the moment expat reports one, before anything in it
    is read: defusedxml's check, without its pure-Python tree builder, which cost more
    than half of the parse.
    """

    def __init__(self) -> None:
        self._open: list[dict[str, Any]] = [{}]  # the elements being read, outermost first
        self._text: list[str] = []

    def parse(self, text: str) -> dict[str, Any]:
        parser = expat.ParserCreate("utf-8")  # the text is decoded; ignore any declaration
        parser.buffer_text = True
        parser.StartDoctypeDeclHandler = _refuse_dtd
        parser.EntityDeclHandler = _refuse_dtd
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text.append
        try:
            parser.Parse(text, True)
        except expat.ExpatError as exc:
            raise BadRequest(str(exc)) from None
        ((tag, root),) = self._open[0].items()  # expat allows exactly one root element
        if tag != "xml":
            raise BadRequest("root element is not <xml>")
        return root if isinstance(root, dict) else {}

    def _start(self, _tag: str, _attributes: dict[str, str]) -> None:
        if len(self._open) > MAX_DEPTH + 1:
            raise BadRequest("elements nested too deeply")
        self._open.append({})
        self._text.clear()

    def _end(self, tag: str) -> None:
        # Child elements by tag: text for leaves, a dict for nested ones (ScanCodeInfo, …).
        children = self._open.pop()
        self._open[-1][tag] = children or "".join(self._text)
        self._text.clear()


def _refuse_dtd(*_args: Any) -> None:
    raise BadRequest("DTDs and entities are not accepted")


def parse_inbound(body: bytes) -> Inbound:
    """Turn a (decrypted) message body into an Inbound."""
    root = parse_xml(body)

    def field(name: str) -> str:
        value = root.get(name)
        return value.strip() if isinstance(value, str) else ""

    openid = field("FromUserName")
    msg_type = field("MsgType").lower()
    if not openid or not msg_type:
        raise BadRequest("FromUserName or MsgType missing")
    try:
        create_time = int(field("CreateTime") or 0)
    except ValueError:
        create_time = 0
    content = ""
    kind = msg_type if msg_type in _MEDIA_TYPES or msg_type in ("text", "event") else "unknown"
    if msg_type == "text":
        content = field("Content")
    elif msg_type == "voice":
        # With speech recognition switched on, WeChat sends the transcript; treat it as text.
        content = field("Recognition")
        if content:
            kind = "text"
    elif msg_type == "link":
        content = field("Title")
    return Inbound(
        openid=openid,
        account=field("ToUserName"),
        kind=kind,
        msg_type=msg_type,
        content=content,
        event=field("Event").lower() if msg_type == "event" else "",
        event_key=field("EventKey"),
        msg_id=field("MsgId") or field("MsgID"),
        create_time=create_time,
        details={k: v.strip() for k, v in root.items() if isinstance(v, str)} if msg_type == "event" else {},
        media_id=field("MediaId") if kind in _MEDIA_TYPES else "",
    )


def render(reply: Reply, inbound: Inbound) -> str:
    """Reply -> passive reply XML ("success" for an empty reply)."""
    if reply.kind == "empty" or not reply.text:
        return EmptyReply().render()
    return TextReply(source=inbound.account, target=inbound.openid, content=reply.text).render()
