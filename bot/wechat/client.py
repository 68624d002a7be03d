"""The WeChat API client and the shared access-token storage.

Official docs: https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
(access token), .../Message_Management/Service_Center_messages.html (customer-service
messages), .../Message_Management/Template_Message_Interface.html (template messages).
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlite_utils import Database
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from bot.settings import MenuButton
from bot.storage import engine, kv


class SQLiteSessionStorage(SessionStorage):
    """wechatpy session storage in our database, so all workers share one access token.

    Besides get/set/delete it offers what a shared token needs across processes: the
    stored expiry time, a refresh lease only one worker holds, and compare-and-delete.
    """

    def __init__(self, connect: Callable[[], Database], clock: Callable[[], float] = time.time):
        self._connect = connect
        self._clock = clock

    def get(self, key: str, default: Any = None) -> Any:
        entry = self.entry(key)
        return default if entry is None else entry[0]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        expires_at = None if ttl is None else self._clock() + ttl
        database = self._connect()
        with engine.immediate(database):
            kv.kv_put(database, f"wechat:{key}", str(value), expires_at)

    def delete(self, key: str) -> None:
        kv.kv_delete(self._connect(), f"wechat:{key}")

    def entry(self, key: str) -> tuple[str, float | None] | None:
        """The stored value and its expiry time (our clock), or None if absent or expired."""
        entry = kv.kv_entry(self._connect(), f"wechat:{key}")
        if entry is None or (entry[1] is not None and entry[1] <= self._clock()):
            return None
        return entry

    def delete_if(self, key: str, value: str) -> bool:
        """Delete the value only if it is still `value` (another worker may have replaced it)."""
        database = self._connect()
        with engine.immediate(database):
            return kv.kv_delete_if(database, f"wechat:{key}", value)

    def claim_refresh(self, key: str, usable: Callable[[str, float | None], bool], holder: str,
                      lease_seconds: float) -> tuple[str | None, bool]:
        """In one write transaction: (value, False) if a usable value is stored, else
        (None, True) when this holder took the refresh lease, (None, False) when another has it."""
        database = self._connect()
        with engine.immediate(database):
            entry = kv.kv_entry(database, f"wechat:{key}")
            if entry is not None and usable(*entry):
                return entry[0], False
            return None, kv.kv_claim(database, f"wechat:{key}:lease", holder, lease_seconds)

    def release(self, key: str, holder: str) -> None:
        """Give up the refresh lease (after storing the new value, or on failure)."""
        database = self._connect()
        with engine.immediate(database):
            kv.kv_delete_if(database, f"wechat:{key}:lease", holder)


# Errors that mean "the access token you sent is not valid (any more)".
TOKEN_ERRORS = frozenset({40001, 40014, 42001})


class WeChatApi(WeChatClient):
    """wechatpy's client with every URL, the token URL included, under api_base_url.

    wechatpy hard-codes https://api.weixin.qq.com/cgi-bin/token; tests and private
    gateways need it to follow the configured base URL. The access token lives in
    SQLiteSessionStorage, shared by every worker and process: it is refreshed
    `refresh_margin` seconds before it expires, and when a call answers 40001/40014/42001
    (invalidated, then fetched again once, then the call retried). Each fetch makes WeChat
    drop the previous token, so only the holder of a lease in SQLite fetches; the others
    wait for the token it stores. Docs:
    https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
    """

    def __init__(self, app_id: str, app_secret: str, api_base_url: str,
                 session: SQLiteSessionStorage, timeout: float = 5.0,
                 refresh_margin: float = 300.0, lease_seconds: float = 15.0,
                 clock: Callable[[], float] = time.time):
        self.API_BASE_URL = api_base_url.rstrip("/") + "/cgi-bin/"
        # auto_retry off: wechatpy's own retry refetches on every token error, from every
        # worker, without limit; _request below retries once through the shared lease.
        super().__init__(app_id, app_secret, session=session, timeout=timeout, auto_retry=False)
        self.refresh_margin = refresh_margin
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def fetch_access_token(self) -> dict[str, Any]:
        """Fetch a fresh access token from the configured base URL (callers hold the lease)."""
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid,
                    "secret": self.secret},
        )

    @property
    def access_token(self) -> str:
        """The shared token, refreshed refresh_margin seconds before it expires."""
        return self._shared_token()

    def invalidate_token(self, token: str) -> None:
        """Forget a token WeChat refused, unless another worker already replaced it."""
        self.session.delete_if(self.access_token_key, token)

    def _shared_token(self) -> str:
        key = self.access_token_key
        usable = self._usable
        deadline = time.monotonic() + self.lease_seconds + (self.timeout or 5.0)
        while True:
            entry = self.session.entry(key)
            if entry is not None and usable(*entry):
                return entry[0]
            token, holder = self.session.claim_refresh(key, usable, self._holder, self.lease_seconds)
            if token:
                return token
            if holder:
                try:
                    self.fetch_access_token()
                finally:
                    self.session.release(key, self._holder)
                return self.session.get(key)
            if time.monotonic() > deadline:
                raise WeChatClientException(-1, "timed out waiting for another worker's token refresh")
            # Another worker is fetching; its token will appear in the table shortly.
            time.sleep(0.02)

    def _usable(self, token: str, expires_at: float | None) -> bool:
        return bool(token) and (expires_at is None or expires_at - self.refresh_margin > self._clock())

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        """One API call; on a token error, invalidate the token, get a new one, retry once."""
        params = kwargs.pop("params", None)
        params = dict(params) if isinstance(params, dict) else {}
        token = self.access_token
        try:
            return super()._request(method, url_or_endpoint,
                                    **dict(kwargs, params={**params, "access_token": token}))
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            self.invalidate_token(token)
        return super()._request(method, url_or_endpoint,
                                **dict(kwargs, params={**params, "access_token": self.access_token}))

    def send_text(self, openid: str, text: str) -> None:
        """Send a customer-service text message (valid within 48 h of the user's last message).

        https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
        """
        self.message.send_text(openid, text)

    def send_template(self, openid: str, template_id: str, data: dict[str, Any],
                      url: str | None = None, client_msg_id: str = "") -> int:
        """Send a template message (outside the 48-hour window); returns its msgid.

        client_msg_id makes WeChat send one message per openid and key (for about ten
        minutes), so a repeated call cannot reach the user twice; wechatpy 1.8.18 cannot
        pass it. https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
        """
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            body["url"] = url
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        return int(self.post("message/template/send", data=body).get("msgid") or 0)

    def mass_send_text(self, tag_id: int, text: str, client_msg_id: str) -> dict[str, Any]:
        """Mass-send a text to everyone under a tag; client_msg_id makes a repeat a no-op (45065).

        https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Batch_Sends_and_Originality_Checks.html
        """
        return self.post("message/mass/sendall", data={
            "filter": {"is_to_all": False, "tag_id": tag_id},
            "text": {"content": text}, "msgtype": "text",
            "send_ignore_reprint": 0, "clientmsgid": client_msg_id,
        })

    def create_menu(self, menu: dict[str, Any]) -> None:
        """Publish the custom menu (as built by menu_json).

        https://developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Creating_Custom-Defined_Menu.html
        """
        self.menu.create(menu)

    def download_media(self, media_id: str) -> bytes:
        """A temporary media file's bytes (voice: AMR or Speex), kept by WeChat for 3 days.

        https://developers.weixin.qq.com/doc/offiaccount/Asset_Management/Get_temporary_materials.html
        """
        answer = self.get("media/get", params={"media_id": media_id})
        if isinstance(answer, dict):  # JSON without an errcode: a video link, not a file
            raise WeChatClientException(-1, "media/get answered no file")
        return bytes(answer.content)

    def add_voice_for_recognition(self, voice_id: str, mp3: bytes) -> None:
        """Upload voice (MP3, 16 kHz mono, at most 60 s and 1 MB) to WeChat's speech-to-text.

        https://developers.weixin.qq.com/doc/offiaccount/Intelligent_Interface/AI_Open_API.html
        """
        self.post("media/voice/addvoicetorecofortext",
                  params={"format": "mp3", "voice_id": voice_id, "lang": "zh_CN"},
                  files={"media": ("voice.mp3", mp3, "audio/mpeg")})

    def voice_recognition_result(self, voice_id: str) -> str | None:
        """The text of voice uploaded under voice_id, or None while WeChat has none yet."""
        answer = self.post("media/voice/queryrecoresultfortext",
                           params={"voice_id": voice_id, "lang": "zh_CN"})
        result = answer.get("result") if isinstance(answer, dict) else None
        return result if isinstance(result, str) else None


def menu_json(buttons: tuple[MenuButton, ...]) -> dict[str, Any]:
    """The menu/create body for the configured buttons; ValueError names what WeChat would refuse."""
    if not 1 <= len(buttons) <= 3:
        raise ValueError("menu: 1 to 3 top-level buttons allowed")

    def one(button: MenuButton, limit: int, where: str) -> dict[str, Any]:
        if not button.name or len(button.name.encode("utf-8")) > limit:
            raise ValueError(f"{where}: name must be 1-{limit} bytes")
        if button.url:
            return {"type": "view", "name": button.name, "url": button.url}
        if not button.key or len(button.key.encode("utf-8")) > 128:
            raise ValueError(f"{where}: a button needs a key (at most 128 bytes) or a url")
        return {"type": "click", "name": button.name, "key": button.key}

    result = []
    for i, button in enumerate(buttons, 1):
        if not button.sub_buttons:
            result.append(one(button, 16, f"menu[{i}]"))
            continue
        if len(button.sub_buttons) > 5:
            raise ValueError(f"menu[{i}]: at most 5 sub_buttons")
        if not button.name or len(button.name.encode("utf-8")) > 16:
            raise ValueError(f"menu[{i}]: name must be 1-16 bytes")
        result.append({"name": button.name, "sub_button": [
            one(sub, 60, f"menu[{i}].sub_buttons[{j}]") for j, sub in enumerate(button.sub_buttons, 1)]})
    return {"button": result}
