"""The training registration and loan application forms, and "查询进度"."""
from __future__ import annotations

from handlers.registration.routes import router, show_status, start_loan, start_training

__all__ = ["router", "show_status", "start_loan", "start_training"]
