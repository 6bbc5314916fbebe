"""The `healthkit` ingest format: Apple HealthKit samples.

Two bodies (see `bridge` and `export`):
- `application/json`: the bridge format, samples posted by an app on the phone, each naming its
  subject. `parse` decodes it and `bridge` reads the samples.
- `application/xml` / `text/xml`: Apple Health's export.xml. It carries no account id, so the
  subject must come from the request (query parameters); `parse` only has the body, so it
  answers `400 subject-required` and `parse_export(body, subject, device_fallback)` does the work
  once the web layer passes the subject.

Subjects: HealthKit has no vendor account id. The bridge app sends an identifier the clinic
enrolled (any system, e.g. the study's participant id system) in each sample's `subject`.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.adapters.base import JSON, JsonAdapter
from gateway.adapters.healthkit.bridge import parse_bridge
from gateway.adapters.healthkit.export import ExportSummary, parse_export
from gateway.errors import BadRequest
from gateway.models import Identifier, ParsedItem

XML_TYPES = frozenset({"application/xml", "text/xml"})
EXPORT_DEVICE_FALLBACK = "healthkit-export"


class SubjectRequired(BadRequest):
    code = "subject-required"


class HealthKitAdapter(JsonAdapter):
    name = "healthkit"
    version = "1"
    media_types = frozenset({JSON, *XML_TYPES})
    accepts = f"{JSON} or application/xml"

    def parse_document(self, document: object) -> list[ParsedItem]:
        return parse_bridge(document, max_readings=self.max_readings)

    def parse_other(self, body: bytes, essence: str) -> list[ParsedItem]:
        if essence in XML_TYPES:
            raise SubjectRequired(
                "an export.xml upload goes to /v1/ingest/healthkit/export with the query "
                "parameters subject_system and subject_value (an identifier the clinic enrolled)"
            )
        return super().parse_other(body, essence)

    def parse_export(
        self, body: bytes, subject: Identifier, summary: ExportSummary | None = None
    ) -> Iterator[ParsedItem]:
        """export.xml for `subject`, at most `max_readings` supported readings."""
        return parse_export(
            body,
            subject,
            EXPORT_DEVICE_FALLBACK,
            max_readings=self.max_readings,
            summary=summary,
        )
