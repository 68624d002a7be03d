"""The training registration and loan application forms, and "查询进度".

forms.py: the questions and the summary; checks.py: the checks with their hints;
submit.py: what confirming does; withdraw.py: the applicant withdrawing a submitted one;
notices.py: what applicants are told when staff change a status or a seat frees up;
routes.py: the router. The form lifecycle itself is bot/dialogue.py's, the status
workflow bot/casework.py's.
"""
from __future__ import annotations

from handlers.registration.routes import (
    CANCEL_WORDS,
    cancel,
    is_filling,
    pause,
    router,
    show_status,
    start_loan,
    start_training,
)

__all__ = ["CANCEL_WORDS", "cancel", "is_filling", "pause", "router", "show_status", "start_loan",
           "start_training"]
