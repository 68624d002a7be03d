"""The WeChat protocol: signatures, AES, parsing into Inbound, Reply to XML, the API client.

Official docs: https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html
(signatures), .../Message_Management/Receiving_standard_messages.html (messages),
.../Message_Management/Passive_user_reply_message.html (replies) and
.../Basic_Information/Message_encryption_and_decryption_instructions.html (AES modes).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import xmltodict
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from wechatpy import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import EmptyReply, TextReply
from wechatpy.session import SessionStorage
from wechatpy.utils import check_signature as _check_signature

from bot import db
from bot.router import Inbound, Reply

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
        # defusedxml refuses DOCTYPE/entities (XXE, billion laughs) before anything expands.
        safe_fromstring(text, forbid_dtd=True)
        doc = xmltodict.parse(text, disable_entities=True)
    except (UnicodeDecodeError, DefusedXmlException, ValueError, SyntaxError) as exc:
        raise BadRequest(str(exc)) from None
    root = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise BadRequest("root element is not <xml>")
    return root


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
    )


def render(reply: Reply, inbound: Inbound) -> str:
    """Reply -> passive reply XML ("success" for an empty reply)."""
    if reply.kind == "empty" or not reply.text:
        return EmptyReply().render()
    return TextReply(source=inbound.account, target=inbound.openid, content=reply.text).render()


class SQLiteSessionStorage(SessionStorage):
    """wechatpy session storage in our database, so all workers share one access token."""

    def __init__(self, connect: Callable[[], "db.Database"]):
        self._connect = connect

    def get(self, key: str, default: Any = None) -> Any:
        value = db.kv_get(self._connect(), f"wechat:{key}")
        return default if value is None else value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        db.kv_set(self._connect(), f"wechat:{key}", str(value), ttl)

    def delete(self, key: str) -> None:
        db.kv_delete(self._connect(), f"wechat:{key}")


class WeChatApi(WeChatClient):
    """wechatpy's client with every URL, the token URL included, under api_base_url.

    wechatpy hard-codes https://api.weixin.qq.com/cgi-bin/token; tests and private
    gateways need it to follow the configured base URL.
    """

    def __init__(self, app_id: str, app_secret: str, api_base_url: str,
                 session: SessionStorage, timeout: float = 5.0):
        self.API_BASE_URL = api_base_url.rstrip("/") + "/cgi-bin/"
        super().__init__(app_id, app_secret, session=session, timeout=timeout)

    def fetch_access_token(self) -> dict[str, Any]:
        """Fetch a fresh access token from the configured base URL."""
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid,
                    "secret": self.secret},
        )

    @property
    def access_token(self) -> str:
        """The shared token, refreshed a minute before it expires."""
        token = self.session.get(self.access_token_key)
        if token:
            return token
        self.fetch_access_token()
        return self.session.get(self.access_token_key)

    def send_text(self, openid: str, text: str) -> None:
        """Send a customer-service text message (valid within 48 h of the user's last message)."""
        self.message.send_text(openid, text)


def timestamp() -> str:
    """Current Unix time as WeChat writes it."""
    return str(int(time.time()))
