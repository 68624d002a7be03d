"""The WeChat protocol: signatures, AES, parsing into Inbound, Reply to XML.

Official docs: https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html
(signatures), .../Message_Management/Receiving_standard_messages.html (messages),
.../Message_Management/Passive_user_reply_message.html (replies) and
.../Basic_Information/Message_encryption_and_decryption_instructions.html (AES modes).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from xml.parsers import expat

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature as _check_signature

from bot.router import Inbound, Reply

# WeChat nests at most four levels (<xml><SendPicsInfo><PicList><item><PicMd5Sum>).
MAX_DEPTH = 8
# Message types that carry content the bot can read; everything else is an event or media.
_MEDIA_TYPES = {"image", "voice", "video", "shortvideo", "location", "link", "file"}
_SCENE_PREFIX = "qrscene_"


class BadRequest(Exception):
    """A body that is not a WeChat message (malformed, hostile or incomplete)."""


class BadSignature(Exception):
    """An encrypted message whose msg_signature does not match."""


class CannotDecrypt(Exception):
    """Ciphertext that does not open with our EncodingAESKey and AppID."""


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
        """Return the inner XML; raise BadSignature or CannotDecrypt."""
        envelope = parse_xml(body)
        if not envelope.get("Encrypt"):
            raise BadRequest("no Encrypt element")
        try:
            return self._crypto.decrypt_message(envelope, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise BadSignature() from None
        except Exception as exc:  # wechatpy raises assorted errors for a wrong key or app id
            raise CannotDecrypt() from exc

    def encrypt(self, xml: str, nonce: str, timestamp: str | None = None) -> str:
        """Wrap a reply in the encrypted envelope WeChat expects."""
        return self._crypto.encrypt_message(xml, nonce, timestamp)


def parse_xml(body: bytes) -> dict[str, Any]:
    """Parse a WeChat XML body, refusing DTDs, entities, deep nesting and anything not
    <xml>…</xml>."""
    if not body or not body.strip():
        raise BadRequest("empty body")
    try:
        tree = xmltodict.parse(body, encoding="utf-8", expat=_GuardedExpat,
                               disable_entities=True)
    except (expat.ExpatError, ValueError) as exc:  # ValueError: xmltodict refused an entity
        raise BadRequest(str(exc)) from None
    if not isinstance(tree, dict) or list(tree) != ["xml"]:
        raise BadRequest("root element is not <xml>")
    root = tree["xml"]
    return root if isinstance(root, dict) else {}


class _GuardedParser:
    """An expat parser as xmltodict drives it, plus what WeChat bodies never need.

    A DOCTYPE is the only way to declare entities (XXE, billion laughs), so it is refused
    the moment expat reports one, before anything in it is read; and elements may nest
    only MAX_DEPTH deep, so a hostile body cannot build a tower of dicts.
    """

    def __init__(self, encoding: str | None, namespace_separator: str | None) -> None:
        parser = expat.ParserCreate(encoding, namespace_separator)
        parser.StartDoctypeDeclHandler = _refuse_dtd
        object.__setattr__(self, "_parser", parser)
        object.__setattr__(self, "_depth", 0)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "StartElementHandler":
            value = self._counting_start(value)
        elif name == "EndElementHandler":
            value = self._counting_end(value)
        setattr(self._parser, name, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def _counting_start(self, handler: Callable[..., None]) -> Callable[..., None]:
        def start(*args: Any) -> None:
            depth = self._depth + 1
            if depth > MAX_DEPTH + 1:  # +1: the <xml> root
                raise BadRequest("elements nested too deeply")
            object.__setattr__(self, "_depth", depth)
            handler(*args)
        return start

    def _counting_end(self, handler: Callable[..., None]) -> Callable[..., None]:
        def end(*args: Any) -> None:
            object.__setattr__(self, "_depth", self._depth - 1)
            handler(*args)
        return end


class _GuardedExpat:
    """The `expat` module xmltodict is given: its parsers are _GuardedParser."""
    ParserCreate = _GuardedParser


def _refuse_dtd(*_args: Any) -> None:
    raise BadRequest("DTDs and entities are not accepted")


def _top_level_text(root: Mapping[str, Any]) -> dict[str, str]:
    """Each top-level element holding text (an empty one as ""), by tag, trimmed."""
    fields = {}
    for tag, value in root.items():
        if value is None:
            fields[tag] = ""
        elif isinstance(value, str):
            fields[tag] = value.strip()
    return fields


def parse_inbound(body: bytes) -> Inbound:
    """Turn a (decrypted) message body into an Inbound."""
    fields = _top_level_text(parse_xml(body))
    openid = fields.get("FromUserName", "")
    msg_type = fields.get("MsgType", "").lower()
    if not openid or not msg_type:
        raise BadRequest("FromUserName or MsgType missing")
    try:
        create_time = int(fields.get("CreateTime") or 0)
    except ValueError:
        create_time = 0
    content = ""
    kind = msg_type if msg_type in _MEDIA_TYPES or msg_type in ("text", "event") else "unknown"
    if msg_type == "text":
        content = fields.get("Content", "")
    elif msg_type == "voice":
        # With speech recognition switched on, WeChat sends the transcript; treat it as text.
        content = fields.get("Recognition", "")
        if content:
            kind = "text"
    elif msg_type == "link":
        content = fields.get("Title", "")
    event, event_key = "", fields.get("EventKey", "")
    if msg_type == "event":
        event = fields.get("Event", "").lower()
        # Following by scanning a parametric QR code: subscribe with EventKey qrscene_<scene>.
        # https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html
        if event == "subscribe" and event_key.startswith(_SCENE_PREFIX):
            event, event_key = "subscribe_scan", event_key[len(_SCENE_PREFIX):]
    return Inbound(
        openid=openid,
        account=fields.get("ToUserName", ""),
        kind=kind,
        msg_type=msg_type,
        content=content,
        event=event,
        event_key=event_key,
        msg_id=fields.get("MsgId") or fields.get("MsgID", ""),
        create_time=create_time,
        fields=fields,
        media_id=fields.get("MediaId", "") if kind in _MEDIA_TYPES else "",
    )


def render(reply: Reply, inbound: Inbound) -> str:
    """Reply -> passive reply XML ("success" for an empty reply)."""
    if reply.kind == "empty" or not reply.text:
        return "success"
    # Not wechatpy's TextReply: it pastes text into CDATA as is, and a "]]>" in a reply
    # (a village name a user typed, echoed in a summary) would end the section early.
    return (f"<xml><ToUserName>{_cdata(inbound.openid)}</ToUserName>"
            f"<FromUserName>{_cdata(inbound.account)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content>{_cdata(reply.text)}</Content></xml>")


def _cdata(text: str) -> str:
    """Text in CDATA sections, any "]]>" split across two of them."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
