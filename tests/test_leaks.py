"""Nothing that identifies a person or a measurement leaves in clear: not in any table of either
zone database, not in logs, not in metrics, not in error messages."""

from __future__ import annotations

import logging

import pytest

from gateway.logs import JSONFormatter
from tests.conftest import Gateway
from tests.helpers import blood_pressure, dump_database, reading

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


async def test_no_canary_appears_in_databases_logs_metrics_or_responses(
    gateway: Gateway, zone_dsns: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses: list[str] = []
    for zone in ("cn", "eu"):
        await gateway.enrol(
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

    metrics = await (await gateway.client.get("/metrics")).text()
    formatter = JSONFormatter()
    logs = "\n".join(formatter.format(record) for record in caplog.records)
    assert logs, "the gateway logged nothing: the log scan would prove nothing"
    dumps = {zone: await dump_database(dsn) for zone, dsn in zone_dsns.items()}
    assert "Patient/s1-" in dumps["cn"], (
        "the cn dump holds no observation: the scan would prove nothing"
    )

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
