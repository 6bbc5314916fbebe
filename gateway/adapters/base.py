"""The interface every input format implements, and the base that JSON formats share.

`Adapter` is the contract the web layer and the registry (`build_adapters`) rely on: bytes in,
one parsed item per reading out. `JsonAdapter` does what every JSON format repeated: pick the
handler by media type (`415 unsupported-media-type` for any other), decode the body or its NDJSON
lines (`400 invalid-json`), and hold the request's reading limit (`400 too-many-readings`). A
format's own `adapter.py` subclasses it and hands the decoded document to its `parse.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import ClassVar, Protocol

import orjson

from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.models import ParsedItem

JSON = "application/json"
NDJSON = "application/x-ndjson"


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


def media_essence(media_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return media_type.partition(";")[0].strip().lower()


def load_json(data: bytes, message: str = "body is not valid JSON") -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # Raised outside the handler: orjson's error carries the whole document, which must not
        # travel along as our exception's context. Also raised for numbers a double cannot hold.
        pass
    raise InvalidJSON(message)


def check_count(count: int, max_readings: int, what: str = "readings") -> None:
    if count > max_readings:
        raise TooManyReadings(f"a request may carry at most {max_readings} {what}")


def bounded(items: Iterable[ParsedItem], max_readings: int) -> list[ParsedItem]:
    """`items` as a list, refused with `TooManyReadings` as soon as there are more than
    `max_readings`: for formats where one record may expand into many readings."""
    found: list[ParsedItem] = []
    for item in items:
        found.append(item)
        check_count(len(found), max_readings)
    return found


def ndjson_documents(body: bytes, max_readings: int) -> Iterator[tuple[int, object]]:
    """(line number, decoded document) for each non-empty line; BadRequest for an empty body."""
    seen = 0
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        seen += 1
        check_count(seen, max_readings)
        yield number, load_json(line, f"line {number} is not valid JSON")
    if seen == 0:
        raise BadRequest("body has no readings")


class JsonAdapter(ABC):
    """An `Adapter` whose bodies are JSON documents, and for some formats NDJSON lines.

    Subclasses name the format and its media types, and implement `parse_document` (and
    `parse_lines` when `ndjson_types` is not empty). A media type in neither set goes to
    `parse_other`, which refuses it unless the format reads non-JSON bodies itself.
    """

    name: str
    version: str
    json_types: ClassVar[frozenset[str]] = frozenset({JSON})
    ndjson_types: ClassVar[frozenset[str]] = frozenset()
    media_types: frozenset[str]  # json_types | ndjson_types, and what parse_other reads
    accepts: ClassVar[str]  # the media types as `415` names them, e.g. "application/json"

    def __init__(self, *, max_readings: int = 10_000) -> None:
        self.max_readings = max_readings

    def parse(self, body: bytes, media_type: str) -> list[ParsedItem]:
        essence = media_essence(media_type)
        if essence in self.json_types:
            return self.parse_document(load_json(body))
        if essence in self.ndjson_types:
            return self.parse_lines(ndjson_documents(body, self.max_readings))
        return self.parse_other(body, essence)

    @abstractmethod
    def parse_document(self, document: object) -> list[ParsedItem]:
        """The items of one decoded JSON body."""

    def parse_lines(self, lines: Iterator[tuple[int, object]]) -> list[ParsedItem]:
        """The items of NDJSON bodies, as (line number, decoded line); the line count is already
        bounded by `max_readings`."""
        raise self.unsupported()

    def parse_other(self, body: bytes, essence: str) -> list[ParsedItem]:
        """A body of a media type that is not JSON or NDJSON."""
        raise self.unsupported()

    def unsupported(self) -> UnsupportedMediaType:
        return UnsupportedMediaType(f"the {self.name} format accepts {self.accepts}")
