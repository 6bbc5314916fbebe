"""/v1/notify/withings/{token}: the callback URL registered with Withings "Notify - Subscribe".

Withings cannot send an Authorization header, so the vendor API key travels in the path. The
request log and the request metrics name the route template, never the path, so the key is not
recorded by the gateway (tests/web/test_notify_withings.py checks both); proxies in front of it
must not log paths under /v1/notify/ either (THREAT_MODEL.md).

Withings checks the URL with HEAD before subscribing it and retries any non-2xx answer, removing
the subscription after repeated failures; so every well-formed notification gets the same quick,
empty 200, whether or not the userid is enrolled.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.errors import BadRequest, UnsupportedMediaType
from gateway.logs import event
from gateway.services.credentials import Principal, authenticate
from gateway.services.notifications import (
    WITHINGS_APPLI,
    NotificationOutcome,
    record_withings_notification,
)
from gateway.web.appkeys import METRICS, ZONES
from gateway.web.body import read_form
from gateway.web.middleware import request_id
from gateway.web.ratelimit import throttle

log = logging.getLogger("gateway.notify")

_VENDOR_FORMAT = "withings"
# Withings documents application/x-www-form-urlencoded and elsewhere "form-data"; aiohttp's
# `request.post()` reads both.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


async def _principal(request: web.Request) -> Principal:
    # The path token is an ordinary vendor API key; `authenticate` reads it as a bearer token so
    # both ways in share one check (format, constant-time secret, revocation, kind).
    principal = await authenticate(
        request.app[ZONES], f"Bearer {request.match_info['token']}", kind="vendor"
    )
    throttle(request, zone=principal.zone, credential_id=principal.key_id)
    return principal


async def check_withings(request: web.Request) -> web.Response:
    """HEAD/GET: Withings' reachability check of the callback URL."""
    await _principal(request)
    return web.Response(status=200)


async def post_withings(request: web.Request) -> web.Response:
    principal = await _principal(request)
    if request.content_type not in _FORM_TYPES:
        raise UnsupportedMediaType(
            "Withings notifications are application/x-www-form-urlencoded (or multipart/form-data)"
        )
    try:
        form = await read_form(request)
        result = await record_withings_notification(request.app[ZONES], principal, form)
    except BadRequest:
        _observe(request, principal, NotificationOutcome.INVALID, appli=None)
        raise
    _observe(request, principal, result.outcome, appli=result.appli)
    # The same answer for every outcome: anything else would tell a key holder whether a userid
    # is enrolled in this zone.
    return web.Response(status=200)


def _observe(
    request: web.Request, principal: Principal, outcome: NotificationOutcome, appli: int | None
) -> None:
    request.app[METRICS].notifications.labels(_VENDOR_FORMAT, principal.zone, str(outcome)).inc()
    event(
        log,
        "notification.received",
        request_id=request_id(request),
        zone=principal.zone,
        vendor_format=_VENDOR_FORMAT,
        vendor_key=principal.key_id,
        outcome=str(outcome),
        appli=appli,  # a category code, not data: logged so unknown categories get noticed
        appli_known=appli in WITHINGS_APPLI,
    )
