"""Hostile bodies through the whole gateway, over HTTP, against real zone databases: never a 5xx,
and a request refused as a whole (a 4xx other than the per-reading 422) changes no table in
either zone; a 422 (every reading rejected) stores no observation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters.omh import OMH_USER_SYSTEM
from gateway.adapters.withings.parse import WITHINGS_USER_SYSTEM
from tests.adapters.omh.samples import USER_ID
from tests.conftest import Gateway
from tests.fuzz.strategies import (
    MEDIA_TYPES,
    URL_TEXT,
    content_encoded,
    gentle_json_bodies,
    json_bodies,
    ndjson_bodies,
    xml_bodies,
)
from tests.smart_helpers import client_token

T = TypeVar("T")
PER_READING = {200, 207, 422}


def in_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    """Run a coroutine on the test's event loop from Hypothesis' (synchronous) thread."""

    def run(coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)  # type: ignore[arg-type]

    return run


async def row_counts(connections: dict[str, asyncpg.Connection]) -> dict[str, int]:
    counts = {}
    for zone, conn in connections.items():
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        for (table,) in tables:
            counts[f"{zone}.{table}"] = await conn.fetchval(f'SELECT count(*) FROM "{table}"')
    return counts


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, str | None]:
    """(path, content type, body, Content-Encoding): mostly well-addressed hostile bodies, some
    misaddressed, some in a content coding (valid, damaged or unsupported)."""
    fmt = draw(st.sampled_from(sorted(MEDIA_TYPES)))
    media_type = draw(st.sampled_from(MEDIA_TYPES[fmt]))
    body = draw(
        ndjson_bodies(fmt)
        if "ndjson" in media_type
        else st.one_of(json_bodies(fmt), gentle_json_bodies(fmt))
    )
    path = f"/v1/ingest/{fmt}"
    choice = draw(st.integers(0, 9))
    if choice == 0:
        media_type = draw(
            st.sampled_from(
                ["text/plain", "application/xml", "", "application/json; charset=latin-9000"]
            )
        )
    elif choice == 1:
        path, media_type = (
            "/v1/ingest/healthkit/export?subject_system=s&subject_value=v",
            ("application/xml"),
        )
        body = draw(xml_bodies())
    elif choice == 2:
        path = "/v1/subjects"
    coding, body = draw(content_encoded(body)) if draw(st.booleans()) else (None, body)
    return path, media_type, body, coding


async def test_hostile_bodies_never_get_a_5xx_nor_leave_a_partial_store(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    # The subjects of the seed documents, so that mutations which stay valid reach storage.
    await gateway.enrol(
        "cn",
        "MRN-1",
        extra=[
            {"system": WITHINGS_USER_SYSTEM, "value": "1234567"},
            {"system": OMH_USER_SYSTEM, "value": USER_ID},
            {"system": "https://example.org/study-participant", "value": "P-0001"},
        ],
    )
    connections = {zone: await asyncpg.connect(dsn) for zone, dsn in zone_dsns.items()}
    run = in_loop(asyncio.get_running_loop())

    async def post(
        path: str, media_type: str, body: bytes, coding: str | None
    ) -> tuple[int, dict[str, int]]:
        token = gateway.clinic["cn"] if path == "/v1/subjects" else gateway.vendor["cn"]
        headers = {**gateway.auth(token), "Content-Type": media_type}
        if coding is not None:
            headers["Content-Encoding"] = coding
        response = await gateway.client.post(path, data=body, headers=headers)
        await response.read()
        return response.status, await row_counts(connections)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests())
    def prop(request: tuple[str, str, bytes, str | None]) -> None:
        before = run(row_counts(connections))
        status, after = run(post(*request))
        assert status < 500, status
        if status == 422:
            observations = [k for k in before if k.split(".")[1].startswith("observations")]
            assert {k: after[k] for k in observations} == {k: before[k] for k in observations}
        elif status >= 400:
            assert after == before, status

    try:
        await asyncio.to_thread(prop)
    finally:
        for conn in connections.values():
            await conn.close()


FHIR_GETS = [
    "/fhir/Observation?{name}={value}",
    "/fhir/Patient?{name}={value}",
    "/fhir/Device?{name}={value}",
    "/fhir/Observation/{value}",
    "/fhir/Observation/o1-x/_history/{value}",
    "/fhir/Observation/$lastn?max={value}",
    "/fhir/Group/{value}/$export",
    "/fhir/$export-status/{value}",
]
SEARCH_NAMES = [
    "code",
    "category",
    "status",
    "identifier",
    "_id",
    "patient",
    "date",
    "_count",
    "value-quantity",
    "_elements",
    "_sort",
    "{value}",
]


async def test_hostile_path_segments_and_query_values_never_get_a_5xx(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1")
    headers = {**gateway.auth(await client_token(gateway)), "Prefer": "respond-async"}
    run = in_loop(asyncio.get_running_loop())

    async def get(url: str) -> int:
        response = await gateway.client.get(url, headers=headers)
        await response.read()
        return response.status

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        template=st.sampled_from(FHIR_GETS),
        name=st.sampled_from(SEARCH_NAMES),
        value=URL_TEXT,
    )
    def prop(template: str, name: str, value: str) -> None:
        encoded = quote(value.encode("utf-8", "surrogatepass"), safe="")
        url = template.format(name=name.format(value=encoded), value=encoded)
        status = run(get(url))
        assert status < 500, (url, status)

    await asyncio.to_thread(prop)
