"""A fake WeChat API server on 127.0.0.1 (Flask in a thread) that records every call.

Errors are injected per path: `api.fail("/cgi-bin/message/custom/send", 45015, times=1)`.
Unknown paths answer errcode 99999, as an unexpected call should fail loudly.

It models what the push code relies on: each token fetch invalidates the previous token
(as WeChat does), tokens expire after token_lifetime seconds, users in `out_of_window`
get 45015 for customer-service messages, users in `unsubscribed` get 43004, a mass send
reaches the users under its tag once per clientmsgid (a repeat answers 45065), a template
message reaches its user once per client_msg_id (a repeat answers ok with the same msgid),
and every message that reached a user is in `deliveries` (with the msgid / msg_id WeChat
reports it under later). `hold(path, after=n)` keeps requests
after the n-th waiting (already recorded and delivered) until `release()`, so a test can
kill a client while its calls are in flight.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict, deque
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"
MASS = "/cgi-bin/message/mass/sendall"
TOKEN = "/cgi-bin/token"
MEDIA = "/cgi-bin/media/get"
VOICE_ADD = "/cgi-bin/media/voice/addvoicetorecofortext"
VOICE_RESULT = "/cgi-bin/media/voice/queryrecoresultfortext"


class FakeWeChat:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.errors: dict[str, deque[int]] = defaultdict(deque)
        self.token_lifetime = 7200
        self.fetch_delay = 0.0
        self.call_delay = 0.0  # seconds every non-token call takes
        self._tokens = itertools.count(1)
        self.valid_tokens: dict[str, float] = {}
        self.out_of_window: set[str] = set()
        self.unsubscribed: set[str] = set()
        self.deliveries: list[dict[str, Any]] = []
        self.menu: dict[str, Any] | None = None
        # Voice: media/get serves media[media_id]; speech-to-text hears `transcript` in
        # any MP3 uploaded, after recognition_delay seconds.
        self.media: dict[str, bytes] = {}
        self.transcript = ""
        self.recognition_delay = 0.0
        self.voices: dict[str, bytes] = {}
        self.tags: dict[int, dict[str, Any]] = {}
        self._tag_ids = itertools.count(100)
        self._mass_ids: dict[str, int] = {}
        self._template_ids: dict[tuple[str, object], int] = {}
        self._hold: dict[str, int] = {}
        self._released = threading.Event()
        self.held = 0
        self._lock = threading.Lock()
        self.app = self._build()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeWeChat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()

    def fail(self, path: str, errcode: int, times: int = 1) -> None:
        """Make the next `times` calls to path answer errcode."""
        self.errors[path].extend([errcode] * times)

    def hold(self, path: str, after: int) -> None:
        """Keep every call to path after the first `after` waiting until release()."""
        self._released.clear()
        self._hold[path] = after

    def release(self) -> None:
        """Let held calls answer."""
        self._hold.clear()
        self._released.set()

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (as a fetch elsewhere would)."""
        with self._lock:
            self.valid_tokens.clear()

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]

    def received(self, openid: str) -> list[dict[str, Any]]:
        """Messages that reached a user, on any channel."""
        return [d for d in self.deliveries if d["openid"] == openid]

    def _build(self) -> Flask:
        app = Flask("fake_wechat")

        @app.route("/cgi-bin/<path:rest>", methods=["GET", "POST"])
        def api(rest: str):
            path = "/cgi-bin/" + rest
            body = request.get_json(silent=True, force=True) if request.data else None
            with self._lock:
                self.calls.append({"path": path, "args": request.args.to_dict(), "json": body})
                injected = self.errors[path].popleft() if self.errors[path] else None
                held = path in self._hold and len(self.calls_to(path)) > self._hold[path]
            if injected:
                return jsonify(errcode=injected, errmsg=f"injected {injected}")
            if path == TOKEN:
                return self._token()
            issued = self.valid_tokens.get(request.args.get("access_token", ""))
            if issued is None:
                return jsonify(errcode=40001, errmsg="invalid credential")
            if time.time() - issued > self.token_lifetime:
                return jsonify(errcode=42001, errmsg="access_token expired")
            if self.call_delay:
                time.sleep(self.call_delay)
            if path == MEDIA:
                return self._media(request.args.get("media_id", ""))
            if path == VOICE_RESULT and self.recognition_delay:
                time.sleep(self.recognition_delay)
            with self._lock:
                answer = self._answer(path, body or {})
            if held:
                with self._lock:
                    self.held += 1
                self._released.wait(60)
            return jsonify(answer)

        return app

    def _token(self):
        if self.fetch_delay:
            time.sleep(self.fetch_delay)
        with self._lock:
            token = f"TOKEN{next(self._tokens)}"
            # WeChat: a new token makes the previous one invalid.
            self.valid_tokens = {token: time.time()}
        return jsonify(access_token=token, expires_in=self.token_lifetime)

    def _media(self, media_id: str):
        if media_id not in self.media:
            return jsonify(errcode=40007, errmsg="invalid media_id")
        return self.media[media_id], 200, {"Content-Type": "audio/amr"}

    def _deliver(self, openid: str, channel: str, text: str, **extra: Any) -> None:
        self.deliveries.append({"openid": openid, "channel": channel, "text": text, **extra})

    def _answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        ok = {"errcode": 0, "errmsg": "ok"}
        if path == CUSTOM:
            openid = body.get("touser", "")
            if body.get("msgtype") != "text" or not openid:
                return {"errcode": 40008, "errmsg": "invalid message type"}
            if openid in self.unsubscribed:
                return {"errcode": 43004, "errmsg": "require subscribe"}
            if openid in self.out_of_window:
                return {"errcode": 45015, "errmsg": "response out of time limit"}
            self._deliver(openid, "custom", body["text"]["content"])
            return ok
        if path == TEMPLATE:
            openid = body.get("touser", "")
            if not body.get("template_id"):
                return {"errcode": 40037, "errmsg": "invalid template_id"}
            if openid in self.unsubscribed:
                return {"errcode": 43004, "errmsg": "require subscribe"}
            key = (openid, body.get("client_msg_id") or object())
            if key in self._template_ids:  # WeChat sends one message per openid and key
                return {**ok, "msgid": self._template_ids[key]}
            msg_id = self._template_ids[key] = 5000 + len(self._template_ids)
            self._deliver(openid, "template", body["data"]["content"]["value"], url=body.get("url"),
                          msgid=msg_id)
            return {**ok, "msgid": msg_id}
        if path == "/cgi-bin/tags/get":
            return {"tags": [{"id": i, "name": t["name"], "count": len(t["users"])}
                             for i, t in self.tags.items()]}
        if path == "/cgi-bin/tags/create":
            name = body["tag"]["name"]
            if any(t["name"] == name for t in self.tags.values()):
                return {"errcode": 45157, "errmsg": "tag name exists"}
            tag_id = next(self._tag_ids)
            self.tags[tag_id] = {"name": name, "users": set()}
            return {"tag": {"id": tag_id, "name": name}}
        if path == "/cgi-bin/tags/delete":
            self.tags.pop(body["tag"]["id"], None)
            return ok
        if path == "/cgi-bin/tags/members/batchtagging":
            if body.get("tagid") not in self.tags:
                return {"errcode": 45159, "errmsg": "invalid tag id"}
            if not 1 <= len(body.get("openid_list", [])) <= 50:
                return {"errcode": 40032, "errmsg": "invalid openid list size"}
            self.tags[body["tagid"]]["users"].update(body["openid_list"])
            return ok
        if path == MASS:
            tag_id = body.get("filter", {}).get("tag_id")
            if tag_id not in self.tags or body.get("msgtype") != "text":
                return {"errcode": 40003, "errmsg": "invalid filter"}
            key = body.get("clientmsgid") or ""
            if key in self._mass_ids:
                return {"errcode": 45065, "errmsg": "clientmsgid exist",
                        "msg_id": self._mass_ids[key]}
            msg_id = self._mass_ids[key] = 1000 + len(self._mass_ids)
            for openid in sorted(self.tags[tag_id]["users"] - self.unsubscribed):
                self._deliver(openid, "mass", body["text"]["content"], msg_id=msg_id)
            return {**ok, "msg_id": msg_id, "msg_data_id": msg_id}
        if path == VOICE_ADD:
            upload = request.files.get("media")
            mp3 = upload.read() if upload else b""
            if request.args.get("format") != "mp3" or not mp3.startswith((b"ID3", b"\xff\xfb", b"\xff\xf3")):
                return {"errcode": 40005, "errmsg": "invalid file type"}
            self.voices[request.args.get("voice_id", "")] = mp3
            return ok
        if path == VOICE_RESULT:
            if request.args.get("voice_id") not in self.voices:
                return {"errcode": 40007, "errmsg": "invalid voice_id"}
            return {"result": self.transcript}
        if path == "/cgi-bin/menu/create":
            buttons = body.get("button")
            if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
                return {"errcode": 40016, "errmsg": "invalid button size"}
            for b in buttons:
                subs = b.get("sub_button", [b])
                if not 1 <= len(subs) <= 5:
                    return {"errcode": 40017, "errmsg": "invalid sub button size"}
                for s in subs:
                    if s.get("type") == "click" and not s.get("key"):
                        return {"errcode": 40019, "errmsg": "invalid button key size"}
                    if s.get("type") not in ("click", "view"):
                        return {"errcode": 40017, "errmsg": "invalid button type"}
            self.menu = body
            return ok
        return {"errcode": 99999, "errmsg": f"fake server does not know {path}"}
