"""POST /v1/subjects: enrolment by a clinic. The body is checked here for shape only; the
enrolment service decides."""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.lexical import is_fhir_string
from gateway.logs import event
from gateway.models import Consent, Enrolment, Identifier, Sex
from gateway.services.clinics import authenticate_clinic
from gateway.services.subjects import enrol
from gateway.web.appkeys import METRICS, ZONES
from gateway.web.body import read_body
from gateway.web.middleware import request_id
from gateway.web.ratelimit import throttle
from gateway.web.responses import json_response

log = logging.getLogger("gateway.subjects")

_MAX_TEXT = 256
_MAX_IDENTIFIERS = 20
_SITE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise BadRequest(f"{path} must be a non-empty string of at most {_MAX_TEXT} characters")
    if not is_fhir_string(value):
        raise BadRequest(f"{path} must not contain control characters")
    return value


def _flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{path} must be true or false")
    return value


def parse_enrolment(body: bytes) -> Enrolment:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON("request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    zone = _text(data.get("zone"), "zone")
    site = _text(data.get("site"), "site")
    if not _SITE.match(site):
        raise BadRequest("site must be 1-64 letters, digits, '.', '_' or '-'")
    raw_ids = data.get("identifiers")
    if not isinstance(raw_ids, list) or not 1 <= len(raw_ids) <= _MAX_IDENTIFIERS:
        raise BadRequest(f"identifiers must be an array of 1 to {_MAX_IDENTIFIERS} identifiers")
    identifiers = []
    for n, raw in enumerate(raw_ids):
        if not isinstance(raw, dict):
            raise BadRequest(f"identifiers[{n}] must be an object with system and value")
        identifiers.append(
            Identifier(
                _text(raw.get("system"), f"identifiers[{n}].system"),
                _text(raw.get("value"), f"identifiers[{n}].value"),
            )
        )
    if len(set(identifiers)) != len(identifiers):
        raise BadRequest("identifiers must not repeat")
    birth_date = None
    if data.get("birth_date") is not None:
        try:
            birth_date = date.fromisoformat(_text(data["birth_date"], "birth_date"))
        except ValueError as exc:
            raise BadRequest("birth_date must be a date: YYYY-MM-DD") from exc
    try:
        sex = Sex(data.get("sex", "unknown"))
    except ValueError as exc:
        raise BadRequest(f"sex must be one of {', '.join(s.value for s in Sex)}") from exc
    consent_raw = data.get("consent", {})
    if not isinstance(consent_raw, dict):
        raise BadRequest("consent must be an object with research and cross_border flags")
    consent = Consent(
        research=_flag(consent_raw.get("research", False), "consent.research"),
        cross_border=_flag(consent_raw.get("cross_border", False), "consent.cross_border"),
    )
    return Enrolment(
        zone=zone,
        site=site,
        identifiers=tuple(identifiers),
        birth_date=birth_date,
        sex=sex,
        consent=consent,
    )


async def post_subject(request: web.Request) -> web.Response:
    clinic = await authenticate_clinic(request.app[ZONES], request.headers.get("Authorization"))
    throttle(request, zone=clinic.zone, credential_id=clinic.actor)
    if request.content_type != "application/json":
        raise UnsupportedMediaType("enrolment accepts application/json")
    enrolment = parse_enrolment(await read_body(request))
    metrics = request.app[METRICS]
    try:
        enrolled = await enrol(request.app[ZONES], clinic, enrolment)
    except Exception:
        metrics.enrolments.labels(clinic.zone, "refused").inc()
        raise
    metrics.enrolments.labels(enrolled.zone, "enrolled").inc()
    event(
        log,
        "subject.enrolled",
        request_id=request_id(request),
        zone=enrolled.zone,
        clinic=clinic.actor,
    )
    return json_response(
        {
            "zone": enrolled.zone,
            "pseudonym": enrolled.pseudonym,
            "reference": f"Patient/{enrolled.pseudonym}",
        },
        status=201,
    )
