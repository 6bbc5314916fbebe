from __future__ import annotations

from gateway.adapters.withings.adapter import WithingsAdapter
from gateway.adapters.withings.parse import WITHINGS_USER_SYSTEM

__all__ = ["WITHINGS_USER_SYSTEM", "WithingsAdapter"]
