"""Issue 11, "Robustness": request input that used to be a 500 — a body that is not valid under
its Content-Encoding, non-ASCII digits where a number goes, control characters (NUL) in paths,
queries, forms and JSON strings — is a 4xx error (an OperationOutcome under /fhir) decided in one
place (gateway.web.body, gateway.web.request_line, gateway.lexical), and stores nothing."""

from __future__ import annotations

import gzip
import json
from typing import Any

import orjson
import pytest

from gateway.adapters.omh import OMH_USER_SYSTEM
from tests.adapters.omh.samples import USER_ID, data_point, sample_keys
from tests.conftest import MRN, Gateway
from tests.helpers import fetch, reading
from tests.smart_helpers import client_token
from tests.web.bulk_export_helpers import researcher, study

NOT_GZIP = b"this is not gzip"
FORM = "application/x-www-form-urlencoded"


async def _routes(gateway: Gateway) -> list[tuple[str, str, str, dict[str, str]]]:
    """(method, path, content type, credentials) of every route that reads a body."""
    pseudonym = await gateway.enrol("cn", "MRN-1")
    fhir = gateway.auth(await client_token(gateway))
    research = await researcher(gateway)
    await study(gateway, "study-1", [research])
    clinic = gateway.auth(gateway.clinic["cn"])
    vendor = gateway.auth(gateway.vendor["cn"])
    return [
        *[("POST", f"/v1/ingest/{fmt}", "application/json", vendor) for fmt in ("native", "fhir")],
        (
            "POST",
            "/v1/ingest/healthkit/export?subject_system=s&subject_value=v",
            "application/xml",
            vendor,
        ),
        ("POST", "/v1/subjects", "application/json", clinic),
        ("PATCH", f"/v1/subjects/{pseudonym}/consent", "application/json", clinic),
        ("DELETE", f"/v1/subjects/{pseudonym}", "application/json", clinic),
        ("POST", f"/v1/notify/withings/{gateway.vendor['cn']}", FORM, {}),
        ("POST", "/auth/token", FORM, {}),
        ("POST", "/fhir/Observation/_search", FORM, fhir),
        ("POST", "/fhir/Patient/_search", FORM, fhir),
        (
            "POST",
            "/fhir/Group/study-1/$export",
            "application/fhir+json",
            {**research.headers, "Prefer": "respond-async"},
        ),
    ]


async def _counts(dsn: str) -> list[int]:
    return [
        len(await fetch(dsn, f"SELECT 1 FROM {table}"))
        for table in ("observations", "subjects", "export_jobs", "audit_events")
    ]


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", NOT_GZIP),
        ("deflate", NOT_GZIP),
        ("GZip", b"\x1f\x8b\x08\x00" + b"\xff" * 40),  # a gzip header, then garbage
    ],
)
async def test_a_body_that_is_not_valid_under_its_content_encoding_is_400_on_every_route(
    gateway: Gateway, zone_dsns: dict[str, str], coding: str, body: bytes
) -> None:
    for method, path, media_type, credentials in await _routes(gateway):
        before = await _counts(zone_dsns["cn"])
        response = await gateway.client.request(
            method,
            path,
            data=body,
            headers={**credentials, "Content-Type": media_type, "Content-Encoding": coding},
        )
        answer = await response.json(content_type=None)
        assert response.status == 400, (path, response.status, answer)
        # The connection cannot carry another request: the answer says so.
        assert response.headers.get("Connection", "").lower() == "close", path
        if path == "/auth/token":
            assert answer["error"] == "invalid_request"
        elif path.startswith("/fhir"):
            assert answer["resourceType"] == "OperationOutcome"
            assert answer["issue"][0]["details"]["coding"][0]["code"] == "undecodable-body"
        else:
            assert answer["error"]["code"] == "undecodable-body", path
        assert await _counts(zone_dsns["cn"]) == before, path


async def test_a_gzip_stream_cut_short_is_never_a_5xx_and_stores_nothing(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    # aiohttp does not check a gzip trailer, so the decoded prefix reaches the parser: JSON and
    # XML refuse it as incomplete; a form prefix can still parse (a known limit, see README).
    for method, path, media_type, credentials in await _routes(gateway):
        before = await _counts(zone_dsns["cn"])
        response = await gateway.client.request(
            method,
            path,
            data=gzip.compress(b'{"readings": [{"subject": {}}]}')[:-12],
            headers={**credentials, "Content-Type": media_type, "Content-Encoding": "gzip"},
        )
        assert response.status < 500, (path, await response.text())
        # (a search that did run is audited: compare the data tables only)
        assert (await _counts(zone_dsns["cn"]))[:3] == before[:3], path


@pytest.mark.parametrize("coding", ["x-gzip", "compress", "gzip, gzip", "gzip, identity", "foo"])
async def test_a_content_coding_the_gateway_does_not_decode_is_415_with_accept_encoding(
    gateway: Gateway, coding: str
) -> None:
    for method, path, media_type, credentials in await _routes(gateway):
        if path == "/auth/token":
            continue  # OAuth's invalid_request, checked below
        response = await gateway.client.request(
            method,
            path,
            data=gzip.compress(b"{}"),
            headers={**credentials, "Content-Type": media_type, "Content-Encoding": coding},
        )
        assert response.status == 415, (path, await response.text())
        assert response.headers["Accept-Encoding"] == "gzip, deflate"
    token = await gateway.client.post(
        "/auth/token", data=b"x", headers={"Content-Type": FORM, "Content-Encoding": coding}
    )
    assert token.status == 400
    assert (await token.json())["error"] == "invalid_request"


async def test_a_gzip_body_is_decoded_and_stored(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    body = gzip.compress(orjson.dumps({"readings": [reading("MRN-1")]}))
    response = await gateway.client.post(
        "/v1/ingest/native",
        data=body,
        headers={
            **gateway.auth(gateway.vendor["cn"]),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert response.status == 200, await response.text()
    assert len(await fetch(zone_dsns["cn"], "SELECT 1 FROM observations")) == 1


# --- numbers in ASCII digits only ------------------------------------------------------------

NON_ASCII_DIGITS = [
    "%C2%B3",
    "%C2%B9",
    "%D9%A1",
    "%EF%BC%91",
    "%E0%A5%A7",
]  # superscripts 3 and 1, Arabic-Indic, fullwidth, Devanagari 1


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
async def test_non_ascii_digits_are_not_numbers(gateway: Gateway, digit: str) -> None:
    headers = gateway.auth(await client_token(gateway))
    vread = await gateway.client.get(f"/fhir/Observation/o1-x/_history/{digit}", headers=headers)
    assert vread.status == 404
    assert (await vread.json())["resourceType"] == "OperationOutcome"
    for query in (f"_count={digit}", f"_count=1{digit}"):
        search = await gateway.client.get(f"/fhir/Observation?{query}", headers=headers)
        assert search.status == 400, query
    lastn = await gateway.client.get(
        f"/fhir/Observation/$lastn?max={digit}&code=8867-4", headers=headers
    )
    assert lastn.status == 400
    quantity = await gateway.client.get(
        f"/fhir/Observation?value-quantity=gt{digit}", headers=headers
    )
    assert quantity.status == 400


# --- control characters ----------------------------------------------------------------------

SEARCHES = [
    *[f"/fhir/Observation?{name}=a%00b" for name in ("code", "category", "status")],
    *[
        f"/fhir/{kind}?{name}={value}"
        for kind in ("Observation", "Patient", "Device")
        for name in ("identifier", "_id")
        for value in ("a%00b", "s%00%7Cv", "%01", "x%1F")
    ],
    "/fhir/Observation?code%00=x",
    "/fhir/Observation/%00",
    "/fhir/Observation/o1-x/_history/%00",
    "/fhir/Group/%00/$export",
    "/fhir/$export-status/%00",
]


async def test_control_characters_in_a_fhir_path_or_search_are_an_operation_outcome(
    gateway: Gateway,
) -> None:
    await gateway.enrol("cn", "MRN-1")
    headers = {**gateway.auth(await client_token(gateway)), "Prefer": "respond-async"}
    for path in SEARCHES:
        response = await gateway.client.get(path, headers=headers)
        body = await response.json(content_type=None)
        assert response.status == 400, (path, response.status, body)
        assert body["resourceType"] == "OperationOutcome"
    form = await gateway.client.post(
        "/fhir/Observation/_search",
        data=b"code=a%00b",
        headers={**headers, "Content-Type": FORM},
    )
    assert form.status == 400
    # Tab, LF and CR are allowed in a FHIR string: a search with one simply finds nothing.
    tab = await gateway.client.get("/fhir/Observation?code=a%09b", headers=headers)
    assert tab.status == 200


async def test_control_characters_in_a_v1_path_or_query_are_400(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    clinic = gateway.auth(gateway.clinic["cn"])
    for method, path in [
        ("PATCH", "/v1/subjects/%00/consent"),
        ("DELETE", "/v1/subjects/%00?reason=withdrawn"),
        ("DELETE", "/v1/subjects/s1-x?reason=%00"),
        ("POST", "/v1/ingest/healthkit/export?subject_system=a%00&subject_value=b"),
    ]:
        response = await gateway.client.request(method, path, json={}, headers=clinic)
        assert response.status == 400, path
        assert (await response.json())["error"]["code"] == "control-character"


async def test_a_nul_in_a_reading_rejects_that_reading_and_keeps_the_others(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    hostile: list[dict[str, Any]] = [
        reading("MRN-1\x00"),
        reading("MRN-1", system=MRN["cn"] + "\x00"),
        reading("MRN-1", device="SN\x00"),
        reading("MRN-1", unit="/min\x00"),
        reading("MRN-1", kind="heart-rate\x00"),
        reading("MRN-1", record_id="r\x00"),
        {**reading("MRN-1"), "device": {"id": "SN-2", "model": "W\x00", "manufacturer": "A"}},
        {**reading("MRN-1"), "device": {"id": "SN-3", "model": "W", "manufacturer": "A\x07"}},
    ]
    status, body = await gateway.ingest("cn", [*hostile, reading("MRN-1", value=66)])
    assert status == 207, body
    outcomes = [(r["outcome"], r.get("error", {}).get("code")) for r in body["results"]]
    assert outcomes == [("rejected", "invalid-reading")] * len(hostile) + [("created", None)]
    assert "\x00" not in str(body)
    assert len(await fetch(zone_dsns["cn"], "SELECT 1 FROM observations")) == 1


async def test_a_nul_in_an_omh_statistic_rejects_that_data_point(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1", extra=[{"system": OMH_USER_SYSTEM, "value": USER_ID}])
    points = [data_point(key, "Pass") for key in sample_keys("Pass")]
    text = next(t for t in map(json.dumps, points) if '"descriptive_statistic": "' in t)
    poisoned = text.replace('"descriptive_statistic": "', '"descriptive_statistic": "\\u0000', 1)
    status, body = await gateway.ingest("cn", json.loads(poisoned), fmt="omh")
    assert status == 422, body
    assert body["results"][0]["error"]["code"] == "invalid-reading"


async def test_a_nul_in_an_enrolment_identifier_is_400_and_enrols_nobody(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    for identifier in (
        {"system": MRN["cn"] + "\x00", "value": "v"},
        {"system": "s", "value": "\x01"},
    ):
        response = await gateway.client.post(
            "/v1/subjects",
            json={"zone": "cn", "site": "hainan-general", "identifiers": [identifier]},
            headers=gateway.auth(gateway.clinic["cn"]),
        )
        assert response.status == 400
        assert "\x00" not in await response.text()
    assert await fetch(zone_dsns["cn"], "SELECT 1 FROM subjects") == []


async def test_a_nul_in_posted_export_parameters_is_400(gateway: Gateway) -> None:
    research = await researcher(gateway)
    await study(gateway, "study-1", [research])
    for name, value in [("_typeFilter", "Observation?code=a\x00"), ("_since", "\x00")]:
        response = await gateway.client.post(
            "/fhir/Group/study-1/$export",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": name, "valueString": value}],
            },
            headers={
                **research.headers,
                "Prefer": "respond-async",
                "Content-Type": "application/fhir+json",
            },
        )
        assert response.status == 400, (name, await response.text())
        assert (await response.json())["resourceType"] == "OperationOutcome"
