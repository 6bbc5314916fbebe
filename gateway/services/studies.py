"""Registering a research study in a zone (operator, `wearable-gateway studies add`).

A study is a FHIR Group whose members are the zone's consenting subjects; what it may
receive and how its extracts are de-identified is fixed here, once, and checked on every export.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from gateway.deid import DeidPolicy, TimestampResolution
from gateway.errors import BadRequest, Conflict
from gateway.privacy.tokens import parse_client_id
from gateway.residency.export_policy import (
    JURISDICTIONS,
    TransferMechanism,
    is_cross_border,
    mechanism_problem,
)
from gateway.runtime.zones import ZoneDirectory
from gateway.storage.studies import StoredStudy, StudyExists

# A FHIR id (R4 §2.24.0.1) without underscores, so it can sit in a URL path unescaped.
STUDY_ID: Final = re.compile(r"[A-Za-z0-9.-]{1,64}")
_LOINC_CODE: Final = re.compile(r"[0-9]{1,7}-[0-9]")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")
_TEXT_LIMIT: Final = 200


@dataclass(frozen=True, slots=True)
class NewStudy:
    id: str
    title: str
    ethics_ref: str
    recipient_org: str
    recipient_country: str
    measures: Sequence[str]
    shift_days: int
    keep_weekday: bool
    resolution: str
    k: int
    expires_on: date
    researcher_clients: Sequence[str]
    transfer: TransferMechanism | None = None


def _text(name: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > _TEXT_LIMIT or not value.isprintable():
        raise BadRequest(f"{name} must be 1-{_TEXT_LIMIT} printable characters")
    return value


def _check_transfer(zone: str, country: str, transfer: TransferMechanism | None) -> None:
    if is_cross_border(zone, country):
        if transfer is None:
            raise BadRequest(
                f"recipient country {country} is outside zone {zone}: a transfer mechanism is "
                "required (--transfer-mechanism)"
            )
        problem = mechanism_problem(zone, transfer)
        if problem is not None:
            raise BadRequest(problem)
    elif transfer is not None:
        raise BadRequest("a transfer mechanism is only recorded for recipients outside the zone")


async def add_study(zones: ZoneDirectory, *, zone: str, study: NewStudy, today: date) -> None:
    target = zones.require(zone)
    if zone not in JURISDICTIONS:
        raise BadRequest(f"zone {zone} has no jurisdiction listed for cross-border decisions")
    if not STUDY_ID.fullmatch(study.id):
        raise BadRequest("a study id is 1-64 letters, digits, '.' or '-'")
    country = study.recipient_country.upper()
    if not _COUNTRY.fullmatch(country):
        raise BadRequest("the recipient country is an ISO 3166-1 alpha-2 code, e.g. DE or CN")
    measures = tuple(dict.fromkeys(m.strip() for m in study.measures if m.strip()))
    if not measures or not all(_LOINC_CODE.fullmatch(m) for m in measures):
        raise BadRequest("measures are LOINC codes, e.g. 8867-4,8480-6")
    if study.expires_on < today:
        raise BadRequest("the study's expiry date has passed")
    try:
        resolution = TimestampResolution(study.resolution)
        # The study's settings must make a valid de-identification policy; check it now, not at
        # the first export.
        DeidPolicy(
            date_shift_bound=timedelta(days=study.shift_days),
            allowed_codes=frozenset(measures),
            keep_weekday=study.keep_weekday,
            timestamp_resolution=resolution,
            k=study.k,
        )
    except ValueError as exc:
        raise BadRequest(f"de-identification settings refused: {exc}") from exc
    transfer = study.transfer
    _check_transfer(zone, country, transfer)
    clients = tuple(dict.fromkeys(study.researcher_clients))
    if not clients:
        raise BadRequest("a study needs at least one researcher client (--researcher-client)")
    for client_id in clients:
        stored = await target.db.smart.get(client_id) if parse_client_id(client_id) else None
        if stored is None or stored.zone != zone or stored.role != "researcher":
            raise BadRequest("every --researcher-client must be a researcher client of the zone")
    try:
        await target.db.studies.add(
            StoredStudy(
                id=study.id,
                zone=zone,
                title=_text("title", study.title),
                ethics_ref=_text("ethics", study.ethics_ref),
                recipient_org=_text("recipient-org", study.recipient_org),
                recipient_country=country,
                measures=measures,
                shift_days=study.shift_days,
                keep_weekday=study.keep_weekday,
                resolution=resolution.value,
                k=study.k,
                expires_on=study.expires_on,
                transfer_kind=transfer.kind if transfer else None,
                transfer_reference=transfer.reference if transfer else None,
                transfer_tia=transfer.tia if transfer else None,
                transfer_expires_on=transfer.expires_on if transfer else None,
                researcher_clients=clients,
            )
        )
    except StudyExists:
        raise Conflict("a study with this id already exists in the zone") from None
