"""Issue 11: chained patient identifiers, refused unsupported chains, and audit subjects that are
only ever pseudonyms this zone resolved for the searching site."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gateway.fhir.search import (
    SEARCH_PARAMETERS,
    InvalidSearch,
    UnsupportedSearchParameter,
    parse_search,
)
from gateway.fhir.search_parameters_r4 import R4_SEARCH_PARAMETERS
from tests.conftest import MRN, Gateway
from tests.helpers import fetch, reading, utc_now
from tests.smart_helpers import client_token
from tests.web.fhir.conftest import Fhir, ids


@pytest.fixture
async def two_patients(gateway: Gateway) -> tuple[str, str]:
    first = await gateway.enrol("cn", "MRN-0042")
    second = await gateway.enrol("cn", "MRN-0043")
    status, _ = await gateway.ingest(
        "cn",
        [
            reading("MRN-0042", value=70),
            reading("MRN-0043", value=80, time="2024-03-06T10:00:00+08:00"),
        ],
    )
    assert status == 200
    return first, second


async def _audit_subjects(zone_dsns: dict[str, str], zone: str) -> list[str | None]:
    rows = await fetch(
        zone_dsns[zone], "SELECT subject FROM audit_events WHERE action = 'search' ORDER BY seq"
    )
    return [row["subject"] for row in rows]


async def test_patient_identifier_chain_finds_the_patients_observations(
    fhir: Fhir, two_patients: tuple[str, str], zone_dsns: dict[str, str]
) -> None:
    first, _ = two_patients
    chained = f"{MRN['cn']}|MRN-0042"
    counted = await fhir.search(**{"patient.identifier": chained, "_summary": "count"})
    assert counted["total"] == 1
    found = await fhir.search(**{"subject:Patient.identifier": chained})
    assert [e["resource"]["subject"]["reference"] for e in found["entry"]] == [f"Patient/{first}"]
    lastn = await fhir.get("/fhir/Observation/$lastn", params={"patient.identifier": chained})
    assert lastn[0] == 200
    assert len(ids(lastn[1])) == 1
    devices = await fhir.search("Device", **{"patient.identifier": chained})
    assert len(ids(devices)) == 1
    assert await _audit_subjects(zone_dsns, "cn") == [first] * 4


async def test_an_identifier_of_nobody_here_gives_an_empty_result(
    fhir: Fhir, gateway: Gateway, two_patients: tuple[str, str], zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("eu", "MRN-0042")  # the same MRN value in the other zone
    for chained in (f"{MRN['cn']}|MRN-9999", f"{MRN['eu']}|MRN-0042"):
        counted = await fhir.search(**{"patient.identifier": chained, "_summary": "count"})
        assert counted["total"] == 0
        status, lastn = await fhir.get(
            "/fhir/Observation/$lastn", params={"patient.identifier": chained}
        )
        assert status == 200
        assert ids(lastn) == []
        assert ids(await fhir.search("Device", **{"patient.identifier": chained})) == []
    # Another site's clinic in the same zone does not find this site's patient either.
    other = Fhir(gateway, await client_token(gateway, zone="cn", site="other-site"))
    chained = f"{MRN['cn']}|MRN-0042"
    assert (await other.search(**{"patient.identifier": chained, "_summary": "count"}))[
        "total"
    ] == 0
    assert set(await _audit_subjects(zone_dsns, "cn")) == {None}


@pytest.mark.parametrize(
    "params",
    [
        {"patient.name": "Zhang"},
        {"patient.identifier:exact": "urn:x|1"},
        {"subject:Device.identifier": "urn:x|1"},
        {"device.identifier": "urn:x|1"},
        {"_has:Observation:patient:code": "8867-4"},
        {"flavour:exact": "mint"},
        {"patient.identifier": "MRN-0042"},  # no system: the blind index cannot be asked
    ],
)
async def test_unsupported_chains_and_modifiers_are_400_even_when_lenient(
    fhir: Fhir, two_patients: tuple[str, str], params: dict[str, str]
) -> None:
    status, body = await fhir.get("/fhir/Observation", params={**params, "_summary": "count"})
    assert status == 400, body
    assert body["resourceType"] == "OperationOutcome"


def test_the_parser_keeps_supported_chains_and_refuses_others() -> None:
    now = utc_now()
    request = parse_search(
        "Device", [("patient.identifier", "urn:x|1,urn:x|2")], strict=False, now=now
    )
    assert request.names() == ["patient.identifier"]
    assert request.echo == (("patient.identifier", "urn:x|1,urn:x|2"),)
    with pytest.raises(InvalidSearch):
        parse_search("Patient", [("patient.identifier", "urn:x|1")], strict=False, now=now)
    with pytest.raises(InvalidSearch):
        parse_search("Observation", [("_has:Observation:x:y", "1")], strict=False, now=now)


async def test_the_audit_subject_is_only_a_resolved_pseudonym_of_this_site(
    fhir: Fhir, gateway: Gateway, two_patients: tuple[str, str], zone_dsns: dict[str, str]
) -> None:
    """A search by an MRN typed as `patient`, or by another zone's pseudonym, leaves no trace
    of that value in the audit log; a search of the site's own patient records its pseudonym."""
    first, _ = two_patients
    foreign = await gateway.enrol("eu", "MRN-EU-1")
    for value in ("MRN-0042", foreign):
        await fhir.search(patient=value)
        await fhir.get("/fhir/Observation/$lastn", params={"patient": value})
        await fhir.search("Device", patient=value)
    await fhir.search(patient=first)
    assert await _audit_subjects(zone_dsns, "cn") == [None] * 6 + [first]
    rows = await fetch(zone_dsns["cn"], "SELECT * FROM audit_events")
    assert foreign not in str([dict(row) for row in rows])
    assert "MRN-0042" not in str([dict(row) for row in rows])


def test_only_storage_makes_zone_subjects() -> None:
    """The audit log's subject type is built only where a database row is read."""
    root = Path(__file__).resolve().parents[3] / "gateway"
    makers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ZoneSubject"
            ):
                makers.add(path.relative_to(root).parts[0])
    assert makers == {"storage"}


async def test_the_capability_statement_lists_the_chains(fhir: Fhir) -> None:
    _, body = await fhir.get("/fhir/metadata")
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    documented = {
        (kind, p["name"]): p.get("documentation")
        for kind, resource in resources.items()
        for p in resource["searchParam"]
    }
    assert documented[("Observation", "patient")] == "chains: patient.identifier"
    assert documented[("Observation", "subject")] == "chains: subject.identifier"
    assert documented[("Device", "patient")] == "chains: patient.identifier"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/fhir/Observation", {"combo-code": "http://loinc.org|8480-6"}),
        ("/fhir/Observation", {"component-code": "http://loinc.org|8480-6"}),
        ("/fhir/Observation", {"component-value-quantity": "gt100"}),
        ("/fhir/Observation", {"performer": "Practitioner/1"}),
        ("/fhir/Observation", {"_tag": "urn:x|y"}),
        ("/fhir/Observation/$lastn", {"combo-code": "http://loinc.org|8480-6"}),
        ("/fhir/Patient", {"gender": "female"}),
        ("/fhir/Patient", {"birthdate": "1970-01-02"}),
        ("/fhir/Device", {"manufacturer": "Acme"}),
        ("/fhir/Device", {"status": "active"}),
    ],
)
async def test_r4_parameters_the_server_does_not_support_are_400_even_when_lenient(
    fhir: Fhir, two_patients: tuple[str, str], path: str, params: dict[str, str]
) -> None:
    """An R4-defined filter is not an unknown parameter: ignoring it widened the result (e.g.
    combo-code=<systolic>&_summary=count answered every Observation of the site)."""
    first, _ = two_patients
    scope = {} if path == "/fhir/Patient" else {"patient": first}
    status, body = await fhir.get(path, params={**scope, **params, "_summary": "count"})
    assert status == 400, body
    assert body["issue"][0]["code"] == "invalid"
    assert body["issue"][0]["details"]["coding"][0]["code"] == "unsupported-search-parameter"
    assert next(iter(params.values())) not in str(body)  # the name, never the value
    if "$" not in path:  # the same search as a form body
        assert (await fhir.post_search(f"{path}/_search", {**scope, **params}))[0] == 400


def test_every_r4_parameter_not_supported_is_refused_and_unknown_ones_still_ignored() -> None:
    now = utc_now()
    for resource_type, defined in R4_SEARCH_PARAMETERS.items():
        supported = set(SEARCH_PARAMETERS[resource_type])
        assert supported <= defined, "a supported name is missing from the R4 table"
        for name in sorted(defined - supported):
            # `_has` is refused as an unsupported chain (InvalidSearch), the rest by name.
            refused = InvalidSearch if name == "_has" else UnsupportedSearchParameter
            with pytest.raises(refused):
                parse_search(resource_type, [(name, "x")], strict=False, now=now)
        lenient = parse_search(resource_type, [("flavour", "mint")], strict=False, now=now)
        assert lenient.ignored == ("flavour",)
