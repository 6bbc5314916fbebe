"""A research extract carries nothing that identifies a subject or a reading: subjects enrolled
with canary identifiers, names, device serials and models are exported, and no canary, no zone
pseudonym, no stored id and no original timestamp appears in any output file, the manifest, any
response or any log line."""

from __future__ import annotations

import logging
from datetime import UTC

import pytest

from gateway.deid.timestamps import parse_instant
from gateway.logs import JSONFormatter
from tests.conftest import Gateway
from tests.helpers import blood_pressure, reading, stored_observations
from tests.web.bulk_export_helpers import RESEARCH_SCOPES, export, researcher, study

CANARIES = {
    "mrn": "CANARY-MRN-5d1e0a",
    "account": "CANARY-ACCOUNT-93b2",
    "name": "CANARY-NAME-Li-Na",
    "serial": "CANARY-SERIAL-7f21",
    "model": "CANARY-MODEL-c0de",
    "maker": "CANARY-MAKER-aa19",
    "record": "CANARY-RECORD-4e4e",
}
TIMES = ("2026-10-05T08:17:23+08:00", "2026-10-06T23:59:41+08:00", "2026-10-07T00:00:05+08:00")


def _seconds_utc(text: str) -> str:
    return parse_instant(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


async def test_no_canary_pseudonym_id_or_original_time_leaves_in_an_extract(
    gateway: Gateway, zone_dsns: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pseudonyms = []
    for index in range(3):
        value = f"{CANARIES['mrn']}-{index}"
        pseudonyms.append(
            await gateway.enrol(
                "cn",
                value,
                extra=[
                    {"system": "urn:withings:userid", "value": f"{CANARIES['account']}-{index}"},
                    {"system": "urn:x-name", "value": f"{CANARIES['name']}-{index}"},
                ],
            )
        )
        device = {
            "id": f"{CANARIES['serial']}-{index}",
            "model": CANARIES["model"],
            "manufacturer": CANARIES["maker"],
        }
        batch = [
            {**reading(value, value=60 + i, time=t, record_id=f"{CANARIES['record']}-{i}"),
             "device": device}
            for i, t in enumerate(TIMES)
        ]  # fmt: skip
        batch.append({**blood_pressure(value, 121, 79, time=TIMES[0]), "device": device})
        status, body = await gateway.ingest("cn", batch)
        assert status in (200, 201), body
    team = await researcher(gateway, scopes=(*RESEARCH_SCOPES, "system/Device.rs"))
    await study(gateway, "leak-2026", [team], k=3)
    result = await export(gateway, team, "leak-2026")
    assert [(o["type"], o["count"]) for o in result.manifest["output"]] == [
        ("Patient", 3),
        ("Observation", 12),
        ("Device", 3),  # the scan below covers the Device file too
    ]

    stored = await stored_observations(zone_dsns["cn"])
    forbidden = set(CANARIES.values()) | set(pseudonyms)
    forbidden |= {o["id"] for o in stored}
    forbidden |= {o["device"]["reference"].removeprefix("Device/") for o in stored if "device" in o}
    # Reading times (as sent, as stored, and in UTC) are forbidden everywhere. Receive times
    # (`issued`, meta.lastUpdated) are forbidden in what the researcher gets; log lines carry
    # their own timestamps of the same seconds, so logs are scanned for reading times only.
    readings = set(TIMES) | {o["effectiveDateTime"] for o in stored if "effectiveDateTime" in o}
    received = {o["issued"] for o in stored} | {o["meta"]["lastUpdated"] for o in stored}
    reading_times = readings | {_seconds_utc(t) for t in readings}
    received_times = received | {_seconds_utc(t) for t in received}

    # The manifest's transactionTime is the export's own clock (Bulk Data 2.0: clients pass it
    # as the next `_since`), not a reading's time; readings received in the same second as the
    # kick-off share its text by coincidence only, so it is left out of the scan.
    transaction_time = result.manifest["transactionTime"]
    assert transaction_time not in TIMES
    result.texts = [text.replace(transaction_time, "") for text in result.texts]
    logs = "\n".join(JSONFormatter().format(record) for record in caplog.records)
    haystacks = {
        **{name: body.decode() for name, body in result.files.items()},
        "responses": "\n".join(result.texts),
        "logs": logs,
    }
    for where, text in haystacks.items():
        needles = forbidden | reading_times | (received_times if where != "logs" else set())
        for needle in needles:
            assert needle not in text, f"{needle[:12]}… leaked into {where}"
