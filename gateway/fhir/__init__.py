from __future__ import annotations

from gateway.fhir.observation import build_observation

__all__ = ["build_observation"]
