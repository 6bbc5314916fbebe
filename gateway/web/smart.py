"""SMART Backend Services endpoints: POST /auth/token and the SMART configuration document.

Token responses and errors are OAuth 2.0 shaped (RFC 6749 §5.1, §5.2), not the gateway's usual
error body, because OAuth client libraries parse them; both carry `Cache-Control: no-store`.
The one exception is 429 (OAuth defines no error code for it): a client past its rate limit gets
the gateway's `rate-limited` error with `Retry-After`, as on every other endpoint.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from gateway.errors import BadRequest, RateLimited, UndecodableBody, UnsupportedMediaType
from gateway.logs import event
from gateway.services.smart import (
    CLIENT_CREDENTIALS,
    SIGNING_ALGORITHMS,
    SUPPORTED_SCOPES,
    TokenRequestError,
    issue_token,
)
from gateway.settings import Settings
from gateway.web.appkeys import SETTINGS, ZONES
from gateway.web.body import read_form
from gateway.web.middleware import request_id
from gateway.web.ratelimit import throttle
from gateway.web.responses import close_connection, error_response, json_response

log = logging.getLogger("gateway.smart")

TOKEN_PATH = "/auth/token"  # noqa: S105  (a URL path, not a secret)
_FORM = "application/x-www-form-urlencoded"
# RFC 6749 §5.1: token responses (and so errors of the same endpoint) must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token_endpoint(settings: Settings) -> str:
    """The URL clients post to, and so the only `aud` their assertions may carry."""
    return settings.base_url + TOKEN_PATH


def _oauth_error(error: TokenRequestError) -> web.Response:
    response = json_response(
        {"error": error.code, "error_description": error.message}, status=error.status
    )
    response.headers.update(_NO_STORE)
    return response


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != _FORM:
        raise TokenRequestError(f"the token request must be {_FORM} (RFC 6749 §4.4.2)")
    try:
        raw = await read_form(request)
    # An unknown charset or content coding, a corrupt body, a control character: OAuth clients
    # parse `invalid_request`, not the gateway's error codes.
    except (BadRequest, UnsupportedMediaType) as exc:
        raise TokenRequestError("the token request body is not a readable form") from exc
    form: dict[str, str] = {}
    for name, value in raw.items():
        # RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."
        if name in form or not isinstance(value, str):
            raise TokenRequestError(f"the {name} parameter must appear once, as text")
        form[name] = value
    return form


async def post_token(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        answer = await issue_token(
            request.app[ZONES],
            await _form(request),
            token_endpoint(settings),
            datetime.now(UTC),
            lifetime_seconds=settings.token_lifetime_seconds,
            admit=lambda zone, client_id: throttle(request, zone=zone, credential_id=client_id),
        )
    except TokenRequestError as error:
        # The code only: the description may describe what the (unauthenticated) caller sent.
        event(log, "smart.token_refused", request_id=request_id(request), error=error.code)
        refused = _oauth_error(error)
        if isinstance(error.__cause__, UndecodableBody):
            close_connection(refused)
        return refused
    except RateLimited as error:  # counted and logged by `throttle`
        refused = error_response(error, request_id(request))
        refused.headers.update(_NO_STORE)
        return refused
    event(
        log,
        "smart.token_issued",
        request_id=request_id(request),
        zone=answer.zone,
        client_id=answer.client_id,
        scope=answer.scope,
        expires_in=answer.expires_in,
    )
    response = json_response(answer.body())
    response.headers.update(_NO_STORE)
    return response


async def smart_configuration(request: web.Request) -> web.Response:
    """SMART App Launch 2.x §"SMART configuration" (conformance.html), for backend services."""
    settings = request.app[SETTINGS]
    return json_response(
        {
            "token_endpoint": token_endpoint(settings),
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
            "grant_types_supported": [CLIENT_CREDENTIALS],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        }
    )
