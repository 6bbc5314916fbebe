from __future__ import annotations

from gateway.adapters.healthconnect.parse import HealthConnectAdapter

__all__ = ["HealthConnectAdapter"]
