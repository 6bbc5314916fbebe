"""PATCH /v1/subjects/{pseudonym}/consent and DELETE /v1/subjects/{pseudonym}: the
enrolling clinic changes consent or erases a subject. Shape checks only; the services decide."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.logs import event
from gateway.services.clinics import Clinic, authenticate_clinic
from gateway.services.erase import ErasureReason, erase
from gateway.services.smart import Permission
from gateway.services.subjects import change_consent
from gateway.web.appkeys import ZONES
from gateway.web.body import read_body
from gateway.web.middleware import request_id
from gateway.web.ratelimit import throttle
from gateway.web.responses import json_response

log = logging.getLogger("gateway.subjects")

_REASONS = ", ".join(r.value for r in ErasureReason)


async def _clinic(request: web.Request) -> Clinic:
    """The one credential check of these endpoints: the credentials enrolment accepts (a clinic
    API key, or a SMART clinic token allowed to write Patient), then the rate limit."""
    clinic = await authenticate_clinic(
        request.app[ZONES], request.headers.get("Authorization"), permission=Permission.ENROL
    )
    throttle(request, zone=clinic.zone, credential_id=clinic.actor)
    return clinic


async def _json_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    body = await read_body(request)
    if not body and not required:
        return {}
    if request.content_type != "application/json":
        raise UnsupportedMediaType("this endpoint accepts application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON("request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def _optional_flag(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


async def patch_consent(request: web.Request) -> web.Response:
    clinic = await _clinic(request)
    data = await _json_object(request, required=True)
    unknown = set(data) - {"research", "cross_border"}
    if unknown:
        raise BadRequest("consent changes accept research and cross_border only")
    changed = await change_consent(
        request.app[ZONES],
        zone=clinic.zone,
        site=clinic.site,
        actor=clinic.actor,
        pseudonym=request.match_info["pseudonym"],
        research=_optional_flag(data, "research"),
        cross_border=_optional_flag(data, "cross_border"),
    )
    event(log, "subject.consent_changed", request_id=request_id(request), zone=clinic.zone)
    return json_response(
        {
            "pseudonym": request.match_info["pseudonym"],
            "consent": {"research": changed.research, "cross_border": changed.cross_border},
            "changed_at": changed.changed_at.isoformat(),
        }
    )


async def delete_subject(request: web.Request) -> web.Response:
    clinic = await _clinic(request)
    data = await _json_object(request, required=False)
    raw = data.get("reason", request.query.get("reason"))
    try:
        reason = ErasureReason(str(raw))
    except ValueError:
        raise BadRequest(f"reason is required, one of {_REASONS}") from None
    erased = await erase(
        request.app[ZONES],
        zone=clinic.zone,
        site=clinic.site,
        actor=clinic.actor,
        pseudonym=request.match_info["pseudonym"],
        reason=reason,
    )
    event(
        log,
        "subject.erased",
        request_id=request_id(request),
        zone=clinic.zone,
        already_erased=erased.already_erased,
    )
    return json_response(
        {
            "pseudonym": erased.pseudonym,
            "status": "already-erased" if erased.already_erased else "erased",
            "removed": erased.removed,
        }
    )
