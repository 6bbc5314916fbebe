from __future__ import annotations

from gateway.measures.normalise import normalise
from gateway.measures.table import MEASURES

__all__ = ["MEASURES", "normalise"]
