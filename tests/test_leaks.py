"""Nothing that identifies a person or a measurement leaves in clear: not in any table of either
zone database, not in logs, not in metrics, not in error messages."""

from __future__ import annotations

import json
import logging
from typing import Any

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
    pseudonym, and by the eu MRN as a chained identifier: every search is audited,
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

    # Neither zone's database holds the other's pseudonyms, the audit log included.
    assert pseudonyms["eu"] not in dumps["cn"], "the eu pseudonym reached the cn database"
    assert pseudonyms["cn"] not in dumps["eu"], "the cn pseudonym reached the eu database"
    [audited] = await fetch(
        zone_dsns["cn"], "SELECT count(*) AS n FROM audit_events WHERE action = 'search'"
    )
    assert audited["n"] == searched, "the searches were not audited: the scan would prove nothing"

    places = {"metrics": metrics, "logs": logs, "responses": "\n".join(responses), **dumps}
    for where, text in places.items():
        for what, canary in CANARIES.items():
            # A device's model and manufacturer are kept only as values of a closed
            # table (gateway.devices), so their canaries are nowhere either, `devices` included.
            assert canary not in text, f"{what} canary found in {where}"
    assert "other" in _table(dumps["cn"], "devices"), "the devices table scan would prove nothing"


def _table(dump: str, table: str) -> str:
    """The section of one table in `dump_database` text."""
    return next(part for part in dump.split("-- ") if part.startswith(f"{table}\n"))


# --- issue 11: the free text of every adapter's device description ---------------------------

# Keys whose string value describes or names a device wherever they occur (Withings `model` and
# `deviceid` sit on the measure group, not in a device object).
_DEVICE_KEYS = frozenset(
    {
        "model", "manufacturer", "modelNumber", "deviceid", "hash_deviceid", "source_name",
        "datasheet_reference", "packageName", "hardwareVersion", "softwareVersion",
        "firmwareVersion",
    }
)  # fmt: skip
# Objects all of whose strings are the device's free text (FHIR Device resources too).
_DEVICE_OBJECTS = frozenset(
    {"device", "deviceName", "acquisition_provenance", "external_datasheets", "dataOrigin"}
)
# Structure inside those objects, which the adapters need to find the device at all.
_STRUCTURE = frozenset(
    {"resourceType", "id", "reference", "system", "type", "datasheet_type", "modality", "code"}
)
DEVICE_CANARY = "CANARY-DEVICE-"


def _plant(node: Any, counter: list[int], inside: bool = False) -> Any:
    """`node` with a distinct canary in every free-text device field."""
    if isinstance(node, dict):
        inside = inside or node.get("resourceType") == "Device"
        planted = {}
        for key, value in node.items():
            if isinstance(value, str) and key not in _STRUCTURE and (inside or key in _DEVICE_KEYS):
                counter[0] += 1
                planted[key] = f"{DEVICE_CANARY}{counter[0]:03d}"
            else:
                planted[key] = _plant(value, counter, inside or key in _DEVICE_OBJECTS)
        return planted
    if isinstance(node, list):
        return [_plant(item, counter, inside) for item in node]
    return node


def _payloads() -> dict[str, tuple[str, str, list[dict[str, str]], Any]]:
    """adapter -> (zone, format, extra identifiers to enrol, fixture payload)."""
    from gateway.adapters.withings.parse import WITHINGS_USER_SYSTEM
    from tests.adapters.fhir.test_fhir_ingest import MR, phd_bundle
    from tests.adapters.healthkit.test_ingest_healthkit import FIXTURES as HEALTHKIT
    from tests.adapters.healthkit.test_ingest_healthkit import PARTICIPANT
    from tests.adapters.omh.samples import SUBJECT, data_point
    from tests.adapters.withings.test_withings_ingest_api import SAMPLES, USERID, envelope

    omh = data_point("heart-rate/2.0/with-descriptive-statistic.json", "Pass")
    ieee = data_point("body-weight/3.0/body-weight-only.json", "Pass")
    ieee["header"] = {
        "uuid": "aaaa1234-1a2b-3c4d-5e6f-000000000001",
        "schema_id": ieee["header"]["schema_id"],
        "modality": "sensed",
        "external_datasheets": [
            {"datasheet_type": "manufacturer", "datasheet_reference": "Acme"},
        ],
        "user_id": ieee["header"]["user_id"],
    }
    from tests.adapters.healthconnect.test_healthconnect_ingest import body_of

    return {
        "native": ("cn", "native", [], None),
        "withings": (
            "eu",
            "withings",
            [{"system": WITHINGS_USER_SYSTEM, "value": USERID}],
            envelope(SAMPLES["aiowithings-measurement-list"]),
        ),
        "omh": ("cn", "omh", [SUBJECT], [omh, ieee]),
        "healthkit": (
            "cn",
            "healthkit",
            [PARTICIPANT],
            json.loads((HEALTHKIT / "bridge-samples.json").read_text()),
        ),
        "healthconnect": ("cn", "healthconnect", [], body_of("plain_records.json")),
        "fhir": ("cn", "fhir", [MR], phd_bundle()),
    }


@pytest.mark.parametrize(
    "adapter", ["native", "withings", "omh", "healthkit", "healthconnect", "fhir"]
)
async def test_no_device_text_of_any_adapter_reaches_a_zone_database(
    gateway: Gateway, zone_dsns: dict[str, str], adapter: str
) -> None:
    zone, fmt, extra, payload = _payloads()[adapter]
    mrn = "MRN-HC-1" if adapter == "healthconnect" else "MRN-DEVICES-1"
    await gateway.enrol(zone, mrn, extra=extra)
    if payload is None:
        system = "urn:oid:1.2.156.999.1"
        payload = {
            "readings": [
                {
                    **reading(mrn, system=system),
                    "device": {"id": "x", "model": "m", "manufacturer": "y"},
                }
            ]
        }
    planted = _plant(payload, [0])
    assert DEVICE_CANARY in json.dumps(planted), "no device field was planted: proves nothing"

    response = await gateway.client.post(
        f"/v1/ingest/{fmt}", json=planted, headers=gateway.auth(gateway.vendor[zone])
    )
    body = await response.json()

    outcomes = [r["outcome"] for r in body["results"]]
    assert "created" in outcomes, f"{adapter}: nothing stored, the scan would prove nothing"
    dumps = {where: await dump_database(dsn) for where, dsn in zone_dsns.items()}
    for where, text in dumps.items():
        assert DEVICE_CANARY not in text, f"{adapter}: device canary found in the {where} dump"
    assert "other" in _table(dumps[zone], "devices"), (
        f"{adapter}: no device description reached the devices table"
    )
