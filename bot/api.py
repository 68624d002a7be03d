"""Blueprint "api": read-only JSON endpoints. /api/ask matches a question like the bot."""
from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bot import current_runtime

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
def require_key() -> tuple[Response, int] | None:
    """With [api] key set, require "Authorization: Bearer KEY"."""
    key = current_runtime().settings.api.key
    if not key:
        return None
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
        return jsonify(error="unauthorized"), 401
    return None


@bp.post("/ask")
def ask() -> Response | tuple[Response, int]:
    """{"q": "…"} -> band, topic, score, answer, suggestions, office. Records nothing."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # JSON nested past Python's parser depth
        data = None
    question = data.get("q") if isinstance(data, dict) else None
    if not isinstance(question, str) or not question.strip():
        return jsonify(error='请求体应为 JSON：{"q": "问题"}'), 400
    return jsonify(ask_payload(question))


def ask_payload(question: str) -> dict[str, Any]:
    """The /api/ask answer for a question (also used by `run.py ask --json`)."""
    rt = current_runtime()
    match = rt.library.match(question)
    office = rt.settings.county.office(match.office) if match.office else None
    return {
        "band": match.band,
        "topic": match.topic_id,
        "score": match.score,
        "answer": rt.describe_match(match, rt.library, rt.settings),
        "suggestions": [{"topic": c.topic_id, "title": c.title, "score": c.score}
                        for c in match.candidates],
        # Referral band: the office that handles the question (from config.toml).
        "office": {"name": office.name, "phone": office.phone, "address": office.address}
        if office else None,
    }
