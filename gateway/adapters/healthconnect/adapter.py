"""The `healthconnect` ingest format: Android Health Connect records as JSON (see `parse`)."""

from __future__ import annotations

from gateway.adapters.base import JSON, JsonAdapter, bounded
from gateway.adapters.healthconnect.parse import parse_records
from gateway.models import ParsedItem


class HealthConnectAdapter(JsonAdapter):
    name = "healthconnect"
    version = "1"
    media_types = frozenset({JSON})
    accepts = JSON

    def parse_document(self, document: object) -> list[ParsedItem]:
        # Series records expand into one reading a sample: the limit is on readings.
        return bounded(parse_records(document), self.max_readings)
