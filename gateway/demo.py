"""`wearable-gateway demo`: the whole gateway on one machine with nothing but Python.

An embedded PostgreSQL (`pgserver`) under a local data folder holds one database per zone; demo
keys are generated there; the gateway serves on loopback; demo clinics enrol subjects in both
zones; a demo vendor posts simulated readings (good ones, replays and deliberately bad ones)
through the real HTTP API; a summary says what happened and what to try next.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp

from gateway.app import create_app, load_keyrings, open_zones
from gateway.logs import configure_logging
from gateway.privacy import ZoneKeyRing
from gateway.privacy.provider import FileKeyProvider
from gateway.services.credentials import add_credential
from gateway.settings import Settings, ZoneSettings
from gateway.storage import ensure_database, migrate_database
from gateway.web.server import listen, run_until_signalled, serving

ZONES = {"cn": timezone(timedelta(hours=8)), "eu": timezone(timedelta(hours=1))}
SITES = {"cn": "hainan-general", "eu": "eu-partner-clinic"}
VENDOR = "demo-wearables"
MRN_SYSTEM = {"cn": "urn:demo:hainan-general:mrn", "eu": "urn:demo:eu-partner-clinic:mrn"}
ACCOUNT_SYSTEM = "urn:demo:wearable-account"


@dataclass
class ZoneTally:
    created: int = 0
    duplicate: int = 0
    rejected: int = 0
    codes: dict[str, int] = field(default_factory=dict)

    def add(self, response: dict[str, Any]) -> None:
        self.created += response["summary"]["created"]
        self.duplicate += response["summary"]["duplicate"]
        self.rejected += response["summary"]["rejected"]
        for result in response["results"]:
            if "error" in result:
                code = result["error"]["code"]
                self.codes[code] = self.codes.get(code, 0) + 1


def _subject(zone: str, n: int) -> dict[str, str]:
    return {"system": MRN_SYSTEM[zone], "value": f"{zone.upper()}-{n:04d}"}


def _readings(zone: str, n: int, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    tz = ZONES[zone]
    subject = _subject(zone, n)
    device = {"id": f"DEMO-{zone.upper()}-{n:04d}", "model": "Demo Watch 2", "manufacturer": "Demo"}

    def at(minutes_ago: int) -> str:
        return (now - timedelta(minutes=minutes_ago)).astimezone(tz).isoformat(timespec="seconds")

    def single(kind: str, value: float, unit: str, minutes_ago: int) -> dict[str, Any]:
        return {
            "subject": subject,
            "device": device,
            "type": kind,
            "value": value,
            "unit": unit,
            "time": at(minutes_ago),
        }

    readings = [single("heart-rate", rng.randint(55, 95), "/min", m) for m in range(5, 65, 10)]
    readings += [
        single("resting-heart-rate", rng.randint(52, 70), "bpm", 120),
        single("respiratory-rate", rng.randint(12, 18), "/min", 30),
        single("oxygen-saturation", rng.randint(94, 99), "%", 25),
        single("body-temperature", round(rng.uniform(97.5, 99.0), 1), "[degF]", 40),
        single("body-weight", round(rng.uniform(120, 200), 1), "[lb_av]", 600),
        single("body-height", rng.randint(150, 190), "cm", 600),
        single("body-mass-index", round(rng.uniform(19, 29), 1), "kg/m2", 600),
        single("blood-glucose", round(rng.uniform(4.5, 7.5), 1), "mmol/L", 90),
        single("heart-rate-variability-sdnn", rng.randint(25, 80), "ms", 300),
        {
            "subject": subject,
            "device": device,
            "type": "blood-pressure",
            "time": at(15),
            "components": {
                "systolic": {"value": rng.randint(110, 140), "unit": "mm[Hg]"},
                "diastolic": {"value": rng.randint(65, 85), "unit": "mm[Hg]"},
            },
        },
        {
            "subject": subject,
            "device": device,
            "type": "step-count",
            "value": rng.randint(200, 1500),
            "unit": "{steps}",
            "start": at(75),
            "end": at(15),
        },
    ]
    return readings


def _bad_readings(zone: str, other_zone: str, now: datetime) -> list[dict[str, Any]]:
    tz = ZONES[zone]
    device = {"id": f"DEMO-{zone.upper()}-0001"}
    time = now.astimezone(tz).isoformat(timespec="seconds")
    known = _subject(zone, 1)
    return [
        {
            "subject": {"system": MRN_SYSTEM[zone], "value": "NOT-ENROLLED"},
            "device": device,
            "type": "heart-rate",
            "value": 70,
            "unit": "/min",
            "time": time,
        },
        {
            "subject": known,
            "device": device,
            "type": "heart-rate",
            "value": 400,
            "unit": "/min",
            "time": time,
        },
        {
            "subject": known,
            "device": device,
            "type": "heart-rate",
            "value": 70,
            "unit": "/min",
            "time": now.replace(tzinfo=None).isoformat(timespec="seconds"),
        },
        {
            "subject": known,
            "device": device,
            "type": "blood-pressure",
            "time": time,
            "components": {
                "systolic": {"value": 70, "unit": "mm[Hg]"},
                "diastolic": {"value": 90, "unit": "mm[Hg]"},
            },
        },
        {
            "subject": known,
            "device": device,
            "type": "body-weight",
            "value": 70,
            "unit": "stone",
            "time": time,
        },
        {
            "subject": _subject(other_zone, 1),
            "device": device,
            "type": "heart-rate",
            "value": 70,
            "unit": "/min",
            "time": time,
        },
    ]


def ensure_demo_key_file(key_file: Path, zone: str) -> None:
    """Create the demo's key file, or bring one from an older version up to date: purposes it
    lacks get new keys and every existing key is kept, so earlier demo data stays readable."""
    if not key_file.exists():
        key_file.parent.mkdir(mode=0o700, exist_ok=True)
        ZoneKeyRing.generate(zone).write(key_file)
    else:
        FileKeyProvider(key_file).upgrade(zone)


async def _start_postgres(data_dir: Path) -> Any:
    # Imported here: only the demo embeds a server; `serve` never loads it.
    from pgserver.postgres_server import get_server  # noqa: PLC0415

    starting = asyncio.ensure_future(
        asyncio.to_thread(get_server, data_dir / "postgres", cleanup_mode="stop")
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Stopped (SIGTERM, Ctrl-C) while PostgreSQL was starting: stop it as soon as it is up.
        with contextlib.suppress(Exception):
            await asyncio.to_thread((await starting).cleanup)
        raise


async def _prepare(data_dir: Path, server: Any) -> Settings:
    zones: dict[str, ZoneSettings] = {}
    for zone in ZONES:
        dsn = await ensure_database(server.get_uri(), f"gateway_{zone}")
        await migrate_database(dsn)
        key_file = data_dir / "keys" / f"{zone}.keys.json"
        ensure_demo_key_file(key_file, zone)
        zones[zone] = ZoneSettings(name=zone, database_url=dsn, key_file=key_file)
    return Settings(zones=zones, log_level="WARNING")


async def _credentials(settings: Settings) -> dict[str, dict[str, str]]:
    zones = await open_zones(settings, load_keyrings(settings))
    try:
        issued: dict[str, dict[str, str]] = {}
        for zone in ZONES:
            vendor = await add_credential(zones, zone=zone, kind="vendor", owner=VENDOR)
            clinic = await add_credential(zones, zone=zone, kind="clinic", owner=SITES[zone])
            issued[zone] = {"vendor": vendor.token, "clinic": clinic.token}
        return issued
    finally:
        for zone_ in zones.values():
            await zone_.db.close()


async def _scenario(base: str, keys: dict[str, dict[str, str]]) -> dict[str, ZoneTally]:
    rng = random.Random(2026)  # noqa: S311 — simulated readings, not secrets
    now = datetime.now(UTC)
    tallies = {zone: ZoneTally() for zone in ZONES}
    async with aiohttp.ClientSession(base) as http:
        for zone in ZONES:
            clinic = {"Authorization": f"Bearer {keys[zone]['clinic']}"}
            for n in (1, 2, 3):
                body = {
                    "zone": zone,
                    "site": SITES[zone],
                    "identifiers": [
                        _subject(zone, n),
                        {"system": ACCOUNT_SYSTEM, "value": f"acct-{zone}-{n}"},
                    ],
                    "birth_date": f"19{60 + n * 7}-0{n}-1{n}",
                    "sex": ("female", "male", "other")[n - 1],
                    "consent": {"research": True, "cross_border": n == 1},
                }
                async with http.post("/v1/subjects", json=body, headers=clinic) as response:
                    if response.status not in (201, 409):  # 409: enrolled by an earlier run
                        raise RuntimeError(f"enrolment failed with HTTP {response.status}")
        for zone in ZONES:
            vendor = {"Authorization": f"Bearer {keys[zone]['vendor']}"}
            batches = [_readings(zone, n, rng, now) for n in (1, 2, 3)]
            batches.append(batches[0])  # a replay: every reading comes back `duplicate`
            other = next(z for z in ZONES if z != zone)
            batches.append(_bad_readings(zone, other, now))
            for batch in batches:
                async with http.post(
                    "/v1/ingest/native", json={"readings": batch}, headers=vendor
                ) as response:
                    tallies[zone].add(await response.json())
    return tallies


def _environment(settings: Settings) -> list[tuple[str, str]]:
    """The GATEWAY_* settings that point `wearable-gateway` commands at this demo: its
    databases and keys, and the URL it serves on (what `wearable-gateway token` talks to)."""
    env = [("GATEWAY_ZONES", ",".join(settings.zones))]
    env.append(("GATEWAY_PUBLIC_BASE_URL", settings.base_url))
    for zone, z in settings.zones.items():
        env.append((f"GATEWAY_ZONE_{zone.upper()}_DATABASE_URL", z.database_url))
        env.append((f"GATEWAY_ZONE_{zone.upper()}_KEY_FILE", str(z.key_file)))
    return env


def _summary(
    *,
    base: str,
    data_dir: Path,
    tallies: dict[str, ZoneTally],
    keys: dict[str, dict[str, str]],
    settings: Settings,
    once: bool,
) -> str:
    lines = ["", "wearable-gateway demo", "=====================", ""]
    lines.append(f"{'zone':<6}{'created':>9}{'duplicate':>11}{'rejected':>10}  rejection codes")
    for zone, t in tallies.items():
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(t.codes.items())) or "-"
        lines.append(f"{zone:<6}{t.created:>9}{t.duplicate:>11}{t.rejected:>10}  {codes}")
    lines += ["", "Where the data lives (one database per zone; nothing of one zone in another):"]
    for zone, z in settings.zones.items():
        lines.append(
            f"  {zone}: database gateway_{zone} on the embedded PostgreSQL under "
            f"{data_dir / 'postgres'}, keys in {z.key_file}"
        )
    vendor, clinic = keys["cn"]["vendor"], keys["cn"]["clinic"]
    lines += [
        "",
        "To follow the README's examples against this demo, run these in another shell (the",
        "`wearable-gateway` commands then use the demo's databases, keys and URL; $VENDOR",
        "and $CLINIC are zone cn's API keys):",
        *(f"  export {name}={shlex.quote(value)}" for name, value in _environment(settings)),
        f"  export VENDOR={vendor} CLINIC={clinic}",
    ]
    lines += [
        "",
        "Try next"
        + ("" if not once else " (run without --once to keep the gateway serving)")
        + ":",
        f"  curl -s {base}/readyz",
        f"  curl -s {base}/metrics | grep gateway_ingest",
        f"  curl -s -X POST {base}/v1/subjects -H 'Authorization: Bearer {clinic}' \\",
        "       -H 'Content-Type: application/json' \\",
        f'       -d \'{{"zone":"cn","site":"{SITES["cn"]}","identifiers":[{{"system":'
        f'"{MRN_SYSTEM["cn"]}","value":"CN-0099"}}],"sex":"female"}}\'',
        f"  curl -s -X POST {base}/v1/ingest/native -H 'Authorization: Bearer {vendor}' \\",
        "       -H 'Content-Type: application/json' \\",
        f'       -d \'{{"subject":{{"system":"{MRN_SYSTEM["cn"]}","value":"CN-0099"}},'
        '"device":{"id":"W-1"},"type":"heart-rate","value":72,"unit":"/min",'
        f'"time":"{datetime.now(ZONES["cn"]).isoformat(timespec="seconds")}"}}\'',
        "",
        "These demo API keys were issued for this run only; `wearable-gateway vendors add` and",
        "`clinics add` issue real ones against a configured deployment (see README).",
    ]
    return "\n".join(lines)


async def _run(data_dir: Path, port: int, once: bool) -> int:
    server = await _start_postgres(data_dir)
    listener = contextlib.AsyncExitStack()
    try:
        settings = await _prepare(data_dir, server)
        keys = await _credentials(settings)
        configure_logging(settings.log_level)
        sock, settings = listen(settings, host="127.0.0.1", port=port)
        await listener.enter_async_context(serving(create_app(settings), settings, sock))
        base = settings.base_url
        tallies = await _scenario(base, keys)
        summary = _summary(
            base=base, data_dir=data_dir, tallies=tallies, keys=keys, settings=settings, once=once
        )
        print(summary, flush=True)
        if not once:
            print(f"\nServing on {base} — press Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()  # until SIGINT or SIGTERM
        return 0
    finally:
        await listener.aclose()
        await asyncio.to_thread(server.cleanup)


def run_demo(*, data_dir: Path, port: int, once: bool) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    # SIGTERM as well as Ctrl-C stops the demo through its cleanup, embedded PostgreSQL included.
    return run_until_signalled(_run(data_dir.resolve(), port, once)) or 0
