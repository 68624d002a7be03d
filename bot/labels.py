"""What staff and applicants read for stored codes: console pages, exports and the forms."""
from __future__ import annotations

APPLICATION_TYPES = {"training": "培训报名", "loan": "贷款申请"}
STAGES = {"running": "已经在经营", "planned": "准备开办"}
