from __future__ import annotations

from gateway.adapters.healthconnect.adapter import HealthConnectAdapter

__all__ = ["HealthConnectAdapter"]
