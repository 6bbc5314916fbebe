"""The `fhir` ingest format: FHIR R4 Observations, Bundles of them, and NDJSON (see `parse`)."""

from __future__ import annotations

from collections.abc import Iterator

from gateway.adapters.base import JSON, NDJSON, JsonAdapter
from gateway.adapters.fhir.parse import parse_lines, parse_resource
from gateway.models import ParsedItem

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"


class FhirAdapter(JsonAdapter):
    """One Observation, a batch/transaction/collection Bundle, or NDJSON Observations."""

    name = "fhir"
    version = "4.0.1"
    json_types = frozenset({FHIR_JSON, JSON})
    ndjson_types = frozenset({FHIR_NDJSON, NDJSON})
    media_types = json_types | ndjson_types
    accepts = ", ".join(sorted(media_types))

    def parse_document(self, document: object) -> list[ParsedItem]:
        return parse_resource(document, self.max_readings)

    def parse_lines(self, lines: Iterator[tuple[int, object]]) -> list[ParsedItem]:
        return parse_lines(lines)
