"""A simulated WeChat server: signs (and encrypts) what a subscriber sends, posts it to
/wechat through the app's WSGI stack, and reads the reply, so the simulator and
`run.py chat` exercise exactly the path real WeChat traffic takes."""
from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from urllib.parse import urlencode

import xmltodict
from flask import Flask

from bot.settings import Settings
from bot.wechat.protocol import Crypto

_msg_ids = itertools.count(int(time.time() * 1000) * 1000 + secrets.randbelow(1000))


def _sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


class Phone:
    """Sends messages as one subscriber would and returns the bot's text replies."""

    def __init__(self, app: Flask, settings: Settings):
        self.client = app.test_client()
        self.settings = settings
        wx = settings.wechat
        self.crypto = Crypto(wx.token, wx.encoding_aes_key, wx.app_id) if wx.encoding_aes_key else None

    def send_text(self, openid: str, text: str) -> str:
        """Send a text message; returns the reply text ('' when the bot stays silent)."""
        return self._post(openid, {"MsgType": "text", "Content": text,
                                   "MsgId": str(next(_msg_ids))})

    def send_voice(self, openid: str, media_id: str) -> str:
        """Send a voice message without WeChat's transcript (the audio is under media_id)."""
        return self._post(openid, {"MsgType": "voice", "MediaId": media_id,
                                   "MsgId": str(next(_msg_ids))})

    def send_event(self, openid: str, event: str, key: str = "") -> str:
        """Send an event (subscribe, CLICK with a menu key, …)."""
        return self._post(openid, {"MsgType": "event", "Event": event, "EventKey": key})

    def _post(self, openid: str, fields: dict[str, str]) -> str:
        now = str(int(time.time()))
        parts = [f"<ToUserName>{_cdata(self.settings.wechat.app_id or 'gh_simulator')}</ToUserName>",
                 f"<FromUserName>{_cdata(openid)}</FromUserName>",
                 f"<CreateTime>{now}</CreateTime>"]
        parts += [f"<{k}>{_cdata(v)}</{k}>" for k, v in fields.items()]
        xml = "<xml>" + "".join(parts) + "</xml>"
        nonce = secrets.token_hex(8)
        token = self.settings.wechat.token
        query = {"signature": _sign(token, now, nonce), "timestamp": now, "nonce": nonce,
                 "openid": openid}
        if self.crypto is not None:
            envelope = xmltodict.parse(self.crypto.encrypt(xml, nonce, now))["xml"]
            query.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
            xml = (f"<xml><ToUserName>{_cdata('gh')}</ToUserName>"
                   f"<Encrypt>{_cdata(envelope['Encrypt'])}</Encrypt></xml>")
        resp = self.client.post("/wechat?" + urlencode(query), data=xml.encode("utf-8"),
                                content_type="text/xml")
        body = resp.get_data(as_text=True)
        if resp.status_code != 200 or not body.startswith("<"):
            return ""
        reply = xmltodict.parse(body)["xml"]
        if "Encrypt" in reply and self.crypto is not None:
            reply = xmltodict.parse(self.crypto.decrypt(
                body.encode("utf-8"), reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"]))["xml"]
        return reply.get("Content") or ""
