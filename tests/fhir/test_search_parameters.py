"""Search-parameter parsing (R4 search.html), pure: tokens, escapes, quantities, dates, result
parameters, unknown and strict handling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.fhir.dates import Prefix, parse_date_range
from gateway.fhir.search import InvalidSearch, Token, parse_quantity, parse_search

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def search(*pairs: tuple[str, str], strict: bool = False) -> object:
    return parse_search("Observation", list(pairs), strict=strict, now=NOW)


def test_tokens_commas_and_escapes() -> None:
    request = parse_search("Observation", [("code", r"a|b,\,c,|d,x\|y|z")], strict=False, now=NOW)
    assert request.clauses[0].values == (
        Token("a", "b"),
        Token(None, ",c"),
        Token("", "d"),
        Token("x|y", "z"),
    )


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        ("2024-12", datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        (
            "2024-02-29T23:59+08:00",
            datetime(2024, 2, 29, 15, 59, tzinfo=UTC),
            datetime(2024, 2, 29, 16, 0, tzinfo=UTC),
        ),
        (
            "2024-02-29T10:00:00.5Z",
            datetime(2024, 2, 29, 10, 0, 0, 500000, tzinfo=UTC),
            datetime(2024, 2, 29, 10, 0, 0, 600000, tzinfo=UTC),
        ),
    ],
)
def test_a_date_is_the_range_of_its_precision(text: str, low: datetime, high: datetime) -> None:
    found = parse_date_range(text)
    assert (found.low, found.high) == (low, high)


@pytest.mark.parametrize("text", ["24", "2024-13", "2024-02-30", "2024-01-01T25:00Z", "x"])
def test_bad_dates_are_invalid(text: str) -> None:
    with pytest.raises(InvalidSearch):
        search(("date", text))


def test_ap_widens_by_a_tenth_of_the_distance_to_now() -> None:
    request = parse_search("Observation", [("date", "ap2016")], strict=False, now=NOW)
    condition = request.clauses[0].values[0]
    assert condition.prefix is Prefix.AP  # type: ignore[union-attr]
    margin = (NOW - datetime(2016, 1, 1, tzinfo=UTC)) * 0.1
    assert condition.range.low == datetime(2016, 1, 1, tzinfo=UTC) - margin  # type: ignore[union-attr]


def test_quantity_implicit_precision() -> None:
    quantity = parse_quantity("5.40|http://unitsofmeasure.org|mg")
    assert (quantity.low, quantity.high) == (Decimal("5.395"), Decimal("5.405"))
    assert (quantity.system, quantity.code) == ("http://unitsofmeasure.org", "mg")


def test_unknown_parameters_are_left_out_unless_strict() -> None:
    request = parse_search(
        "Observation", [("colour", "red"), ("_count", "2")], strict=False, now=NOW
    )
    assert request.echo == (("_count", "2"),)
    assert request.ignored == ("colour",)
    with pytest.raises(InvalidSearch):
        search(("colour", "red"), strict=True)


@pytest.mark.parametrize(
    ("resource", "key", "value"),
    [
        ("Patient", "_id", "\x06\x00a"),
        ("Observation", "code", "8867-4\x00"),
        ("Observation", "subject", "Patient/a\x00"),
        ("Device", "patient\x00", "x"),
    ],
)
def test_a_nul_character_anywhere_is_an_invalid_search(resource: str, key: str, value: str) -> None:
    with pytest.raises(InvalidSearch, match="U\\+0000"):
        parse_search(resource, [(key, value)], strict=False, now=NOW)


def test_count_is_capped_and_zero_means_total_only() -> None:
    assert parse_search("Observation", [("_count", "5000")], strict=False, now=NOW).count == 1000
    zero = parse_search("Observation", [("_count", "0")], strict=False, now=NOW)
    assert zero.summary_count
    assert zero.total


def test_offsets_are_respected() -> None:
    found = parse_date_range("2024-03-05T10:00:00-05:00")
    assert found.low == datetime(2024, 3, 5, 10, tzinfo=timezone(timedelta(hours=-5)))
