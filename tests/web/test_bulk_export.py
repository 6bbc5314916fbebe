"""FHIR Bulk Data export of a study's de-identified extract, over HTTP against real
zone databases: kick-off, polling, manifest, download, cancel, token rules, `_since`,
`_typeFilter`, consent and cross-border refusals with their audit records, study pseudonyms that
do not link, and a job that survives a restart of the gateway."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.device import Device

from gateway.residency.export_policy import TransferMechanism
from gateway.settings import Settings
from gateway.web.appkeys import EXPORT_WORKERS
from tests.conftest import Gateway, start_gateway
from tests.helpers import CN_TZ, blood_pressure, fetch, reading, steps
from tests.web.bulk_export_helpers import (
    HEART_RATE,
    RESEARCH_SCOPES,
    Researcher,
    export,
    kick_off,
    local,
    researcher,
    status_path,
    study,
    wait_done,
)

CN_SYSTEM = "urn:oid:1.2.156.999.1"


async def _cohort(gateway: Gateway, count: int = 3, **consent: bool) -> list[str]:
    """`count` enrolled cn subjects with a heart rate, a blood pressure and a step count each."""
    values = [f"MRN-BULK-{i}" for i in range(count)]
    for value in values:
        await gateway.enrol(
            "cn",
            value,
            consent={"research": consent.get("research", True),
                     "cross_border": consent.get("cross_border", False)},
        )  # fmt: skip
        status, body = await gateway.ingest(
            "cn",
            [
                reading(value, value=70),
                blood_pressure(value, 120, 80),
                steps(value, 1200),
            ],
        )
        assert status in (200, 201), body
    return values


async def _audit(dsn: str, action: str) -> list[dict[str, Any]]:
    rows = await fetch(
        dsn,
        "SELECT actor, outcome, detail::text AS d FROM audit_events WHERE action = $1 ORDER BY seq",
        action,
    )
    return [{"actor": r["actor"], "outcome": r["outcome"], **orjson.loads(r["d"])} for r in rows]


# --------------------------------------------------------------------------------- protocol


async def test_kick_off_poll_manifest_and_download(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _cohort(gateway)
    team = await researcher(gateway)
    await study(gateway, "hr-2026", [team])

    started = await kick_off(gateway, team, "hr-2026")
    assert started.status == 202, await started.text()
    assert started.headers["Content-Location"].startswith("http")
    assert "/fhir/$export-status/" in started.headers["Content-Location"]

    path = status_path(started)
    first = await gateway.client.get(path, headers=team.headers)
    assert first.status in (200, 202)
    # Polled again at once, faster than Retry-After: 429 with Retry-After.
    again = await gateway.client.get(path, headers=team.headers)
    assert again.status == 429
    assert again.headers["Retry-After"] == "1"
    assert (await again.json())["resourceType"] == "OperationOutcome"
    await asyncio.sleep(1.05)

    done = await wait_done(gateway, team, path)
    assert done.status == 200
    assert done.content_type == "application/json"
    manifest = await done.json()
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert manifest["request"].endswith("/fhir/Group/hr-2026/$export")
    datetime.fromisoformat(manifest["transactionTime"])
    outputs = {entry["type"]: entry for entry in manifest["output"]}
    assert set(outputs) == {"Patient", "Observation"}
    assert outputs["Patient"]["count"] == 3
    assert outputs["Observation"]["count"] == 9
    assert manifest["extension"]["kAnonymity"]["kept"] == 3
    assert manifest["extension"]["policyVersion"]

    response = await gateway.client.get(local(outputs["Observation"]["url"]), headers=team.headers)
    assert response.status == 200
    assert response.content_type == "application/fhir+ndjson"
    observations = [orjson.loads(line) for line in (await response.read()).splitlines()]
    patients_response = await gateway.client.get(
        local(outputs["Patient"]["url"]), headers=team.headers
    )
    patients = [orjson.loads(line) for line in (await patients_response.read()).splitlines()]
    patient_ids = {p["id"] for p in patients}
    assert len(observations) == 9
    assert {o["subject"]["reference"].removeprefix("Patient/") for o in observations} == patient_ids
    for observation in observations:
        assert observation["meta"]["security"][0]["code"] == "PSEUDED"
        assert "device" not in observation
        assert "identifier" not in observation

    # The flat CSV: a header and one row per reading.
    csv_entry = manifest["extension"]["csv"][0]
    table = await gateway.client.get(local(csv_entry["url"]), headers=team.headers)
    assert table.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await table.text())))
    assert len(rows) == csv_entry["count"] == 9
    assert {r["code"] for r in rows} == {"8867-4", "85354-9", "55423-8"}
    bp = next(r for r in rows if r["code"] == "85354-9")
    assert {bp["component_1_code"], bp["component_2_code"]} == {"8480-6", "8462-4"}

    # The release was audited with the file hashes the manifest names.
    [release] = await _audit(zone_dsns["cn"], "release")
    assert release["outcome"] == "success"
    assert {f["sha256"] for f in release["files"]} == {
        f["sha256"] for f in manifest["extension"]["files"]
    }
    assert release["k_anonymity"]["kept"] == 3

    # Operators see the run in /metrics (counted by the worker right after it commits).
    expected = [
        'gateway_export_jobs_total{outcome="completed",zone="cn"} 1.0',
        'gateway_export_resources_total{type="Observation",zone="cn"} 9.0',
        'gateway_export_resources_total{type="Patient",zone="cn"} 3.0',
    ]
    await _metrics_show(gateway, expected)


async def _metrics_show(gateway: Gateway, lines: list[str]) -> None:
    """Wait (5 s at most) until /metrics holds every one of `lines`."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        metrics = await (await gateway.client.get("/metrics")).text()
        if all(line in metrics for line in lines):
            return
        assert asyncio.get_running_loop().time() < deadline, metrics[-2000:]
        await asyncio.sleep(0.05)


async def test_consent_withdrawn_before_the_job_runs_fails_it_and_is_counted_as_refused(
    gateway: Gateway,
) -> None:
    pseudonym = await gateway.enrol("cn", "MRN-LATE-0")
    team = await researcher(gateway)
    await study(gateway, "late-2026", [team])
    workers = gateway.client.app[EXPORT_WORKERS]
    await workers.stop()  # the job waits in the database until a worker starts
    started = await kick_off(gateway, team, "late-2026")
    assert started.status == 202
    withdrawn = await gateway.client.patch(
        f"/v1/subjects/{pseudonym}/consent",
        json={"research": False},
        headers=gateway.auth(gateway.clinic["cn"]),
    )
    assert withdrawn.status == 200
    workers.start()
    done = await wait_done(gateway, team, status_path(started))
    assert done.status == 500
    assert "no-research-consent" in await done.text()
    await _metrics_show(gateway, ['gateway_export_jobs_total{outcome="refused",zone="cn"} 1.0'])


async def test_post_kick_off_with_type_filter_and_type(gateway: Gateway) -> None:
    await _cohort(gateway, 2)
    team = await researcher(gateway)
    await study(gateway, "bp-2026", [team])
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Observation"},
            {
                "name": "_typeFilter",
                "valueString": f"Observation?code=http://loinc.org|{HEART_RATE}",
            },
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        ],
    }
    started = await gateway.client.post(
        "/fhir/Group/bp-2026/$export",
        data=orjson.dumps(body),
        headers={
            **team.headers,
            "Content-Type": "application/fhir+json",
            "Prefer": "respond-async",
        },
    )
    assert started.status == 202, await started.text()
    done = await wait_done(gateway, team, status_path(started))
    manifest = await done.json()
    assert [o["type"] for o in manifest["output"]] == ["Observation"]
    assert manifest["output"][0]["count"] == 2


async def test_type_filter_by_category_and_output_format(gateway: Gateway) -> None:
    await _cohort(gateway, 2)
    team = await researcher(gateway)
    await study(gateway, "act-2026", [team])
    result = await export(
        gateway,
        team,
        "act-2026",
        "?_typeFilter=Observation%3Fcategory%3Dactivity&_outputFormat=ndjson",
    )
    codes = {o["code"]["coding"][0]["code"] for o in result.resources("Observation")}
    assert codes == {"55423-8"}


async def test_since_exports_only_resources_stored_after_it(gateway: Gateway) -> None:
    values = await _cohort(gateway, 2)
    team = await researcher(gateway)
    await study(gateway, "since-2026", [team])
    await asyncio.sleep(0.05)
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    status, _ = await gateway.ingest(
        "cn",
        [
            reading(
                values[0],
                value=99,
                time=datetime.now(CN_TZ).replace(microsecond=0) - timedelta(minutes=5),
            )
        ],
    )
    assert status in (200, 201)
    query = "?_since=" + since.isoformat().replace("+00:00", "Z") + "&_type=Observation"
    result = await export(gateway, team, "since-2026", query.replace(":", "%3A"))
    [observation] = result.resources("Observation")
    assert observation["valueQuantity"]["value"] == 99


async def test_cancel_then_status_is_404(gateway: Gateway) -> None:
    await _cohort(gateway, 1)
    team = await researcher(gateway)
    await study(gateway, "cancel-2026", [team])
    started = await kick_off(gateway, team, "cancel-2026")
    path = status_path(started)
    cancelled = await gateway.client.delete(path, headers=team.headers)
    assert cancelled.status == 202
    gone = await gateway.client.get(path, headers=team.headers)
    assert gone.status == 404
    assert (await gone.json())["resourceType"] == "OperationOutcome"
    again = await gateway.client.delete(path, headers=team.headers)
    assert again.status == 404


# ------------------------------------------------------------------------------ token rules


async def _devices_cohort(gateway: Gateway) -> list[str]:
    """Two subjects who share a watch (the same vendor device id), one with a Withings cuff too."""
    values = ["MRN-DEV-0", "MRN-DEV-1"]
    for value in values:
        await gateway.enrol("cn", value)
    cuff = {**blood_pressure(values[0], 120, 80)}
    cuff["device"] = {"id": "SN-CUFF-9", "model": "BPM Connect", "manufacturer": "Withings"}
    status, body = await gateway.ingest(
        "cn", [reading(values[0], value=70), reading(values[1], value=71), cuff]
    )
    assert status == 200, body
    return values


async def test_devices_are_exported_per_subject_with_the_model_family_only(
    gateway: Gateway,
) -> None:
    await _devices_cohort(gateway)
    team = await researcher(gateway, scopes=(*RESEARCH_SCOPES, "system/Device.rs"))
    await study(gateway, "dev-2026", [team])

    result = await export(gateway, team, "dev-2026")  # no _type: every type the token covers

    assert [o["type"] for o in result.manifest["output"]] == ["Patient", "Observation", "Device"]
    patients = {p["id"] for p in result.resources("Patient")}
    devices = {d["id"]: d for d in result.resources("Device")}
    for device in devices.values():
        Device.model_validate(device)
        assert device["meta"]["security"][0]["code"] == "PSEUDED"
        assert set(device) == {"resourceType", "id", "meta", "type", "patient"}
        assert device["patient"]["reference"].removeprefix("Patient/") in patients
    # The shared watch is two Devices, one per subject: nothing says who shares a device.
    assert sorted(d["type"]["text"] for d in devices.values()) == ["Withings BPM", "other", "other"]
    assert len({d["patient"]["reference"] for d in devices.values()}) == 2
    observations = result.resources("Observation")
    for observation in observations:
        device = devices[observation["device"]["reference"].removeprefix("Device/")]
        assert device["patient"] == observation["subject"]
    raw = result.files["Device.ndjson"] + result.files["Observation.ndjson"]
    for secret in (b"SN-0001", b"SN-CUFF-9", b"Watch 5", b"BPM Connect", b"Acme"):
        assert secret not in raw
    table = list(csv.DictReader(io.StringIO(result.files["Observation.csv"].decode())))
    assert {row["device"] for row in table} <= set(devices)
    assert len(table) == len(observations) == 3

    # Devices alone: every device of the study's subjects. Another study: other ids.
    alone = await export(gateway, team, "dev-2026", "?_type=Device")
    assert [o["type"] for o in alone.manifest["output"]] == ["Device"]
    assert {d["id"] for d in alone.resources("Device")} == set(devices)
    await study(gateway, "dev-2027", [team])
    other = await export(gateway, team, "dev-2027", "?_type=Device")
    assert not {d["id"] for d in other.resources("Device")} & set(devices)


async def test_token_rules(gateway: Gateway) -> None:
    await _cohort(gateway, 1)
    team = await researcher(gateway)
    other = await researcher(gateway)
    clinic = await researcher(gateway, role="clinic")
    await study(gateway, "tok-2026", [team])

    anonymous = await gateway.client.get(
        "/fhir/Group/tok-2026/$export", headers={"Prefer": "respond-async"}
    )
    assert anonymous.status == 401
    assert (await kick_off(gateway, other, "tok-2026")).status == 404  # not its study
    assert (await kick_off(gateway, clinic, "tok-2026")).status == 404
    assert (await kick_off(gateway, team, "no-such-study")).status == 404
    no_prefer = await gateway.client.get("/fhir/Group/tok-2026/$export", headers={**team.headers})
    assert no_prefer.status == 400
    bad_format = await kick_off(gateway, team, "tok-2026", "?_outputFormat=text/csv")
    assert bad_format.status == 400
    bad_type = await kick_off(gateway, team, "tok-2026", "?_type=Encounter")
    assert bad_type.status == 400
    out_of_scope = await kick_off(gateway, team, "tok-2026", "?_type=Device")
    assert out_of_scope.status == 403  # supported, but the token has no Device scope

    started = await kick_off(gateway, team, "tok-2026")
    path = status_path(started)
    assert (await gateway.client.get(path)).status == 401
    assert (await gateway.client.get(path, headers=other.headers)).status == 404
    assert (await gateway.client.delete(path, headers=other.headers)).status == 404
    done = await wait_done(gateway, team, path)
    url = local((await done.json())["output"][0]["url"])
    assert (await gateway.client.get(url)).status == 401
    assert (await gateway.client.get(url, headers=other.headers)).status == 404
    assert (await gateway.client.get(url, headers=team.headers)).status == 200
    traversal = path.replace("$export-status", "$export-file") + "/..%2F..%2Fetc%2Fpasswd"
    assert (await gateway.client.get(traversal, headers=team.headers)).status == 404

    narrow = await researcher(gateway, scopes=("system/Observation.rs",))
    await study(gateway, "tok-narrow", [narrow])
    assert (await kick_off(gateway, narrow, "tok-narrow", "?_type=Patient")).status == 403
    # No _type: every supported type within the token's scopes (Bulk Data 2.0 kick-off).
    in_scope = await export(gateway, narrow, "tok-narrow")
    assert [o["type"] for o in in_scope.manifest["output"]] == ["Observation"]
    nothing = await researcher(gateway, scopes=("system/Patient.rs",))
    await study(gateway, "tok-none", [nothing])
    assert (await kick_off(gateway, nothing, "tok-none", "?_type=Observation")).status == 403


# --------------------------------------------------------------------------- consent, borders


async def _refused(gateway: Gateway, who: Researcher, study_id: str, query: str = "") -> str:
    response = await kick_off(gateway, who, study_id, query)
    assert response.status == 403, await response.text()
    outcome = await response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return str(outcome["issue"][0]["details"]["coding"][0]["code"])


async def test_refusals_are_audited(gateway: Gateway, zone_dsns: dict[str, str]) -> None:
    await _cohort(gateway, 2, research=False)
    team = await researcher(gateway)
    await study(gateway, "noconsent", [team])
    assert await _refused(gateway, team, "noconsent") == "no-research-consent"

    await _cohort_more(gateway)  # research consent, no cross-border consent
    await study(
        gateway,
        "abroad",
        [team],
        country="DE",
        transfer=TransferMechanism("standard-contract", "SC-2026-0042"),
    )
    assert await _refused(gateway, team, "abroad") == "no-cross-border-consent"
    await study(
        gateway,
        "abroad-expired",
        [team],
        country="DE",
        transfer=TransferMechanism(
            "security-assessment", "CAC-2024-7", expires_on=date(2025, 1, 1)
        ),
    )
    assert await _refused(gateway, team, "abroad-expired") == "transfer-mechanism-expired"
    await study(gateway, "hr-only", [team], measures=(HEART_RATE,))
    assert (
        await _refused(gateway, team, "hr-only", "?_typeFilter=Observation%3Fcode%3D55423-8")
        == "measure-not-in-study"
    )

    refused = [e for e in await _audit(zone_dsns["cn"], "export") if e["outcome"] == "refused"]
    assert [e["reason"] for e in refused] == [
        "no-research-consent",
        "no-cross-border-consent",
        "transfer-mechanism-expired",
        "measure-not-in-study",
    ]
    assert all(e["actor"] == team.client_id and e["policy_version"] for e in refused)
    assert refused[1]["cross_border"] is True


async def _cohort_more(gateway: Gateway) -> None:
    await gateway.enrol(
        "cn", "MRN-RESEARCH-ONLY", consent={"research": True, "cross_border": False}
    )


async def test_cross_border_export_includes_only_cross_border_consent(gateway: Gateway) -> None:
    await _cohort(gateway, 2, cross_border=True)
    await gateway.enrol("cn", "MRN-DOMESTIC-ONLY")  # research consent only
    team = await researcher(gateway)
    await study(
        gateway,
        "abroad-ok",
        [team],
        country="DE",
        transfer=TransferMechanism("standard-contract", "SC-2026-0042"),
    )
    result = await export(gateway, team, "abroad-ok")
    assert len(result.resources("Patient")) == 2
    assert result.manifest["extension"]["excludedSubjects"] == {"no-cross-border-consent": 1}


# ------------------------------------------------------------------------ linkage, k, restart


async def test_two_studies_pseudonyms_never_match_and_reruns_are_stable(gateway: Gateway) -> None:
    await _cohort(gateway, 3)
    team = await researcher(gateway)
    await study(gateway, "link-a", [team])
    await study(gateway, "link-b", [team])
    a = await export(gateway, team, "link-a")
    b = await export(gateway, team, "link-b")
    again = await export(gateway, team, "link-a")

    def ids(result: Any, kind: str) -> set[str]:
        return {r["id"] for r in result.resources(kind)}

    assert ids(a, "Patient").isdisjoint(ids(b, "Patient"))
    assert ids(a, "Observation").isdisjoint(ids(b, "Observation"))
    assert ids(a, "Patient") == ids(again, "Patient")
    assert ids(a, "Observation") == ids(again, "Observation")
    shifted_a = sorted(o.get("effectiveDateTime", "") for o in a.resources("Observation"))
    shifted_again = sorted(o.get("effectiveDateTime", "") for o in again.resources("Observation"))
    assert shifted_a == shifted_again


async def test_k_anonymity_suppresses_small_groups(gateway: Gateway) -> None:
    await _cohort(gateway, 3)  # female, born 1970-01-02, same site: one group of 3
    await gateway.enrol("cn", "MRN-UNIQUE", sex="male")
    status, _ = await gateway.ingest("cn", [reading("MRN-UNIQUE", value=61)])
    assert status in (200, 201)
    team = await researcher(gateway)
    await study(gateway, "k3", [team], k=3)
    result = await export(gateway, team, "k3")
    assert result.manifest["extension"]["kAnonymity"]["suppressed"] == 1
    assert result.manifest["extension"]["excludedSubjects"]["k-anonymity-suppressed"] == 1
    assert len(result.resources("Patient")) == 3
    assert {p["gender"] for p in result.resources("Patient")} == {"female"}
    assert 61 not in {
        o.get("valueQuantity", {}).get("value") for o in result.resources("Observation")
    }


async def test_a_job_survives_a_restart(
    aiohttp_client: Any, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    first = await start_gateway(aiohttp_client, settings)
    await _cohort(first, 2)
    # Enough rows that the job is still running when the gateway stops: copies of the stored
    # readings with new ids, a second apart (one monthly partition).
    await fetch(
        zone_dsns["cn"],
        """
        INSERT INTO observations (subject, id, code, device, effective_start, effective_end,
                                  issued, source_format, resource)
        SELECT o.subject, o.id || '-' || g, o.code, o.device, o.effective_start, o.effective_end,
               o.issued, o.source_format, jsonb_set(o.resource, '{id}', to_jsonb(o.id || '-' || g))
        FROM observations o, generate_series(1, 8000) g
        WHERE o.code = '8867-4'
        """,
    )
    team = await researcher(first)
    await study(first, "restart", [team])
    started = await kick_off(first, team, "restart")
    path = status_path(started)
    job = path.rsplit("/", 1)[1]
    for _ in range(400):
        [row] = await fetch(zone_dsns["cn"], "SELECT state FROM export_jobs WHERE id = $1", job)
        if row["state"] == "running":
            break
        await asyncio.sleep(0.01)
    await first.client.close()  # graceful stop: the worker hands the job back
    [row] = await fetch(
        zone_dsns["cn"], "SELECT state, manifest FROM export_jobs WHERE id = $1", job
    )
    assert row["state"] == "queued", "the job finished before the gateway stopped"
    assert row["manifest"] is None

    second = await start_gateway(aiohttp_client, settings)
    done = await wait_done(second, team, path)
    assert done.status == 200, await done.text()
    manifest = await done.json()
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == {"Patient": 2, "Observation": 2 * 3 + 2 * 8000}
    files = await fetch(
        zone_dsns["cn"], "SELECT count(*) AS n FROM export_files WHERE job = $1", job
    )
    assert files[0]["n"] == 3


@pytest.mark.parametrize("zone", ["eu"])
async def test_eu_study_abroad_needs_scc_and_tia(gateway: Gateway, zone: str) -> None:
    team = await researcher(gateway, zone=zone)
    with pytest.raises(Exception, match="transfer mechanism"):
        await study(gateway, "eu-us", [team], zone=zone, country="US")
    with pytest.raises(Exception, match="transfer impact assessment"):
        await study(
            gateway, "eu-us", [team], zone=zone, country="US",
            transfer=TransferMechanism("scc", "module-1"),
        )  # fmt: skip
    await study(
        gateway, "eu-us", [team], zone=zone, country="US",
        transfer=TransferMechanism("scc", "module-1", tia="TIA-7"),
    )  # fmt: skip
    await study(gateway, "eu-fr", [team], zone=zone, country="FR")  # inside the EU: no mechanism
