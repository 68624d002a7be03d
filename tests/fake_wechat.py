"""A fake WeChat API server on 127.0.0.1 (Flask in a thread) that records every call.

Errors are injected per path: `api.fail("/cgi-bin/message/custom/send", 45015, times=1)`.
Unknown paths answer errcode 99999, as an unexpected call should fail loudly.
"""
from __future__ import annotations

import itertools
import threading
from collections import defaultdict, deque
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import make_server


class FakeWeChat:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.errors: dict[str, deque[int]] = defaultdict(deque)
        self.token_lifetime = 7200
        self._tokens = itertools.count(1)
        self.valid_tokens: set[str] = set()
        self._lock = threading.Lock()
        self.app = self._build()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FakeWeChat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def fail(self, path: str, errcode: int, times: int = 1) -> None:
        """Make the next `times` calls to path answer errcode."""
        self.errors[path].extend([errcode] * times)

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]

    def _build(self) -> Flask:
        app = Flask("fake_wechat")

        @app.route("/cgi-bin/<path:rest>", methods=["GET", "POST"])
        def api(rest: str):
            path = "/cgi-bin/" + rest
            body = request.get_json(silent=True, force=True) if request.data else None
            with self._lock:
                self.calls.append({"path": path, "args": request.args.to_dict(), "json": body})
                injected = self.errors[path].popleft() if self.errors[path] else None
            if injected:
                return jsonify(errcode=injected, errmsg=f"injected {injected}")
            if path == "/cgi-bin/token":
                token = f"TOKEN{next(self._tokens)}"
                with self._lock:
                    self.valid_tokens.add(token)
                return jsonify(access_token=token, expires_in=self.token_lifetime)
            if request.args.get("access_token") not in self.valid_tokens:
                return jsonify(errcode=40001, errmsg="invalid credential")
            if path == "/cgi-bin/message/custom/send":
                return jsonify(errcode=0, errmsg="ok")
            return jsonify(errcode=99999, errmsg=f"fake server does not know {path}")

        return app
