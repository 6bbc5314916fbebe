from __future__ import annotations

from gateway.adapters.omh.parse import OMH_USER_SYSTEM, UNKNOWN_DEVICE, OmhAdapter

__all__ = ["OMH_USER_SYSTEM", "UNKNOWN_DEVICE", "OmhAdapter"]
