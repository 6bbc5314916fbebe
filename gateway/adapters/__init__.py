"""Input formats. Each adapter turns a request body into vendor-neutral candidate readings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from gateway.adapters.base import Adapter, TooManyReadings
from gateway.adapters.fhir import FhirAdapter
from gateway.adapters.healthconnect import HealthConnectAdapter
from gateway.adapters.healthkit import HealthKitAdapter
from gateway.adapters.native import NativeAdapter
from gateway.adapters.omh import OmhAdapter
from gateway.adapters.withings import WithingsAdapter

# Format name in `POST /v1/ingest/{format}` -> adapter factory.
ADAPTERS: Mapping[str, Callable[[], Adapter]] = MappingProxyType({"native": NativeAdapter})


def adapter_for(name: str) -> Adapter | None:
    factory = ADAPTERS.get(name)
    return None if factory is None else factory()


def native_adapter(*, max_readings: int = 10_000) -> NativeAdapter:
    return NativeAdapter(max_readings=max_readings)


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


__all__ = [
    "ADAPTERS",
    "Adapter",
    "NativeAdapter",
    "TooManyReadings",
    "adapter_for",
    "build_adapters",
    "native_adapter",
]
