from __future__ import annotations

from gateway.adapters.withings.parse import WITHINGS_USER_SYSTEM, WithingsAdapter

__all__ = ["WITHINGS_USER_SYSTEM", "WithingsAdapter"]
