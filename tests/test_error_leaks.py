"""No leaks through errors: canary-laden bad input is posted through every error path (400, 401,
403, 404, 405, 409, 413, 415, 421, 422, 429, and the OAuth and export variants) — canaries in
bodies, headers, query strings, path segments and keys — and nothing the process emitted
(response status lines, headers and bodies, every log record, /metrics) carries one."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import ClientResponse

from gateway.logs import JSONFormatter
from gateway.settings import Settings
from tests.conftest import MRN, SITE, Gateway, start_gateway
from tests.helpers import reading

CANARY = "CANARY7f3e"  # every canary starts with this; no legitimate output contains it
KEY_SECRET = f"{CANARY}SECRET".ljust(43, "Q")  # the shape of an API key secret
HEADERS = {
    "User-Agent": f"{CANARY}-user-agent",
    "X-Forwarded-For": f"{CANARY}-forwarded",
    "X-Request-ID": f"{CANARY} not-a-valid-request-id",
}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.statuses: set[int] = set()

    async def record(self, response: ClientResponse) -> None:
        self.statuses.add(response.status)
        self.seen.append(f"{response.status} {response.reason}")
        self.seen.extend(f"{name}: {value}" for name, value in response.headers.items())
        self.seen.append(await response.text())


async def _walk_error_paths(gateway: Gateway, small: Gateway, recorder: Recorder) -> None:
    vendor, clinic = gateway.auth(gateway.vendor["cn"]), gateway.auth(gateway.clinic["cn"])
    post = gateway.client.post

    def json_headers(auth: dict[str, str], media_type: str = "application/json") -> dict[str, str]:
        return {**HEADERS, **auth, "Content-Type": media_type}

    subject = f"{CANARY}-mrn"
    await gateway.enrol("cn", subject)
    responses: list[Any] = [
        # 400 invalid-json, invalid-body, too-many shapes, subject-required
        post(
            "/v1/ingest/native",
            data=f'{{"readings": [{{"subject": "{CANARY}-broken',
            headers=json_headers(vendor),
        ),
        post(
            "/v1/ingest/withings",
            json={"userid": [f"{CANARY}-userid"], "response": f"{CANARY}-response"},
            headers={**HEADERS, **vendor},
        ),
        post(
            "/v1/subjects",
            json={"zone": "cn", "site": SITE["cn"], "identifiers": f"{CANARY}-identifiers"},
            headers={**HEADERS, **clinic},
        ),
        post(
            "/v1/ingest/healthkit",
            data=f"<HealthData><Record value='{CANARY}'/></HealthData>",
            headers=json_headers(vendor, "application/xml"),
        ),
        post(
            "/v1/ingest/healthkit/export",
            params={"subject_system": f"{CANARY}-system", "subject_value": f"{CANARY}-value"},
            data=f'<HealthData><Record type="{CANARY}-type" value="{CANARY}"><broken',
            headers=json_headers(vendor, "application/xml"),
        ),
        post(
            f"/v1/notify/withings/{gateway.vendor['cn']}",
            data={"userid": f"{CANARY}-userid", "appli": f"{CANARY}-appli"},
            headers=HEADERS,
        ),
        # 400/401 OAuth
        post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": f"{CANARY}.{CANARY}.{CANARY}",
                "scope": f"system/{CANARY}.rs",
            },
            headers=HEADERS,
        ),
        post("/auth/token", data={"grant_type": f"{CANARY}-grant"}, headers=HEADERS),
        # 401: a malformed key, a well-formed unknown key, a key in the path
        post(
            "/v1/ingest/native",
            json=reading(subject),
            headers={**HEADERS, "Authorization": f"Bearer {CANARY}-key"},
        ),
        post(
            "/v1/ingest/native",
            json=reading(subject),
            headers={**HEADERS, "Authorization": f"Bearer wgk_cn_0123456789ab_{KEY_SECRET}"},
        ),
        gateway.client.head(f"/v1/notify/withings/wgk_cn_0123456789ab_{KEY_SECRET}"),
        # 403: a clinic key posting readings, a vendor key enrolling
        post("/v1/ingest/native", json=reading(subject), headers={**HEADERS, **clinic}),
        post(
            "/v1/subjects",
            json={
                "zone": "cn",
                "site": SITE["cn"],
                "identifiers": [{"system": MRN["cn"], "value": subject}],
            },
            headers={**HEADERS, **vendor},
        ),
        # 404 (unknown format, unknown path), 405
        post(f"/v1/ingest/{CANARY}-format", json={}, headers={**HEADERS, **vendor}),
        gateway.client.get(f"/{CANARY}-path", params={"q": f"{CANARY}-query"}, headers=HEADERS),
        gateway.client.get("/v1/subjects", params={"q": f"{CANARY}-query"}, headers=HEADERS),
        # 409: the same identifier enrolled again
        post(
            "/v1/subjects",
            json={
                "zone": "cn",
                "site": SITE["cn"],
                "identifiers": [{"system": MRN["cn"], "value": subject}],
            },
            headers={**HEADERS, **clinic},
        ),
        # 415, 421
        post(
            "/v1/ingest/native",
            data=b"{}",
            headers=json_headers(vendor, f"application/{CANARY.lower()}-type"),
        ),
        post(
            "/v1/ingest/native",
            json=reading(subject),
            headers={**HEADERS, "Authorization": f"Bearer wgk_zz_0123456789ab_{KEY_SECRET}"},
        ),
        # 422: every reading rejected, canaries in every field
        post(
            "/v1/ingest/native",
            json={
                "readings": [
                    reading(f"{CANARY}-unknown-subject", device=f"{CANARY}-device"),
                    reading(subject, unit=f"{CANARY}-unit", record_id=f"{CANARY}-record"),
                    reading(subject, kind=f"{CANARY}-type", zone=f"{CANARY}-zone"),
                    reading(subject, system=f"{CANARY}-system", time=f"{CANARY}-time"),
                    reading(subject, value=987.654321, vendor_time=f"{CANARY}-vendor-time"),
                ]
            },
            headers={**HEADERS, **vendor},
        ),
    ]
    for pending in responses:
        await recorder.record(await pending)

    # 413 and 429, on a gateway with a small body limit and a one-request burst.
    small_vendor = small.auth(small.vendor["cn"])
    big = {"readings": [reading(f"{CANARY}-big-{n}") for n in range(40)]}
    await recorder.record(
        await small.client.post("/v1/ingest/native", json=big, headers={**HEADERS, **small_vendor})
    )
    for _ in range(2):
        await recorder.record(
            await small.client.post(
                "/v1/ingest/native",
                json=reading(f"{CANARY}-throttled"),
                headers={**HEADERS, **small_vendor},
            )
        )


async def test_no_canary_leaves_through_any_error_path(
    aiohttp_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway(aiohttp_client, settings)
    small = await start_gateway(
        aiohttp_client,
        settings.with_overrides(
            max_body_bytes=2048, rate_limit_per_second=0.001, rate_limit_burst=1
        ),
    )
    recorder = Recorder()
    await _walk_error_paths(gateway, small, recorder)

    assert {400, 401, 403, 404, 405, 409, 413, 415, 421, 422, 429} <= recorder.statuses
    formatter = JSONFormatter()
    # aiohttp's access log is on in its test server only: `serve` and `demo` run with
    # access_log=None (it would print full URLs and user agents), so it is not scanned here.
    logs = "\n".join(
        formatter.format(record) for record in caplog.records if record.name != "aiohttp.access"
    )
    assert "http.request" in logs, "nothing was logged: the scan would prove nothing"
    metrics = [await (await g.client.get("/metrics")).text() for g in (gateway, small)]
    places = {"responses": "\n".join(recorder.seen), "logs": logs, "metrics": "\n".join(metrics)}
    for where, text in places.items():
        assert CANARY not in text, (
            f"a canary leaked into {where}: "
            + text[max(0, text.find(CANARY) - 200) : text.find(CANARY) + 100]
        )
