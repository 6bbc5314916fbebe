from __future__ import annotations

from gateway.adapters.native.adapter import NativeAdapter

__all__ = ["NativeAdapter"]
