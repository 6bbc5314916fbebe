"""FHIR R4 Observations from personal-health gateways (HL7 PHD IG), Bundles and NDJSON."""

from __future__ import annotations

from gateway.adapters.fhir.adapter import FhirAdapter

__all__ = ["FhirAdapter"]
