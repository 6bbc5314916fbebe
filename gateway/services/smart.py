"""SMART Backend Services authorisation for clinics and research teams (HL7 SMART App Launch 2.x,
https://hl7.org/fhir/smart-app-launch/backend-services.html).

    register_client          operator: a client's public keys (JWKS) and the scopes it may hold
    issue_token              POST /auth/token: client_credentials grant, authenticated by a JWT
                             client assertion (RFC 7523 §2.2) -> a short-lived opaque access token
    authenticate_access_token  every FHIR request: Bearer token -> ClientPrincipal

A client id names its zone (`wgc_<zone>_…`), as API keys do, so the token endpoint checks the
client against that zone's database only; the access token it gets names the zone too.

Errors of the token endpoint are RFC 6749 §5.2 errors; `code` is the registered `error` value
and the web layer renders them in that shape:

    TokenRequestError        400  invalid_request
    ├── InvalidClient        401  invalid_client   (RFC 7521 §4.2.1: any assertion failure)
    ├── InvalidScope         400  invalid_scope
    └── UnsupportedGrantType 400  unsupported_grant_type
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, get_args

from gateway.errors import BadRequest, GatewayError, Unauthenticated
from gateway.privacy.tokens import (
    ASSERTION_ALGORITHMS,
    AssertionRejected,
    InvalidClientKeys,
    assertion_issuer,
    issue_access_token,
    load_client_jwks,
    new_client_id,
    parse_access_token,
    parse_client_id,
    verify_client_assertion,
)
from gateway.runtime.zones import ZoneDirectory
from gateway.storage.smart import ClientRole

CLIENT_CREDENTIALS: Final = "client_credentials"
JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART backend services: "access_token ... lifetime ... SHOULD NOT exceed five minutes".
MAX_TOKEN_LIFETIME_SECONDS: Final = 300
ROLES: Final[tuple[str, ...]] = get_args(ClientRole)
SIGNING_ALGORITHMS: Final = ASSERTION_ALGORITHMS

_SITE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# ------------------------------------------------------------------------------------ errors


class TokenRequestError(GatewayError):
    """An RFC 6749 §5.2 error response of the token endpoint."""

    status = 400
    code = "invalid_request"


class InvalidClient(TokenRequestError):
    status = 401
    code = "invalid_client"


class InvalidScope(TokenRequestError):
    code = "invalid_scope"


class UnsupportedGrantType(TokenRequestError):
    code = "unsupported_grant_type"


# ------------------------------------------------------------------------------------ scopes


class Permission(StrEnum):
    """What a token lets its client do here; every accepted scope maps onto these."""

    READ_OBSERVATION = "read-observation"
    READ_PATIENT = "read-patient"
    READ_DEVICE = "read-device"
    ENROL = "enrol"


# Resource type -> (permission for read+search, permission for create). SMART v1 `read` and v2
# `rs` both mean read and search; the API has no read-without-search mode, so a lone v2 `r` or
# `s` grants nothing. v2 `u`/`d` name operations the gateway does not offer: they grant nothing,
# and do not stop the rest of their scope from being granted.
_RESOURCES: Final[Mapping[str, tuple[Permission, Permission | None]]] = {
    "Observation": (Permission.READ_OBSERVATION, None),
    "Patient": (Permission.READ_PATIENT, Permission.ENROL),
    "Device": (Permission.READ_DEVICE, None),
}
# SMART v1 scope suffixes as v2 action letters (scopes-and-launch-context, "Scopes for requesting
# clinical data", v1 to v2 table).
_V1_ACTIONS: Final = {"read": "rs", "write": "cud", "*": "cruds"}
# `system/` only: backend services act for no user or patient (backend-services §"Scopes").
# v2 actions are a non-empty subset of "cruds" in that order.
_SCOPE = re.compile(
    r"system/(?P<resource>\*|[A-Z][A-Za-z]+)\.(?P<actions>read|write|\*|c?r?u?d?s?)"
)

SUPPORTED_SCOPES: Final = tuple(
    f"system/{resource}.{suffix}"
    for resource in (*_RESOURCES, "*")
    for suffix in ("read", "rs", *(("write", "c") if resource == "Patient" else ()))
)


def scope_permissions(scope: str) -> frozenset[Permission]:
    """What one scope grants here; empty for a scope the gateway does not understand or grant
    (other contexts such as `patient/`, `launch`, granular `?category=` scopes)."""
    match = _SCOPE.fullmatch(scope)
    if match is None or not match["actions"]:
        return frozenset()
    actions = _V1_ACTIONS.get(match["actions"], match["actions"])
    resources = list(_RESOURCES) if match["resource"] == "*" else [match["resource"]]
    granted: set[Permission] = set()
    for resource in resources:
        if resource not in _RESOURCES:
            return frozenset()
        read, create = _RESOURCES[resource]
        if "r" in actions and "s" in actions:
            granted.add(read)
        if create is not None and "c" in actions:
            granted.add(create)
    return frozenset(granted)


def permissions_of(scopes: Iterable[str]) -> frozenset[Permission]:
    return frozenset().union(*(scope_permissions(scope) for scope in scopes))


def grant_scopes(requested: str, registered: Iterable[str]) -> tuple[str, ...]:
    """The requested scopes (RFC 6749 §3.3: space-delimited) the client may hold: each one whose
    permissions all come with the scopes registered for it. Others are left out, narrowing the
    grant, which the response's `scope` then shows (RFC 6749 §5.1)."""
    allowed = permissions_of(registered)
    granted: list[str] = []
    for scope in requested.split(" "):
        permissions = scope_permissions(scope)
        if permissions and permissions <= allowed and scope not in granted:
            granted.append(scope)
    return tuple(granted)


# ------------------------------------------------------------------------------ registration


async def register_client(
    zones: ZoneDirectory,
    *,
    zone: str,
    site: str,
    role: str,
    jwks: Any,
    scopes: Iterable[str],
) -> str:
    """Register a backend client; returns its client id (public: it goes in the JWT's iss)."""
    target = zones.require(zone)
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}")
    if not _SITE.match(site):
        raise BadRequest("site must be 1-64 letters, digits, '.', '_' or '-'")
    try:
        keys = load_client_jwks(jwks)
    except InvalidClientKeys as exc:
        raise BadRequest(f"JWKS refused: {exc}") from exc
    wanted = tuple(dict.fromkeys(scopes))
    if not wanted:
        raise BadRequest("a client needs at least one scope")
    for scope in wanted:
        if not scope_permissions(scope):
            raise BadRequest(
                f"scope {scope!r} is not granted by this gateway; "
                f"supported: {' '.join(SUPPORTED_SCOPES)}"
            )
    if role == "researcher" and Permission.ENROL in permissions_of(wanted):
        raise BadRequest("a researcher client cannot enrol subjects")
    client_id = new_client_id(target.name)
    await target.db.smart.add(
        client_id,
        zone=target.name,
        site=site,
        role=role,  # type: ignore[arg-type]  # checked against ROLES above
        jwks=keys.public_jwks,
        scopes=wanted,
    )
    return client_id


async def revoke_client(zones: ZoneDirectory, *, zone: str, client_id: str) -> bool:
    return await zones.require(zone).db.smart.revoke(client_id)


# ----------------------------------------------------------------------------- token endpoint


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """RFC 6749 §5.1 / SMART backend-services §"Response"."""

    access_token: str = field(repr=False)
    expires_in: int
    scope: str
    client_id: str
    zone: str
    token_type: str = "bearer"  # noqa: S105  (RFC 6750 token type, not a secret)

    def body(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def _parameter(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise TokenRequestError(f"the {name} parameter is required")
    return value


async def issue_token(
    zones: ZoneDirectory,
    form: Mapping[str, str],
    token_url: str,
    now: datetime,
    *,
    lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS,
    admit: Callable[[str, str], None] | None = None,
) -> TokenResponse:
    """Answer one token request (SMART backend-services §"Request"), or raise a
    `TokenRequestError`. `token_url` is the endpoint's public URL, the only `aud` accepted.

    `admit(zone, client_id)` is called once the assertion is verified and before anything is
    written; it may raise (the caller's rate limit). Only a client that proved its key is
    counted, so nobody can use up another client's allowance by naming it in a forged
    assertion."""
    if not 1 <= lifetime_seconds <= MAX_TOKEN_LIFETIME_SECONDS:
        raise ValueError("access tokens live 1 to 300 seconds")
    if _parameter(form, "grant_type") != CLIENT_CREDENTIALS:
        raise UnsupportedGrantType("grant_type must be client_credentials")
    if _parameter(form, "client_assertion_type") != JWT_BEARER:
        raise InvalidClient(f"client_assertion_type must be {JWT_BEARER}")
    assertion = _parameter(form, "client_assertion")
    # RFC 6749 §3.3: a server may refuse a request without scope; SMART requires one.
    requested = form.get("scope", "")
    if not requested.strip():
        raise InvalidScope("the scope parameter is required")

    # 1. Which client, in which zone (the assertion's iss; verified in step 3).
    try:
        client_id = assertion_issuer(assertion)
    except AssertionRejected as exc:
        raise InvalidClient(str(exc)) from exc
    if form.get("client_id", client_id) != client_id:
        raise InvalidClient("client_id does not match the assertion's iss (RFC 7521 §4.2)")
    zone_name = parse_client_id(client_id)
    zone = zones.get(zone_name) if zone_name else None
    if zone is None:
        raise InvalidClient(f"this gateway does not serve zone {zone_name}")

    # 2. The client must be registered here and not revoked.
    client = await zone.db.smart.get(client_id)
    if client is None or client.revoked_at is not None:
        raise InvalidClient("unknown or revoked client")

    # 3. The assertion must be signed by one of its keys, for us, now (RFC 7523 §3).
    try:
        verified = verify_client_assertion(
            assertion,
            load_client_jwks(client.jwks),
            client_id=client_id,
            audience=token_url,
            now=now,
        )
    except AssertionRejected as exc:
        raise InvalidClient(str(exc)) from exc
    if admit is not None:
        admit(zone.name, client_id)

    # 4. ... and never seen before (SMART: jti "SHALL be rejected" when reused before exp).
    if not await zone.db.smart.use_jti(client_id, verified.jti, verified.expires_at, now):
        raise InvalidClient("this client assertion was already used (jti)")

    # 5. Grant what was both requested and registered.
    granted = grant_scopes(requested, client.scopes)
    if not granted:
        raise InvalidScope("none of the requested scopes is registered for this client")

    issued = issue_access_token(zone.name)
    await zone.db.smart.add_access_token(
        issued.token_hash,
        client_id,
        granted,
        now + timedelta(seconds=lifetime_seconds),
        now,
    )
    return TokenResponse(
        access_token=issued.token,
        expires_in=lifetime_seconds,
        scope=" ".join(granted),
        client_id=client_id,
        zone=zone.name,
    )


# -------------------------------------------------------------------------- resource requests


@dataclass(frozen=True, slots=True)
class ClientPrincipal:
    zone: str
    client_id: str
    site: str
    role: ClientRole
    permissions: frozenset[Permission]


async def authenticate_access_token(
    zones: ZoneDirectory, authorization: str | None, *, now: datetime | None = None
) -> ClientPrincipal:
    """The client behind `Authorization: Bearer <access token>` (RFC 6750 §2.1). Raises
    `Unauthenticated` for a missing, malformed, unknown, expired or revoked token, and
    `ZoneNotServed` for a token of a zone this process does not serve."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be `Bearer <access token>`")
    parsed = parse_access_token(token.strip())
    if parsed is None:
        raise Unauthenticated("malformed access token")
    zone = zones.require(parsed.zone)
    stored = await zone.db.smart.access_token(parsed.token_hash)
    moment = now if now is not None else datetime.now(UTC)
    if stored is None or stored.expires_at <= moment or stored.client_revoked_at is not None:
        raise Unauthenticated("access token is not valid or has expired")
    return ClientPrincipal(
        zone=zone.name,
        client_id=stored.client_id,
        site=stored.site,
        role=stored.role,
        permissions=permissions_of(stored.scopes),
    )
