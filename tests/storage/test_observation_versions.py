"""ObservationStore with versioned records (issue 3): the highest version of a record is stored,
the versions it replaced are kept in observation_versions. Real PostgreSQL, no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from gateway.models import ObservationRow, Outcome
from gateway.storage import ZoneDatabase
from tests.conftest import DatabaseFactory
from tests.helpers import fetch

SUBJECT = "s1-" + "a" * 32
RECORD = "o1-" + "b" * 32
MARCH = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)


def row(
    version: int | None,
    value: float = 70.0,
    *,
    at: datetime = MARCH,
    observation_id: str = RECORD,
) -> ObservationRow:
    resource = {"resourceType": "Observation", "id": observation_id, "valueQuantity": value}
    return ObservationRow(
        id=observation_id,
        dedup_key=observation_id,
        subject=SUBJECT,
        device="d1-" + "c" * 32,
        code="29463-7",
        effective_start=at,
        effective_end=None,
        issued=at,
        source_format="healthconnect",
        resource=orjson.dumps(resource),
        version=version,
    )


@pytest.fixture
async def dsn(databases: DatabaseFactory) -> str:
    dsn = await databases.create("versions")
    # History rows reference their subject (erasure cascades), so the subject must exist.
    await fetch(
        dsn,
        "INSERT INTO subjects (pseudonym, site, research_consent, cross_border_consent, "
        "identity) VALUES ($1, 'site', true, false, '')",
        SUBJECT,
    )
    return dsn


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[ZoneDatabase]:
    database = await ZoneDatabase.connect("cn", dsn, max_size=8)
    yield database
    await database.close()


async def current(dsn: str) -> list[tuple[int | None, float, datetime]]:
    rows = await fetch(
        dsn, "SELECT version, resource::text AS r, effective_start FROM observations ORDER BY id"
    )
    return [
        (r["version"], orjson.loads(r["r"])["valueQuantity"], r["effective_start"]) for r in rows
    ]


async def history(dsn: str) -> list[tuple[int, float]]:
    rows = await fetch(
        dsn, "SELECT version, resource::text AS r FROM observation_versions ORDER BY version"
    )
    return [(r["version"], orjson.loads(r["r"])["valueQuantity"]) for r in rows]


async def test_a_new_record_is_created_and_the_same_version_again_is_a_duplicate(
    db: ZoneDatabase, dsn: str
) -> None:
    assert await db.observations.insert_many([row(1)]) == [Outcome.CREATED]
    assert await db.observations.insert_many([row(1, 99.0)]) == [Outcome.DUPLICATE]

    assert await current(dsn) == [(1, 70.0, MARCH)]
    assert await history(dsn) == []


async def test_a_higher_version_replaces_the_stored_one_and_keeps_it_as_history(
    db: ZoneDatabase, dsn: str
) -> None:
    await db.observations.insert_many([row(1, 70.0)])
    assert await db.observations.insert_many([row(2, 71.5)]) == [Outcome.UPDATED]

    assert await current(dsn) == [(2, 71.5, MARCH)]
    assert await history(dsn) == [(1, 70.0)]


async def test_an_older_version_arriving_late_changes_nothing_stored(
    db: ZoneDatabase, dsn: str
) -> None:
    await db.observations.insert_many([row(3, 73.0)])
    assert await db.observations.insert_many([row(2, 72.0)]) == [Outcome.DUPLICATE]

    assert await current(dsn) == [(3, 73.0, MARCH)]
    # Still part of the record's history: history does not depend on the order of arrival.
    assert await history(dsn) == [(2, 72.0)]


async def test_a_new_version_with_another_time_moves_the_record_to_that_months_partition(
    db: ZoneDatabase, dsn: str
) -> None:
    await db.observations.insert_many([row(1, at=MARCH)])
    assert await db.observations.insert_many([row(2, at=APRIL)]) == [Outcome.UPDATED]

    assert await current(dsn) == [(2, 70.0, APRIL)]
    # Partitions are named by their UTC month (observations_ensure_partition, migration 0012).
    assert await fetch(dsn, "SELECT 1 FROM observations_y2026m03") == []
    assert len(await fetch(dsn, "SELECT 1 FROM observations_y2026m04")) == 1
    [kept] = await fetch(dsn, "SELECT effective_start FROM observation_versions")
    assert kept["effective_start"] == MARCH


async def test_versions_of_one_record_in_one_batch_are_applied_in_order(
    db: ZoneDatabase, dsn: str
) -> None:
    outcomes = await db.observations.insert_many([row(1, 70.0), row(2, 72.0), row(2, 72.0)])

    assert outcomes == [Outcome.CREATED, Outcome.UPDATED, Outcome.DUPLICATE]
    assert await current(dsn) == [(2, 72.0, MARCH)]
    assert await history(dsn) == [(1, 70.0)]


async def test_unversioned_rows_keep_the_first_one_stored(db: ZoneDatabase, dsn: str) -> None:
    other = "o1-" + "d" * 32
    outcomes = await db.observations.insert_many(
        [row(None, 70.0, observation_id=other), row(1), row(None, 99.0, observation_id=other)]
    )

    assert outcomes == [Outcome.CREATED, Outcome.CREATED, Outcome.DUPLICATE]
    assert sorted(await current(dsn), key=str) == sorted(
        [(None, 70.0, MARCH), (1, 70.0, MARCH)], key=str
    )
    assert await history(dsn) == []


async def test_concurrent_versions_of_one_record_converge_on_the_highest(
    db: ZoneDatabase, dsn: str
) -> None:
    # Two pools, as two gateway processes would have; eight posts race, one version each.
    other = await ZoneDatabase.connect("cn", dsn, max_size=8)
    try:
        stores = [db.observations, other.observations]
        outcomes = await asyncio.gather(
            *(
                stores[v % 2].insert_many([row(v, 70.0 + v, at=MARCH + timedelta(days=v % 3))])
                for v in range(1, 9)
            )
        )
    finally:
        await other.close()

    flat = [o for [o] in outcomes]
    assert flat.count(Outcome.CREATED) == 1
    assert flat[7] in (Outcome.CREATED, Outcome.UPDATED)  # version 8 always wins
    [(version, value, _)] = await current(dsn)
    assert (version, value) == (8, 78.0)
    assert await history(dsn) == [(v, 70.0 + v) for v in range(1, 8)]


async def test_batches_sharing_records_in_opposite_orders_do_not_deadlock(
    db: ZoneDatabase, dsn: str
) -> None:
    # Each batch locks its records in one global order, whatever the order of its rows.
    first, second = "o1-" + "e" * 32, "o1-" + "f" * 32
    for version in range(1, 11):
        forward = [row(version, observation_id=first), row(version, observation_id=second)]
        await asyncio.gather(
            db.observations.insert_many(forward),
            db.observations.insert_many(forward[::-1]),
        )

    assert [v for v, _, _ in await current(dsn)] == [10, 10]
    assert len(await history(dsn)) == 18
