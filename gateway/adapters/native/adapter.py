"""The `native` ingest format: the gateway's own JSON, version 1 (see `parse`)."""

from __future__ import annotations

from collections.abc import Iterator

from gateway.adapters.base import JSON, NDJSON, JsonAdapter
from gateway.adapters.native.parse import parse_document, parse_lines
from gateway.models import ParsedItem


class NativeAdapter(JsonAdapter):
    """One reading, a `{"readings": [...]}` batch, or NDJSON (one reading a line)."""

    name = "native"
    version = "1"
    ndjson_types = frozenset({NDJSON})
    media_types = frozenset({JSON, NDJSON})
    accepts = f"{JSON} or {NDJSON}"

    def parse_document(self, document: object) -> list[ParsedItem]:
        return parse_document(document, self.max_readings)

    def parse_lines(self, lines: Iterator[tuple[int, object]]) -> list[ParsedItem]:
        return parse_lines(lines)
