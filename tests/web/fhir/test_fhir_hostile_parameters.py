"""Search parameters PostgreSQL cannot store are refused as a bad request, not a server error
(found by tests/fuzz/test_openapi_fuzz.py: `GET /fhir/Patient?_id=%06%C2%80…%00…` was a 500)."""

from __future__ import annotations

import pytest

from tests.web.fhir.conftest import Fhir


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/fhir/Patient", {"_id": "\x06\x00a"}),
        ("/fhir/Observation", {"code": "8867-4\x00"}),
        ("/fhir/Device", {"patient": "a\x00"}),
    ],
)
async def test_a_nul_character_in_a_search_is_a_400_operation_outcome(
    fhir: Fhir, path: str, params: dict[str, str]
) -> None:
    status, body = await fhir.get(path, params=params)
    assert status == 400
    assert body["resourceType"] == "OperationOutcome"
