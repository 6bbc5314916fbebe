from __future__ import annotations

from gateway.adapters.omh.adapter import OmhAdapter
from gateway.adapters.omh.parse import OMH_USER_SYSTEM, UNKNOWN_DEVICE

__all__ = ["OMH_USER_SYSTEM", "UNKNOWN_DEVICE", "OmhAdapter"]
