"""Apple HealthKit: JSON samples from a bridge app, and Apple Health's export.xml."""

from __future__ import annotations

from gateway.adapters.healthkit.adapter import HealthKitAdapter, SubjectRequired
from gateway.adapters.healthkit.export import ExportSummary, parse_export

__all__ = ["ExportSummary", "HealthKitAdapter", "SubjectRequired", "parse_export"]
