"""The interface every input format implements: bytes in, one parsed item per reading out."""

from __future__ import annotations

from typing import Protocol

from gateway.errors import BadRequest
from gateway.models import ParsedItem


class TooManyReadings(BadRequest):
    code = "too-many-readings"


class Adapter(Protocol):
    name: str
    version: str
    media_types: frozenset[str]

    def parse(self, body: bytes, media_type: str) -> list[ParsedItem]:
        """Split a request body into one `CandidateReading` or `ParseRejection` per reading.

        Raises `InvalidJSON` when the body (or an NDJSON line) is not JSON, `BadRequest` when it is
        not the format's documented shape at top level, `TooManyReadings` above the adapter's
        limit. Problems inside one reading are that reading's `ParseRejection`, never a raise.
        """
        ...
