"""The shared adapter base: one media-type check and one JSON decoding for every format."""

from __future__ import annotations

import traceback
from collections.abc import Iterator

import pytest

from gateway.adapters import TooManyReadings, build_adapters
from gateway.adapters.base import bounded
from gateway.errors import InvalidJSON, UnsupportedMediaType
from gateway.models import ParsedItem, ParseRejection, RejectionCode

ADAPTERS = build_adapters(max_readings=10)

# What each format's 415 has named since before the base existed.
ACCEPTS = {
    "native": "application/json or application/x-ndjson",
    "omh": "application/json",
    "fhir": (
        "application/fhir+json, application/fhir+ndjson, application/json, application/x-ndjson"
    ),
    "healthconnect": "application/json",
    "withings": "application/json",
    "healthkit": "application/json or application/xml",
}
NDJSON_FORMATS = {"native": "application/x-ndjson", "fhir": "application/fhir+ndjson"}
SECRET = b"MRN-0042-secret"


def test_every_registered_format_is_covered() -> None:
    assert set(ADAPTERS) == set(ACCEPTS)


@pytest.mark.parametrize("name", sorted(ACCEPTS))
def test_a_media_type_the_format_does_not_list_is_415_naming_what_it_accepts(name: str) -> None:
    with pytest.raises(UnsupportedMediaType) as raised:
        ADAPTERS[name].parse(b"{}", "text/plain")
    assert raised.value.message == f"the {name} format accepts {ACCEPTS[name]}"


@pytest.mark.parametrize("name", sorted(ACCEPTS))
def test_a_body_that_is_not_json_is_invalid_json_and_does_not_carry_the_body(name: str) -> None:
    # Media-type parameters and case do not matter: this reaches the decoder, not the 415.
    with pytest.raises(InvalidJSON) as raised:
        ADAPTERS[name].parse(b'{"value": "' + SECRET + b'", ', "Application/JSON; charset=utf-8")
    assert raised.value.message == "body is not valid JSON"
    assert SECRET.decode() not in "".join(traceback.format_exception(raised.value))


@pytest.mark.parametrize("name", sorted(NDJSON_FORMATS))
def test_an_ndjson_line_that_is_not_json_is_invalid_json_naming_the_line(name: str) -> None:
    body = b"{}\n\n" + SECRET + b"\n"
    with pytest.raises(InvalidJSON) as raised:
        ADAPTERS[name].parse(body, NDJSON_FORMATS[name])
    assert raised.value.message == "line 3 is not valid JSON"
    assert SECRET.decode() not in "".join(traceback.format_exception(raised.value))


def test_bounded_refuses_at_the_first_item_over_the_limit_without_reading_further() -> None:
    produced: list[int] = []

    def items() -> Iterator[ParsedItem]:
        for number in range(100):
            produced.append(number)
            yield ParseRejection(RejectionCode.INVALID_READING, "x")

    with pytest.raises(TooManyReadings) as raised:
        bounded(items(), 3)
    assert raised.value.message == "a request may carry at most 3 readings"
    assert produced == [0, 1, 2, 3]
    assert len(bounded(iter([ParseRejection(RejectionCode.INVALID_READING, "x")] * 3), 3)) == 3
