"""Who is signed in to the console, for pages outside it (the simulator in production)."""
from __future__ import annotations

from flask import current_app, request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from bot import get_db
from bot.storage import staff


def signed_in_staff() -> str | None:
    """The name of the staff member whose console session this request carries, or None
    (no session, signed out since, the account disabled or removed)."""
    carried: SessionMixin | None
    if request.path.startswith("/admin"):
        carried = session
    else:
        # The console opens sessions only under /admin; elsewhere read its cookie as is.
        carried = SecureCookieSessionInterface().open_session(current_app, request)
    if carried is None:
        return None
    name = carried.get("staff")
    account = staff.get_staff(get_db(), name) if name else None
    if (account is None or account["disabled_at"]
            or carried.get("since", 0) <= (account["sessions_valid_after"] or 0)):
        return None
    return name
