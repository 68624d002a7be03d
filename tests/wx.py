"""Build what WeChat's servers send: signed query strings, message XML, AES envelopes."""
from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from urllib.parse import urlencode

import xmltodict
from wechatpy.crypto import WeChatCrypto

TOKEN = "test-token"
APP_ID = "wx1234567890abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeChat issues

_ids = itertools.count(10_000_000_000)


def signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def query(token: str = TOKEN, nonce: str | None = None, timestamp: int | None = None,
          **extra: str) -> str:
    """A signed query string; like WeChat, a fresh nonce each time unless one is given."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(8)
    return urlencode({"signature": signature(token, ts, nonce), "timestamp": ts,
                      "nonce": nonce, **extra})


def message_xml(openid: str, msg_type: str, msg_id: int | None = None,
                create_time: int | None = None, **fields: str) -> str:
    parts = ["<ToUserName><![CDATA[gh_test]]></ToUserName>",
             f"<FromUserName><![CDATA[{openid}]]></FromUserName>",
             f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
             f"<MsgType><![CDATA[{msg_type}]]></MsgType>"]
    parts += [f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()]
    if msg_type != "event":
        parts.append(f"<MsgId>{msg_id or next(_ids)}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def text_xml(openid: str, text: str, msg_id: int | None = None) -> str:
    return message_xml(openid, "text", msg_id, Content=text)


def event_xml(openid: str, event: str, key: str = "", create_time: int | None = None) -> str:
    return message_xml(openid, "event", create_time=create_time, Event=event, EventKey=key)


def reply_content(body: str) -> str:
    """The Content of a passive text reply ('' for "success")."""
    if not body.startswith("<"):
        return ""
    return xmltodict.parse(body)["xml"].get("Content") or ""


class Encrypted:
    """Compatible / safe mode: wrap XML the way WeChat does, unwrap replies."""

    def __init__(self, token: str = TOKEN, aes_key: str = AES_KEY, app_id: str = APP_ID):
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, app_id)

    def post_args(self, xml: str, compat: bool = False, nonce: str | None = None) -> tuple[str, str]:
        ts, nonce = str(int(time.time())), nonce or secrets.token_hex(8)
        env = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, ts))["xml"]
        q = urlencode({"signature": signature(self.token, ts, nonce), "timestamp": ts,
                       "nonce": nonce, "encrypt_type": "aes", "msg_signature": env["MsgSignature"]})
        inner = xml[len("<xml>"):-len("</xml>")] if compat else "<ToUserName><![CDATA[gh_test]]></ToUserName>"
        body = f"<xml>{inner}<Encrypt><![CDATA[{env['Encrypt']}]]></Encrypt></xml>"
        return q, body

    def open_reply(self, body: str) -> str:
        env = xmltodict.parse(body)["xml"]
        inner = self.crypto.decrypt_message(body, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
        return reply_content(inner)
