from __future__ import annotations

from gateway.adapters.native.parse import NativeAdapter

__all__ = ["NativeAdapter"]
