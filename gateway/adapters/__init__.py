"""Input formats. Each adapter turns a request body into vendor-neutral candidate readings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from gateway.adapters.base import Adapter, TooManyReadings
from gateway.adapters.native import NativeAdapter

# Format name in `POST /v1/ingest/{format}` -> adapter factory.
ADAPTERS: Mapping[str, Callable[[], Adapter]] = MappingProxyType({"native": NativeAdapter})


def adapter_for(name: str) -> Adapter | None:
    factory = ADAPTERS.get(name)
    return None if factory is None else factory()


def native_adapter(*, max_readings: int = 10_000) -> NativeAdapter:
    return NativeAdapter(max_readings=max_readings)


__all__ = [
    "ADAPTERS",
    "Adapter",
    "NativeAdapter",
    "TooManyReadings",
    "adapter_for",
    "native_adapter",
]
