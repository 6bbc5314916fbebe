"""Shape checks shared by the JSON-based adapters, whose messages name the JSON path and what it
must be — never the value found there."""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable
from datetime import datetime

from gateway.models import ParsedItem, ParseRejection, RejectionCode

# RFC 3339 date-time with the UTC offset optional (a missing offset is normalise's
# `missing-offset`) and offsets limited to FHIR's -14:00..+14:00.
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)


def one_of(value: object, allowed: Collection[object]) -> bool:
    """Whether a payload value is in a code table. Payload values may be JSON arrays or objects,
    which cannot be hashed into a set or dict lookup (a TypeError, so a 500): those are in no
    table."""
    return isinstance(value, Hashable) and value in allowed


class InvalidShape(Exception):
    """One reading is not the documented shape; becomes that reading's `invalid-reading`."""

    def __init__(self, path: str, requirement: str) -> None:
        super().__init__(f"{path} {requirement}")
        self.message = f"{path} {requirement}"

    def rejection(self, prefix: str = "") -> ParsedItem:
        return ParseRejection(RejectionCode.INVALID_READING, prefix + self.message)


def at(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def json_object(raw: object, path: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise InvalidShape(path, "must be a JSON object")
    return raw


def closed_object(raw: object, path: str, fields: frozenset[str]) -> dict[str, object]:
    found = json_object(raw, path)
    if not found.keys() <= fields:
        raise InvalidShape(path, f"may only have the fields {', '.join(sorted(fields))}")
    return found


def string(raw: object, path: str, max_length: int) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= max_length:
        raise InvalidShape(path, f"must be a string of 1-{max_length} characters")
    return raw


def optional_string(raw: object, path: str, max_length: int) -> str | None:
    return None if raw is None else string(raw, path, max_length)


def number(raw: object, path: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidShape(path, "must be a JSON number")
    return float(raw)


def timestamp(raw: object, path: str) -> datetime:
    if isinstance(raw, str) and RFC3339.fullmatch(raw):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    raise InvalidShape(
        path, "must be an RFC 3339 date-time with a UTC offset, e.g. 2026-11-30T08:00:00+08:00"
    )


def optional_timestamp(raw: object, path: str) -> datetime | None:
    return None if raw is None else timestamp(raw, path)
