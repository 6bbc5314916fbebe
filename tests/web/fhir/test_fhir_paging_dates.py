"""Paging while readings arrive, and `date` searches against a reference implementation of the
R4 prefix table (https://hl7.org/fhir/R4/search.html#prefix), written here independently of
gateway.fhir.dates."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.conftest import Gateway
from tests.helpers import reading, steps
from tests.web.fhir.conftest import Fhir, ids, link

START = datetime(2024, 1, 30, 22, 0, tzinfo=UTC)


async def test_paging_while_readings_arrive_neither_repeats_nor_skips(
    fhir: Fhir, gateway: Gateway
) -> None:
    subject = await gateway.enrol("cn", "MRN-PG")
    existing = [reading("MRN-PG", time=START + timedelta(hours=7 * n)) for n in range(40)]
    status, body = await gateway.ingest("cn", existing)
    assert status == 200
    before = {r["id"] for r in body["results"]}

    seen: list[str] = []
    bundle = await fhir.search(patient=subject, _count="7", _sort="date")
    late = 0
    while True:
        seen += ids(bundle)
        # New readings on both sides of the cursor, in other months (other partitions) too.
        late += 1
        _, _added = await gateway.ingest(
            "cn",
            [
                reading("MRN-PG", time=START - timedelta(days=late)),
                reading("MRN-PG", time=START + timedelta(days=30, minutes=late)),
            ],
        )
        nxt = link(bundle, "next")
        if nxt is None:
            break
        status, bundle = await fhir.get(URL(nxt).path_qs)
        assert status == 200
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert before <= set(seen), "a row that existed at the start was skipped"


# --- date searches vs a reference ---------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    id: str
    low: datetime
    high: datetime  # == low for effectiveDateTime


POINTS = [
    datetime(2023, 12, 31, 23, 30, tzinfo=UTC),
    datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2024, 1, 1, 7, 59, 59, tzinfo=timezone(timedelta(hours=8))),
    datetime(2024, 2, 29, 12, 0, 30, tzinfo=UTC),
    datetime(2024, 3, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
]
PERIODS = [
    (datetime(2023, 12, 31, 23, 0, tzinfo=UTC), datetime(2024, 1, 1, 1, 0, tzinfo=UTC)),
    (datetime(2024, 2, 28, 22, 0, tzinfo=UTC), datetime(2024, 3, 1, 2, 0, tzinfo=UTC)),
    (datetime(2024, 6, 1, 0, 0, tzinfo=UTC), datetime(2024, 6, 1, 0, 30, tzinfo=UTC)),
]


@pytest.fixture
async def dated(gateway: Gateway) -> tuple[Fhir, str, list[Stored]]:
    from tests.smart_helpers import client_token

    subject = await gateway.enrol("cn", "MRN-DT")
    items: list[dict[str, Any]] = [reading("MRN-DT", time=p) for p in POINTS]
    for start, end in PERIODS:
        item = steps("MRN-DT", 10)
        item["start"], item["end"] = start.isoformat(), end.isoformat()
        items.append(item)
    status, body = await gateway.ingest("cn", items)
    assert status == 200, body
    stored = [
        Stored(r["id"], moment, moment) for r, moment in zip(body["results"], POINTS, strict=False)
    ]
    for r, (start, end) in zip(body["results"][len(POINTS) :], PERIODS, strict=True):
        stored.append(Stored(r["id"], start, end))
    return Fhir(gateway, await client_token(gateway)), subject, stored


@dataclass(frozen=True)
class DateValue:
    text: str
    low: datetime
    high: datetime


@st.composite
def date_values(draw: st.DrawFn) -> DateValue:
    """A FHIR date search value of random precision and its range, computed plainly."""
    year = draw(st.sampled_from([2023, 2024, 2025]))
    precision = draw(st.sampled_from(["year", "month", "day", "minute", "second"]))
    if precision == "year":
        low = datetime(year, 1, 1, tzinfo=UTC)
        return DateValue(f"{year}", low, datetime(year + 1, 1, 1, tzinfo=UTC))
    month = draw(st.integers(1, 12))
    if precision == "month":
        low = datetime(year, month, 1, tzinfo=UTC)
        high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return DateValue(f"{year}-{month:02d}", low, high)
    day = draw(st.integers(1, 28 if month == 2 else 30))
    if precision == "day":
        low = datetime(year, month, day, tzinfo=UTC)
        return DateValue(low.date().isoformat(), low, low + timedelta(days=1))
    hours = draw(st.sampled_from([-5, 0, 8]))
    zone = timezone(timedelta(hours=hours))
    low = datetime(
        year, month, day, draw(st.integers(0, 23)), draw(st.integers(0, 59)), tzinfo=zone
    )
    offset = "Z" if hours == 0 else low.isoformat()[-6:]
    if precision == "minute":
        return DateValue(low.strftime("%Y-%m-%dT%H:%M") + offset, low, low + timedelta(minutes=1))
    low = low.replace(second=draw(st.integers(0, 59)))
    return DateValue(low.strftime("%Y-%m-%dT%H:%M:%S") + offset, low, low + timedelta(seconds=1))


def overlaps(low: datetime | None, high: datetime | None, item: Stored) -> bool:
    """[low, high) (None: unbounded) and the closed [item.low, item.high] share an instant."""
    return (high is None or item.low < high) and (low is None or item.high >= low)


def reference(prefix: str, value: DateValue, item: Stored) -> bool:
    contains = value.low <= item.low and item.high < value.high
    above = overlaps(value.high, None, item)
    below = overlaps(None, value.low, item)
    return {
        "eq": contains,
        "ne": not contains,
        "gt": above,
        "lt": below,
        "ge": above or contains,
        "le": below or contains,
        "sa": item.low >= value.high,
        "eb": item.high < value.low,
    }[prefix]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    prefix=st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]),
    value=date_values(),
)
async def test_date_search_matches_the_reference(
    dated: tuple[Fhir, str, list[Stored]], prefix: str, value: DateValue
) -> None:
    fhir, subject, stored = dated
    bundle = await fhir.search(patient=subject, date=prefix + value.text, _count="100")
    expected = {item.id for item in stored if reference(prefix or "eq", value, item)}
    assert set(ids(bundle)) == expected


async def test_dates_concurrently_do_not_interfere(dated: tuple[Fhir, str, list[Stored]]) -> None:
    fhir, subject, stored = dated
    answers = await asyncio.gather(
        *(fhir.search(patient=subject, date=f"ge{year}") for year in (2023, 2024, 2025))
    )
    # ge2024 leaves out the three items that lie before 2024 in UTC (one written at +08:00).
    assert [len(ids(a)) for a in answers] == [len(stored), len(stored) - 3, 0]
