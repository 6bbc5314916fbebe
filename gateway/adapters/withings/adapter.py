"""The `withings` ingest format: Withings Public API responses with the account id (see `parse`)."""

from __future__ import annotations

from gateway.adapters.base import JSON, JsonAdapter, bounded
from gateway.adapters.withings.parse import parse_response
from gateway.models import ParsedItem


class WithingsAdapter(JsonAdapter):
    name = "withings"
    version = "1"
    media_types = frozenset({JSON})
    accepts = JSON

    def parse_document(self, document: object) -> list[ParsedItem]:
        # Groups and series entries expand into several readings: the limit is on readings.
        return bounded(parse_response(document), self.max_readings)
