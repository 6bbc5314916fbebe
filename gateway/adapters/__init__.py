"""Input formats. Each adapter turns a request body into vendor-neutral candidate readings.

Every folder `<format>/` holds the same files: `adapter.py` (the adapter class: name, version,
media types, the `parse` entry point, on `base.JsonAdapter`), `parse.py` (payload -> candidate
readings) and, where the format has vendor codes, `codes.py` (those tables, as data).
"""

from __future__ import annotations

from gateway.adapters.base import Adapter, TooManyReadings
from gateway.adapters.fhir import FhirAdapter
from gateway.adapters.healthconnect import HealthConnectAdapter
from gateway.adapters.healthkit import HealthKitAdapter
from gateway.adapters.native import NativeAdapter
from gateway.adapters.omh import OmhAdapter
from gateway.adapters.withings import WithingsAdapter


def build_adapters(*, max_readings: int) -> dict[str, Adapter]:
    """Every input format this gateway accepts, by its name in `POST /v1/ingest/{format}`."""
    return {
        "native": NativeAdapter(max_readings=max_readings),
        "omh": OmhAdapter(max_readings=max_readings),
        "fhir": FhirAdapter(max_readings=max_readings),
        "healthconnect": HealthConnectAdapter(max_readings=max_readings),
        "withings": WithingsAdapter(max_readings=max_readings),
        "healthkit": HealthKitAdapter(max_readings=max_readings),
    }


__all__ = ["Adapter", "TooManyReadings", "build_adapters"]
