"""Research studies and FHIR Bulk Data export clients for tests: a researcher client registered
with a real ES384 key, a study registered through the service the CLI uses, and the
kick-off / poll / download steps over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from gateway.residency.export_policy import TransferMechanism
from gateway.services.studies import NewStudy, add_study
from gateway.web.appkeys import ZONES
from tests.conftest import Gateway
from tests.smart_helpers import registered_client

RESEARCH_SCOPES = ("system/Observation.rs", "system/Patient.rs")
HEART_RATE = "8867-4"
BLOOD_PRESSURE = "85354-9"
STEPS = "55423-8"


@dataclass(frozen=True)
class Researcher:
    client_id: str
    token: str
    zone: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def researcher(
    gateway: Gateway,
    *,
    zone: str = "cn",
    role: str = "researcher",
    scopes: tuple[str, ...] = RESEARCH_SCOPES,
) -> Researcher:
    client_id, token = await registered_client(gateway, zone=zone, role=role, scopes=scopes)
    return Researcher(client_id, token, zone)


async def study(
    gateway: Gateway,
    study_id: str,
    researchers: Sequence[Researcher],
    *,
    zone: str = "cn",
    country: str = "CN",
    measures: Sequence[str] = (HEART_RATE, BLOOD_PRESSURE, STEPS),
    k: int = 1,
    shift_days: int = 30,
    keep_weekday: bool = False,
    resolution: str = "second",
    expires_on: date | None = None,
    transfer: TransferMechanism | None = None,
) -> str:
    await add_study(
        gateway.client.app[ZONES],
        zone=zone,
        study=NewStudy(
            id=study_id,
            title="Resting heart rate after discharge",
            ethics_ref="IRB-2026-017",
            recipient_org="Example University",
            recipient_country=country,
            measures=measures,
            shift_days=shift_days,
            keep_weekday=keep_weekday,
            resolution=resolution,
            k=k,
            expires_on=expires_on or (datetime.now(UTC).date() + timedelta(days=365)),
            researcher_clients=[r.client_id for r in researchers],
            transfer=transfer,
        ),
        today=datetime.now(UTC).date(),
    )
    return study_id


@dataclass
class Export:
    """One export's manifest and downloaded files (NDJSON parsed, CSV as text)."""

    manifest: dict[str, Any]
    files: dict[str, bytes]
    texts: list[str]  # every response body seen, for leak scans

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        body = self.files.get(f"{resource_type}.ndjson", b"")
        return [orjson.loads(line) for line in body.splitlines() if line]


async def kick_off(
    gateway: Gateway, who: Researcher, study_id: str, query: str = "", **headers: str
) -> Any:
    return await gateway.client.get(
        f"/fhir/Group/{study_id}/$export{query}",
        headers={
            **who.headers,
            "Accept": "application/fhir+json",
            "Prefer": "respond-async",
            **headers,
        },
    )


def status_path(response: Any) -> str:
    location = response.headers["Content-Location"]
    return "/fhir/" + location.split("/fhir/", 1)[1]


def local(url: str) -> str:
    return "/fhir/" + url.split("/fhir/", 1)[1]


async def wait_done(gateway: Gateway, who: Researcher, path: str, limit: float = 60) -> Any:
    """Poll as a client should: honour Retry-After; returns the final response."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        response = await gateway.client.get(path, headers=who.headers)
        if response.status != 202:
            return response
        assert response.headers["X-Progress"]
        assert asyncio.get_running_loop().time() < deadline, "export did not finish"
        await asyncio.sleep(float(response.headers["Retry-After"]) + 0.05)


async def export(gateway: Gateway, who: Researcher, study_id: str, query: str = "") -> Export:
    texts: list[str] = []
    started = await kick_off(gateway, who, study_id, query)
    texts.append(await started.text())
    assert started.status == 202, texts[-1]
    done = await wait_done(gateway, who, status_path(started))
    texts.append(await done.text())
    assert done.status == 200, texts[-1]
    manifest = await done.json()
    files: dict[str, bytes] = {}
    outputs = manifest["output"] + manifest["extension"]["csv"]
    for entry in outputs:
        response = await gateway.client.get(local(entry["url"]), headers=who.headers)
        assert response.status == 200
        body = await response.read()
        files[entry["url"].rsplit("/", 1)[1]] = body
        texts.append(body.decode())
    return Export(manifest, files, texts)
