"""Nothing that identifies a person or a measurement leaves in clear: not in any table of either
zone database, not in logs, not in metrics, not in error messages."""

from __future__ import annotations

import logging

import pytest

from gateway.logs import JSONFormatter
from tests.conftest import MRN, Gateway
from tests.helpers import blood_pressure, dump_database, fetch, reading
from tests.smart_helpers import client_token

CANARIES = {
    "mrn": "CANARY-MRN-8f3a91",
    "account": "CANARY-ACCOUNT-2b77",
    "serial": "CANARY-SERIAL-c41d",
    "model": "CANARY-MODEL-9e0f",
    "maker": "CANARY-MAKER-51aa",
    "record": "CANARY-RECORD-77c3",
    "name": "CANARY-NAME-Zhang-Wei",
    "unknown": "CANARY-UNENROLLED-0d1e",
    "value": "87.654321",
}


async def _search_with_what_a_clinic_typed(gateway: Gateway, foreign: str) -> int:
    """A cn clinic searches by its patient's MRN typed as the `patient` id, by the eu subject's
    pseudonym, and by the eu MRN as a chained identifier (issue 11): every search is audited,
    and none of these values may be recorded. Returns the number of searches."""
    headers = {"Authorization": f"Bearer {await client_token(gateway, zone='cn')}"}
    searches = [
        (path, {name: value})
        for value in (f"{CANARIES['mrn']}-cn", foreign)
        for path, name in (
            ("/fhir/Observation", "patient"),
            ("/fhir/Observation", "subject"),
            ("/fhir/Observation/$lastn", "patient"),
            ("/fhir/Device", "patient"),
        )
    ]
    chained = {"patient.identifier": f"{MRN['eu']}|{CANARIES['mrn']}-eu"}
    searches += [("/fhir/Observation", chained), ("/fhir/Device", chained)]
    for path, params in searches:
        response = await gateway.client.get(path, params=params, headers=headers)
        assert response.status == 200, await response.text()
        assert "entry" not in await response.json(), "another zone's data was found"
    return len(searches)


async def test_no_canary_appears_in_databases_logs_metrics_or_responses(
    gateway: Gateway, zone_dsns: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp's access log prints raw request lines (search values too); production silences it
    # (test_production_logging_silences_the_access_log_that_would_print_the_path): as here.
    # (Each set_level also sets the capture handler's level: the last one, DEBUG, wins.)
    caplog.set_level(logging.WARNING, logger="aiohttp.access")
    caplog.set_level(logging.DEBUG)
    responses: list[str] = []
    pseudonyms: dict[str, str] = {}
    for zone in ("cn", "eu"):
        pseudonyms[zone] = await gateway.enrol(
            zone,
            f"{CANARIES['mrn']}-{zone}",
            extra=[{"system": "urn:withings:userid", "value": f"{CANARIES['account']}-{zone}"}],
            name=CANARIES["name"],
        )
        device = {
            "id": CANARIES["serial"],
            "model": CANARIES["model"],
            "manufacturer": CANARIES["maker"],
        }
        system = "urn:oid:1.2.156.999.1" if zone == "cn" else "urn:oid:1.3.6.1.4.1.99999.1"
        subject = f"{CANARIES['mrn']}-{zone}"
        good = reading(subject, system=system, value=71, record_id=CANARIES["record"])
        good["device"] = device
        bad = [
            reading(CANARIES["unknown"], system=system),
            reading(subject, system=system, value=float(CANARIES["value"]) * 10),
            reading(
                subject,
                system=system,
                kind="body-weight",
                value=float(CANARIES["value"]),
                unit=CANARIES["model"],
            ),
            reading(subject, system=system, time="2026-11-29T09:30:00"),
            blood_pressure(subject, float(CANARIES["value"]), 99, system=system),
            {
                "subject": {"system": system, "value": CANARIES["unknown"]},
                "type": CANARIES["model"],
            },
        ]
        for item in bad:
            item.setdefault("device", device)
        _, body = await gateway.ingest(zone, [good, *bad])
        responses.append(str(body))
        response = await gateway.client.post(
            "/v1/ingest/native",
            data=f'{{"readings": [{{"x": "{CANARIES["serial"]}"',
            headers={**gateway.auth(gateway.vendor[zone]), "Content-Type": "application/json"},
        )
        responses.append(await response.text())

    searched = await _search_with_what_a_clinic_typed(gateway, pseudonyms["eu"])

    metrics = await (await gateway.client.get("/metrics")).text()
    formatter = JSONFormatter()
    logs = "\n".join(formatter.format(record) for record in caplog.records)
    assert logs, "the gateway logged nothing: the log scan would prove nothing"
    dumps = {zone: await dump_database(dsn) for zone, dsn in zone_dsns.items()}
    assert "Patient/s1-" in dumps["cn"], (
        "the cn dump holds no observation: the scan would prove nothing"
    )

    # Issue 11: neither zone's database holds the other's pseudonyms, the audit log included.
    assert pseudonyms["eu"] not in dumps["cn"], "the eu pseudonym reached the cn database"
    assert pseudonyms["cn"] not in dumps["eu"], "the cn pseudonym reached the eu database"
    [audited] = await fetch(
        zone_dsns["cn"], "SELECT count(*) AS n FROM audit_events WHERE action = 'search'"
    )
    assert audited["n"] == searched, "the searches were not audited: the scan would prove nothing"

    places = {"metrics": metrics, "logs": logs, "responses": "\n".join(responses), **dumps}
    for where, text in places.items():
        for what, canary in CANARIES.items():
            scanned = text
            if what in DEVICE_DESCRIPTION and where in dumps:
                # Issue 4: a device's model and manufacturer (not a person's identifiers) are
                # kept for FHIR Device resources, in table `devices` and nowhere else.
                scanned = _without_table(text, "devices")
            assert canary not in scanned, f"{what} canary found in {where}"
    assert CANARIES["model"] in dumps["cn"], "the devices table scan would prove nothing"


DEVICE_DESCRIPTION = frozenset({"model", "maker"})


def _without_table(dump: str, table: str) -> str:
    """`dump_database` text without the section of one table."""
    sections = dump.split("-- ")
    return "-- ".join(part for part in sections if not part.startswith(f"{table}\n"))
