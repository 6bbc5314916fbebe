"""Injection and traversal: SQL, path-traversal and header-injection payloads in identifiers,
systems, units, device ids, format names, path tokens, query parameters and X-Request-ID are
refused or harmless — never a 5xx, never stored in clear, never a split header. Plus the form
bodies schemathesis found answering 500."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.conftest import MRN, Gateway
from tests.helpers import dump_database, fetch, reading

SQL = "'); DROP TABLE observations; --"
TRAVERSAL = "../../../../etc/passwd"
CRLF = "x\r\nSet-Cookie: injected=1"
PAYLOADS = [SQL, TRAVERSAL, "' OR '1'='1", "%00", "..%2f..%2fetc%2fpasswd", "${jndi:ldap://x/a}"]
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")  # openapi.yaml RequestId


async def test_hostile_identifiers_are_enrolled_and_ingested_only_as_keyed_hashes(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", SQL, extra=[{"system": TRAVERSAL, "value": "v-1"}])
    good = reading(SQL, device=TRAVERSAL, record_id=SQL)
    by_system = reading("v-1", system=TRAVERSAL, value=73)
    bad_unit = reading(SQL, unit=SQL)
    status, body = await gateway.ingest("cn", [good, by_system, bad_unit])

    assert status == 207, body
    assert [r["outcome"] for r in body["results"]] == ["created", "created", "rejected"]
    assert body["results"][2]["error"]["code"] == "unit-not-convertible"
    assert SQL not in str(body)
    assert TRAVERSAL not in str(body)
    # The tables are all there, and nothing hostile is stored in clear.
    assert len(await fetch(zone_dsns["cn"], "SELECT 1 FROM observations")) == 2
    dump = await dump_database(zone_dsns["cn"])
    for payload in (SQL, TRAVERSAL):
        assert payload not in dump


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_hostile_values_in_every_reading_field_never_get_a_5xx(
    gateway: Gateway, payload: str
) -> None:
    await gateway.enrol("cn", "MRN-1")
    readings: list[dict[str, Any]] = [
        reading(payload),
        reading("MRN-1", system=payload),
        reading("MRN-1", kind=payload),
        reading("MRN-1", unit=payload),
        reading("MRN-1", time=payload),
        reading("MRN-1", device=payload),
        reading("MRN-1", zone=payload),
        reading("MRN-1", record_id=payload, vendor_time=payload),
    ]
    status, body = await gateway.ingest("cn", readings)
    assert status in (207, 422), body
    assert payload not in str(body)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/ingest/..%2F..%2Fetc%2Fpasswd",
        "/v1/ingest/%2E%2E",
        "/v1/ingest/native%00",
        "/v1/ingest/native';DROP TABLE credentials;--",
        "/v1/ingest/" + "a" * 4000,
        "/v1/notify/withings/..%2F..%2Fetc%2Fpasswd",
        "/v1/notify/withings/wgk_cn_000000000000_' OR 1=1 --",
        "/v1/../../etc/passwd",
    ],
)
async def test_hostile_format_names_and_path_tokens_are_refused(
    gateway: Gateway, path: str
) -> None:
    response = await gateway.client.post(
        path,
        data=b"{}",
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/json"},
    )
    text = await response.text()
    assert 400 <= response.status < 500
    for echoed in ("root:", "passwd", "DROP"):
        assert echoed not in text


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_hostile_export_query_parameters_are_harmless(
    gateway: Gateway, zone_dsns: dict[str, str], payload: str
) -> None:
    response = await gateway.client.post(
        "/v1/ingest/healthkit/export",
        params={"subject_system": payload, "subject_value": payload},
        data=b'<?xml version="1.0"?><HealthData><Record type="HKQuantityTypeIdentifierHeartRate" '
        b'unit="count/min" value="61" startDate="2026-11-30 08:00:00 +0800" '
        b'endDate="2026-11-30 08:00:00 +0800"/></HealthData>',
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/xml"},
    )
    assert response.status == 422  # the subject is not enrolled
    assert payload not in await response.text()
    assert len(await fetch(zone_dsns["cn"], "SELECT 1 FROM observations")) == 0


@pytest.mark.parametrize(
    "supplied",
    [
        "abcdefgh%0d%0aSet-Cookie:a=1",
        "abcdefgh Set-Cookie: a=1",
        "abcdefgh\tSet-Cookie: a=1",
        "a" * 65,
        "short",
        "../../../etc/passwd",
    ],
)
async def test_an_x_request_id_outside_the_pattern_is_replaced_not_echoed(
    gateway: Gateway, supplied: str
) -> None:
    response = await gateway.client.get("/healthz", headers={"X-Request-ID": supplied})
    assert response.status == 200
    assert response.headers["X-Request-ID"] != supplied
    assert REQUEST_ID_PATTERN.match(response.headers["X-Request-ID"])
    assert "Set-Cookie" not in response.headers


async def test_a_raw_crlf_in_a_header_cannot_split_the_response(gateway: Gateway) -> None:
    server = gateway.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    # A bare CR inside a header value (not a line end): the request must be refused.
    writer.write(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: abcdefgh\rSet-Cookie: a=1\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.split(b"\r\n", 1)[0].split()[1] == b"400"
    assert b"Set-Cookie" not in head


async def test_hostile_enrolment_fields_are_refused_or_stored_encrypted(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    for field, value in [("site", SQL), ("zone", TRAVERSAL), ("sex", CRLF), ("birth_date", SQL)]:
        response = await gateway.client.post(
            "/v1/subjects",
            json={
                "zone": "cn",
                "site": "hainan-general",
                "identifiers": [{"system": MRN["cn"], "value": f"MRN-{field}"}],
                field: value,
            },
            headers=gateway.auth(gateway.clinic["cn"]),
        )
        assert 400 <= response.status < 500, field
        assert value not in await response.text()
    assert await fetch(zone_dsns["cn"], "SELECT 1 FROM subjects") == []


# --- found by schemathesis: form bodies the form parser cannot read were a 500 -----------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded; charset=no-such-charset", b"userid=1&appli=1"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="a\x01\x08"\r\n\r\n1\r\n--b--\r\n',
        ),
    ],
)
async def test_an_unreadable_withings_notification_form_is_400(
    gateway: Gateway, content_type: str, body: bytes
) -> None:
    response = await gateway.client.post(
        f"/v1/notify/withings/{gateway.vendor['cn']}",
        data=body,
        headers={"Content-Type": content_type},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid-body"


async def test_a_token_request_in_an_unknown_charset_is_invalid_request(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/auth/token",
        data=b"grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=no-such-charset"},
    )
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"
