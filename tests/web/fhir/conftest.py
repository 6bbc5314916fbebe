"""A gateway with a clinic in each zone holding a SMART token, plus helpers that check every
/fhir response body against the FHIR R4B models (fhir.resources)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from multidict import CIMultiDict

from tests.conftest import Gateway
from tests.smart_helpers import client_token

MODELS: dict[str, Any] = {
    "Bundle": Bundle,
    "CapabilityStatement": CapabilityStatement,
    "Device": Device,
    "Observation": Observation,
    "OperationOutcome": OperationOutcome,
    "Patient": Patient,
}


def validate(body: dict[str, Any]) -> None:
    """Every body the API returns must be a valid R4(B) resource; bundles entry by entry too."""
    if _subsetted(body):
        # A subset may lack required elements (search.html "_elements"): check what is there.
        assert body["resourceType"] in MODELS
        return
    entries = body.get("entry", [])
    complete = [e for e in entries if not _subsetted(e["resource"])]
    MODELS[body["resourceType"]].model_validate(
        {**body, "entry": complete} if complete else {k: v for k, v in body.items() if k != "entry"}
    )
    for entry in entries:
        validate(entry["resource"])


def _subsetted(resource: dict[str, Any]) -> bool:
    return any(t.get("code") == "SUBSETTED" for t in resource.get("meta", {}).get("tag", []))


@dataclass
class Fhir:
    """Drives /fhir over HTTP with one client's token; validates every body it gets."""

    gateway: Gateway
    token: str
    last_headers: Mapping[str, str] = field(default_factory=dict)

    async def get(
        self, path: str, *, params: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        response = await self.gateway.client.get(
            path,
            params=params,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
        )
        return await self._answer(response)

    async def post_search(self, path: str, data: Any) -> tuple[int, dict[str, Any]]:
        response = await self.gateway.client.post(
            path, data=data, headers={"Authorization": f"Bearer {self.token}"}
        )
        return await self._answer(response)

    async def _answer(self, response: Any) -> tuple[int, dict[str, Any]]:
        self.last_headers = CIMultiDict(response.headers)
        assert response.content_type == "application/fhir+json", response.content_type
        body = orjson.loads(await response.read())
        validate(body)
        if response.status >= 400:
            assert body["resourceType"] == "OperationOutcome"
        return response.status, body

    async def search(self, resource: str = "Observation", **params: Any) -> dict[str, Any]:
        status, body = await self.get(f"/fhir/{resource}", params=params)
        assert status == 200, body
        assert body["type"] == "searchset"
        return body


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


@pytest.fixture
async def fhir(gateway: Gateway) -> Fhir:
    return Fhir(gateway, await client_token(gateway, zone="cn"))
