"""China Standard Time: reference numbers, quota days and the dates staff see use it."""
from __future__ import annotations

from datetime import timedelta, timezone

# China has no daylight saving time.
CHINA_TZ = timezone(timedelta(hours=8))
