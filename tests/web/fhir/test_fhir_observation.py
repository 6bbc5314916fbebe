"""FHIR R4 Observation read and search over HTTP: every parameter, prefix and paging
rule, with each response body validated against the R4B models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from yarl import URL

from tests.adapters.healthconnect.test_healthconnect_versions import post, weight
from tests.conftest import Gateway
from tests.helpers import blood_pressure, reading, steps
from tests.smart_helpers import client_token
from tests.web.fhir.conftest import MODELS, Fhir, ids, link

LOINC_HR = "http://loinc.org|8867-4"
T0 = datetime(2024, 3, 5, 10, 0, tzinfo=timezone(timedelta(hours=8)))


async def _store(gateway: Gateway, readings: list[dict[str, Any]], zone: str = "cn") -> list[str]:
    status, body = await gateway.ingest(zone, readings)
    assert status == 200, body
    return [r["id"] for r in body["results"]]


@pytest.fixture
async def heart_rates(gateway: Gateway) -> tuple[str, list[str]]:
    """A subject with five heart rates, one per day from T0, and one blood pressure."""
    subject = await gateway.enrol("cn", "MRN-1")
    readings = [reading("MRN-1", time=T0 + timedelta(days=n), value=60 + n) for n in range(5)]
    readings.append(blood_pressure("MRN-1", 120, 80, time=T0.isoformat()))
    return subject, await _store(gateway, readings)


async def test_metadata_is_a_capability_statement_with_the_smart_token_url(fhir: Fhir) -> None:
    response = await fhir.gateway.client.get("/fhir/metadata")
    assert response.status == 200
    assert response.content_type == "application/fhir+json"
    _status, body = await fhir.get("/fhir/metadata")
    assert body["fhirVersion"] == "4.0.1"
    security = body["rest"][0]["security"]["extension"][0]
    assert security["url"].endswith("/oauth-uris")
    assert security["extension"][0]["valueUri"].endswith("/auth/token")
    observation = next(r for r in body["rest"][0]["resource"] if r["type"] == "Observation")
    names = {p["name"] for p in observation["searchParam"]}
    assert {"patient", "code", "date", "value-quantity", "_lastUpdated"} <= names


async def test_read_returns_the_stored_observation_with_etag_and_last_modified(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, stored = heart_rates
    status, body = await fhir.get(f"/fhir/Observation/{stored[0]}")
    assert status == 200
    assert body["id"] == stored[0]
    assert body["subject"]["reference"] == f"Patient/{subject}"
    assert fhir.last_headers["ETag"] == 'W/"0"'
    assert fhir.last_headers["Last-Modified"].endswith("GMT")


async def test_a_missing_observation_is_404_operation_outcome(fhir: Fhir) -> None:
    status, body = await fhir.get("/fhir/Observation/o1-doesnotexist")
    assert status == 404
    assert body["issue"][0]["code"] == "not-found"


async def test_search_by_patient_returns_newest_first_by_default(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, stored = heart_rates
    bundle = await fhir.search(patient=subject, code=LOINC_HR)
    assert ids(bundle) == list(reversed(stored[:5]))
    assert "total" not in bundle  # _total=none by default
    ascending = await fhir.search(patient=f"Patient/{subject}", code=LOINC_HR, _sort="date")
    assert ids(ascending) == stored[:5]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (LOINC_HR, 5),
        ("8867-4", 5),
        ("|8867-4", 0),  # no system: every coding the gateway writes has one
        ("http://loinc.org|85354-9", 1),
        ("8867-4,85354-9", 6),  # comma = OR
        ("urn:iso:std:iso:11073:10101|147842", 5),  # the MDC coding of heart rate
        ("http://snomed.info/sct|8867-4", 0),
    ],
)
async def test_code_tokens(
    fhir: Fhir, heart_rates: tuple[str, list[str]], code: str, expected: int
) -> None:
    bundle = await fhir.search(patient=heart_rates[0], code=code)
    assert len(ids(bundle)) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("http://loinc.org|2708-6", 1),  # the first coding of SpO2
        ("http://loinc.org|59408-5", 1),  # its second LOINC coding
        ("59408-5", 1),
        ("urn:iso:std:iso:11073:10101|150456", 1),  # its MDC coding
        ("http://loinc.org|59408-5,http://loinc.org|8867-4", 6),
        ("urn:iso:std:iso:11073:10101|59408-5", 0),  # right code, wrong system
    ],
)
async def test_a_system_code_token_matches_any_coding_of_the_code(
    fhir: Fhir, gateway: Gateway, heart_rates: tuple[str, list[str]], code: str, expected: int
) -> None:
    """R4 token search: `system|code` matches when any coding of Observation.code has both."""
    await _store(gateway, [reading("MRN-1", kind="oxygen-saturation", value=97, unit="%")])
    bundle = await fhir.search(patient=heart_rates[0], code=code)
    assert len(ids(bundle)) == expected
    counted = await fhir.search(patient=heart_rates[0], code=code, _summary="count")
    assert counted["total"] == expected


@pytest.mark.parametrize(
    ("date", "days"),
    [
        ("2024", [0, 1, 2, 3, 4]),
        ("2024-03", [0, 1, 2, 3, 4]),
        ("2024-03-06", [1]),  # T0 is 02:00Z; the day is read in UTC
        ("eq2024-03-06", [1]),
        ("ne2024-03-06", [0, 2, 3, 4]),
        ("gt2024-03-06", [2, 3, 4]),
        ("ge2024-03-06", [1, 2, 3, 4]),
        ("lt2024-03-06", [0]),
        ("le2024-03-06", [0, 1]),
        ("sa2024-03-06", [2, 3, 4]),
        ("eb2024-03-06", [0]),
        ("2024-03-06T02:00:00Z", [1]),
        ("2024-03-06T10:00:00+08:00", [1]),
        ("2024-03-06T10:00+08:00", [1]),
        ("gt2024-03-06T02:00:00Z", [2, 3, 4]),
    ],
)
async def test_date_prefixes_on_points(
    fhir: Fhir, heart_rates: tuple[str, list[str]], date: str, days: list[int]
) -> None:
    subject, stored = heart_rates
    bundle = await fhir.search(patient=subject, code=LOINC_HR, date=date, _sort="date")
    assert ids(bundle) == [stored[d] for d in days]


async def test_two_date_parameters_are_and(fhir: Fhir, heart_rates: tuple[str, list[str]]) -> None:
    subject, stored = heart_rates
    bundle = await fhir.get(
        "/fhir/Observation",
        params=[
            ("patient", subject),
            ("code", LOINC_HR),
            ("date", "ge2024-03-06"),
            ("date", "lt2024-03-08"),
            ("_sort", "date"),
        ],
    )
    assert ids(bundle[1]) == stored[1:3]


async def test_date_on_a_period_uses_the_whole_period(gateway: Gateway, fhir: Fhir) -> None:
    subject = await gateway.enrol("cn", "MRN-P")
    end = datetime(2024, 5, 2, 1, 0, tzinfo=UTC)
    period = steps("MRN-P", 100, minutes=180)
    period["start"], period["end"] = (end - timedelta(hours=3)).isoformat(), end.isoformat()
    (stored,) = await _store(gateway, [period])  # 2024-05-01T22:00Z .. 2024-05-02T01:00Z
    for date, found in [
        ("2024-05-01", False),  # not fully inside the day
        ("2024-05", True),
        ("ne2024-05-01", True),
        ("gt2024-05-01", True),  # overlaps the range above the day
        ("lt2024-05-02", True),
        ("sa2024-05-01", False),  # starts inside the day
        ("eb2024-05-02", False),
        ("ap2024-05-02", True),
    ]:
        bundle = await fhir.search(patient=subject, date=date)
        assert (ids(bundle) == [stored]) is found, date


async def test_count_and_next_links_walk_every_row_once(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, stored = heart_rates
    seen: list[str] = []
    bundle = await fhir.search(patient=subject, _count="2", _sort="date")
    pages = 1
    while True:
        seen += ids(bundle)
        nxt = link(bundle, "next")
        if nxt is None:
            break
        assert "_count=2" in nxt
        status, bundle = await fhir.get(URL(nxt).path_qs)
        assert status == 200
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(stored)
    assert len(seen) == len(set(seen))


async def test_a_tampered_or_foreign_cursor_is_400(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, _ = heart_rates
    bundle = await fhir.search(patient=subject, _count="1")
    nxt = URL(str(link(bundle, "next")))
    cursor = nxt.query["_cursor"]
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    status, body = await fhir.get(nxt.path, params={**nxt.query, "_cursor": tampered})
    assert status == 400
    assert body["issue"][0]["details"]["coding"][0]["code"] == "invalid-cursor"
    # The same cursor with another search is refused too: it is bound to its search.
    status, _ = await fhir.get(nxt.path, params={**nxt.query, "code": LOINC_HR})
    assert status == 400


async def test_summary_count_and_total_accurate(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, _ = heart_rates
    counted = await fhir.search(patient=subject, _summary="count")
    assert counted["total"] == 6
    assert "entry" not in counted
    paged = await fhir.search(patient=subject, _count="2", _total="accurate")
    assert paged["total"] == 6
    assert len(ids(paged)) == 2


async def test_sort_by_last_updated(fhir: Fhir, gateway: Gateway) -> None:
    subject = await gateway.enrol("cn", "MRN-L")
    first = await _store(gateway, [reading("MRN-L", time=T0)])
    second = await _store(gateway, [reading("MRN-L", time=T0 - timedelta(days=1))])
    bundle = await fhir.search(patient=subject, _sort="-_lastUpdated")
    assert ids(bundle) == second + first
    bundle = await fhir.search(patient=subject, _sort="_lastUpdated")
    assert ids(bundle) == first + second
    now = datetime.now(UTC)
    recent = await fhir.search(patient=subject, _lastUpdated=f"ge{now.year:04d}")
    assert len(ids(recent)) == 2
    assert ids(await fhir.search(patient=subject, _lastUpdated="lt2000")) == []


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("62", [2]),
        ("gt62", [3, 4]),
        ("ge62", [2, 3, 4]),
        ("lt61", [0]),
        ("le61", [0, 1]),
        ("ne62", [0, 1, 3, 4]),
        ("62|http://unitsofmeasure.org|/min", [2]),
        ("62||/min", [2]),
        ("62|http://unitsofmeasure.org|kg", []),
        ("ap62", [0, 1, 2, 3, 4]),  # 62 +- 6.2
        ("ap100", []),
    ],
)
async def test_value_quantity(
    fhir: Fhir, heart_rates: tuple[str, list[str]], value: str, days: list[int]
) -> None:
    subject, stored = heart_rates
    bundle = await fhir.search(patient=subject, **{"value-quantity": value, "_sort": "date"})
    assert ids(bundle) == [stored[d] for d in days]


async def test_category_status_device_identifier_and_id(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, stored = heart_rates
    assert len(ids(await fhir.search(patient=subject, category="vital-signs"))) == 6
    assert ids(await fhir.search(patient=subject, category="laboratory")) == []
    assert len(ids(await fhir.search(patient=subject, status="final"))) == 6
    assert ids(await fhir.search(patient=subject, status="preliminary")) == []
    identifier = f"urn:wearable-gateway:observation|{stored[0]}"
    assert ids(await fhir.search(identifier=identifier)) == [stored[0]]
    assert ids(await fhir.search(_id=f"{stored[0]},{stored[1]}", _sort="date")) == stored[:2]
    _status, observation = await fhir.get(f"/fhir/Observation/{stored[0]}")
    device = observation["device"]["reference"]
    assert len(ids(await fhir.search(device=device))) == 6
    assert ids(await fhir.search(device="Device/d1-unknown")) == []


async def test_post_search_equals_get(fhir: Fhir, heart_rates: tuple[str, list[str]]) -> None:
    subject, _ = heart_rates
    by_get = await fhir.search(patient=subject, date="ge2024-03-06", _sort="date")
    status, by_post = await fhir.post_search(
        "/fhir/Observation/_search",
        {"patient": subject, "date": "ge2024-03-06", "_sort": "date"},
    )
    assert status == 200
    assert ids(by_post) == ids(by_get)


async def test_elements_subsets_and_tags(fhir: Fhir, heart_rates: tuple[str, list[str]]) -> None:
    bundle = await fhir.search(patient=heart_rates[0], _elements="code,subject")
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert {"resourceType", "id", "meta", "code", "subject"} <= set(resource)
        assert "device" not in resource
        assert "issued" not in resource
        assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"


async def test_elements_keeps_mandatory_and_vital_signs_elements(
    fhir: Fhir, gateway: Gateway, heart_rates: tuple[str, list[str]]
) -> None:
    """search.html _elements: mandatory elements are returned anyway, and a subsetted
    vital-signs Observation keeps what its profile requires; each subset is a valid resource."""
    subject, _ = heart_rates
    await _store(gateway, [steps("MRN-1", 1200)])
    bundle = await fhir.search(patient=subject, _elements="code,valueQuantity")
    resources = [e["resource"] for e in bundle["entry"]]
    assert len(resources) == 7
    for resource in resources:
        assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
        assert {"status", "code"} <= set(resource)  # Observation.status and .code are 1..1
        assert "device" not in resource
        assert "identifier" not in resource
        Observation.model_validate(resource)
        if resource["meta"].get("profile"):  # heart rate, blood pressure: vital-signs profile
            assert {"category", "subject"} <= set(resource)
            assert {"effectiveDateTime", "effectivePeriod"} & set(resource)
            assert {"valueQuantity", "component"} & set(resource)
        else:  # steps: no profile, nothing beyond what R4 itself requires
            assert set(resource) == {"resourceType", "id", "meta", "status", "code"} | {
                "valueQuantity"
            }
    patients = await fhir.search("Patient", _id=subject, _elements="identifier")
    devices = await fhir.search("Device", patient=subject, _elements="manufacturer")
    for entry in [*patients["entry"], *devices["entry"]]:
        resource = entry["resource"]
        assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
        MODELS[resource["resourceType"]].model_validate(resource)


async def test_include_patient_and_device(fhir: Fhir, heart_rates: tuple[str, list[str]]) -> None:
    subject, _ = heart_rates
    bundle = await fhir.search(
        patient=subject, _include=["Observation:patient", "Observation:device"]
    )
    assert ids(bundle, "include")[0] == subject
    devices = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Device"]
    assert len(devices) == 1
    assert devices[0]["resource"]["manufacturer"] == "other"  # "Acme" is no known maker


async def test_unknown_parameters_are_ignored_or_strictly_refused(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, _ = heart_rates
    bundle = await fhir.search(patient=subject, flavour="mint")
    assert "flavour" not in str(link(bundle, "self"))
    assert len(ids(bundle)) == 6
    status, body = await fhir.get(
        "/fhir/Observation",
        params={"patient": subject, "flavour": "mint"},
        headers={"Prefer": "handling=strict"},
    )
    assert status == 400
    assert body["issue"][0]["code"] == "invalid"


@pytest.mark.parametrize(
    "params",
    [
        {"date": "2024-13"},
        {"date": "xx2024"},
        {"_count": "-1"},
        {"_sort": "value"},
        {"code:text": "heart"},
        {"value-quantity": "abc"},
        {"_include": "Observation:performer"},
    ],
)
async def test_invalid_searches_are_400(fhir: Fhir, params: dict[str, str]) -> None:
    status, body = await fhir.get("/fhir/Observation", params=params)
    assert status == 400
    assert body["resourceType"] == "OperationOutcome"


async def test_format_negotiation(fhir: Fhir) -> None:
    status, _ = await fhir.get("/fhir/Observation", params={"_format": "xml"})
    assert status == 406
    status, _ = await fhir.get("/fhir/Observation", headers={"Accept": "application/fhir+xml"})
    assert status == 406
    status, _ = await fhir.get("/fhir/Observation", params={"_format": "json"})
    assert status == 200


async def test_no_or_bad_token_is_401_and_wrong_scope_403(gateway: Gateway) -> None:
    anonymous = await gateway.client.get("/fhir/Observation")
    assert anonymous.status == 401
    assert (await anonymous.json())["resourceType"] == "OperationOutcome"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    token = await client_token(gateway, scopes=("system/Patient.rs",))
    limited = Fhir(gateway, token)
    status, _body = await limited.get("/fhir/Observation")
    assert status == 403
    researcher = Fhir(gateway, await client_token(gateway, role="researcher"))
    status, _ = await researcher.get("/fhir/Observation")
    assert status == 403


async def test_unknown_fhir_route_and_method_are_operation_outcomes(fhir: Fhir) -> None:
    status, _body = await fhir.get("/fhir/Encounter")
    assert status == 404
    response = await fhir.gateway.client.delete("/fhir/Observation/o1-x")
    assert response.status == 405
    assert (await response.json())["resourceType"] == "OperationOutcome"


async def test_lastn_returns_the_latest_per_code(
    fhir: Fhir, heart_rates: tuple[str, list[str]]
) -> None:
    subject, stored = heart_rates
    status, bundle = await fhir.get(
        "/fhir/Observation/$lastn", params={"patient": subject, "max": "2"}
    )
    assert status == 200
    assert ids(bundle) == [stored[5], stored[4], stored[3]] or set(ids(bundle)) == {
        stored[5],
        stored[4],
        stored[3],
    }
    status, _ = await fhir.get("/fhir/Observation/$lastn", params={"max": "2"})
    assert status == 400


async def test_history_and_vread_of_a_versioned_record(fhir: Fhir, gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-HC-V")
    _, first = await post(gateway, weight(70.2, 1))
    await post(gateway, weight(69.8, 2))
    observation_id = first["results"][0]["id"]
    status, bundle = await fhir.get(f"/fhir/Observation/{observation_id}/_history")
    assert status == 200
    assert bundle["type"] == "history"
    assert [e["resource"]["valueQuantity"]["value"] for e in bundle["entry"]] == [69.8, 70.2]
    status, old = await fhir.get(f"/fhir/Observation/{observation_id}/_history/1")
    assert status == 200
    assert old["valueQuantity"]["value"] == 70.2
    assert fhir.last_headers["ETag"] == 'W/"1"'
    status, _current = await fhir.get(f"/fhir/Observation/{observation_id}")
    assert fhir.last_headers["ETag"] == 'W/"2"'
    status, _ = await fhir.get(f"/fhir/Observation/{observation_id}/_history/7")
    assert status == 404
