"""The `omh` ingest format: Open mHealth / IEEE 1752.1 data points (see `parse`)."""

from __future__ import annotations

from gateway.adapters.base import JSON, JsonAdapter
from gateway.adapters.omh.parse import parse_data_points
from gateway.models import ParsedItem


class OmhAdapter(JsonAdapter):
    name = "omh"
    version = "1"
    media_types = frozenset({JSON})
    accepts = JSON

    def parse_document(self, document: object) -> list[ParsedItem]:
        return parse_data_points(document, self.max_readings)
