"""POST /v1/subjects: enrolment by a clinic into the subject's home zone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import MRN, SITE, Gateway
from tests.helpers import dump_database, fetch


async def test_enrolment_returns_a_pseudonym_and_stores_identity_only_encrypted(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await gateway.enrol(
        "cn",
        "CANARY-MRN-5521",
        extra=[{"system": "urn:withings:userid", "value": "CANARY-WUID-77"}],
        birth_date="1961-07-23",
    )
    assert pseudonym.startswith("s1-")
    [row] = await fetch(zone_dsns["cn"], "SELECT * FROM subjects")
    assert row["pseudonym"] == pseudonym
    assert row["site"] == SITE["cn"]
    assert len(await fetch(zone_dsns["cn"], "SELECT * FROM subject_identifiers")) == 2
    dump = await dump_database(zone_dsns["cn"])
    for canary in ("CANARY-MRN-5521", "CANARY-WUID-77", "1961-07-23", "urn:withings:userid"):
        assert canary not in dump


async def test_the_same_identifier_cannot_be_enrolled_twice(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1")
    response = await gateway.client.post(
        "/v1/subjects",
        json={
            "zone": "cn",
            "site": SITE["cn"],
            "identifiers": [
                {"system": "urn:other", "value": "x"},
                {"system": MRN["cn"], "value": "MRN-1"},
            ],
        },
        headers=gateway.auth(gateway.clinic["cn"]),
    )
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "already-enrolled"


async def test_a_refused_enrolment_leaves_nothing_behind(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    await gateway.client.post(
        "/v1/subjects",
        json={
            "zone": "cn",
            "site": SITE["cn"],
            "identifiers": [
                {"system": MRN["cn"], "value": "MRN-NEW"},
                {"system": MRN["cn"], "value": "MRN-1"},
            ],
        },
        headers=gateway.auth(gateway.clinic["cn"]),
    )
    assert len(await fetch(zone_dsns["cn"], "SELECT 1 FROM subjects")) == 1
    assert len(await fetch(zone_dsns["cn"], "SELECT 1 FROM subject_identifiers")) == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"zone": "eu"}, 403, "forbidden"),
        ({"zone": "us"}, 421, "zone-not-served"),
        ({"site": "another-site"}, 403, "forbidden"),
        ({"identifiers": []}, 400, "invalid-body"),
        ({"identifiers": [{"system": "s"}]}, 400, "invalid-body"),
        ({"birth_date": "23/07/1961"}, 400, "invalid-body"),
        ({"sex": "f"}, 400, "invalid-body"),
        ({"consent": {"research": "yes"}}, 400, "invalid-body"),
    ],
)
async def test_an_invalid_enrolment_is_refused_with_a_clear_error(
    gateway: Gateway, change: dict[str, Any], status: int, code: str
) -> None:
    body = {
        "zone": "cn",
        "site": SITE["cn"],
        "identifiers": [{"system": MRN["cn"], "value": "M"}],
        **change,
    }
    response = await gateway.client.post(
        "/v1/subjects", json=body, headers=gateway.auth(gateway.clinic["cn"])
    )
    assert response.status == status
    answer = await response.json()
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
