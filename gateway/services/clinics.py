"""Who is acting for a clinic: a SMART Backend Services client or, until every site
has moved to tokens, a clinic API key. Services that act for a clinic take a `Clinic` and need
not care which credential it came from."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import Forbidden
from gateway.privacy.tokens import parse_access_token
from gateway.runtime.zones import ZoneDirectory
from gateway.services.credentials import authenticate, bearer_token
from gateway.services.smart import Permission, authenticate_access_token


@dataclass(frozen=True, slots=True)
class Clinic:
    zone: str
    site: str
    actor: str  # SMART client id or API key id: what the audit log and rate limits name


async def authenticate_clinic(
    zones: ZoneDirectory, authorization: str | None, *, permission: Permission = Permission.ENROL
) -> Clinic:
    """A clinic credential allowed `permission`: a SMART access token of a clinic client whose
    scopes grant it (enrolment: `system/Patient.write` or v2 `system/Patient.c`), or a clinic
    API key (which may do everything a clinic may)."""
    if parse_access_token(bearer_token(authorization)) is not None:
        client = await authenticate_access_token(zones, authorization)
        if client.role != "clinic" or permission not in client.permissions:
            raise Forbidden(f"this token's client may not do this ({permission} is not granted)")
        return Clinic(zone=client.zone, site=client.site, actor=client.client_id)
    principal = await authenticate(zones, authorization, kind="clinic")
    return Clinic(zone=principal.zone, site=principal.owner, actor=principal.key_id)
