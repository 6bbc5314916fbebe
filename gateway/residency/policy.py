"""Data about a subject stays in the subject's home zone (ARCHITECTURE §2). A request that would
move it elsewhere is refused, never forwarded, and the refusal names the zone, not the subject."""

from __future__ import annotations

from collections.abc import Collection

from gateway.errors import Forbidden, GatewayError, ZoneNotServed
from gateway.models import Rejection, RejectionCode


def _wrong_zone(home: str, served: Collection[str]) -> Rejection:
    if home in served:
        return Rejection(
            RejectionCode.WRONG_ZONE,
            f"the subject's home zone is {home}: send the reading with an API key of zone {home}",
        )
    return Rejection(
        RejectionCode.WRONG_ZONE,
        f"the subject's home zone is {home}, which this gateway does not serve: send the "
        f"reading to the {home} gateway",
    )


def declared_zone_rejection(
    *, key_zone: str, declared_zone: str | None, served: Collection[str]
) -> Rejection | None:
    """A reading may say which zone its subject belongs to; it must be the API key's zone."""
    if declared_zone is None or declared_zone == key_zone:
        return None
    return _wrong_zone(declared_zone, served)


def found_in_zone(home: str, served: Collection[str]) -> Rejection:
    """The subject is not enrolled in the key's zone but in `home`."""
    return _wrong_zone(home, served)


def enrolment_zone_error(
    *, requested: str, credential_zone: str, served: Collection[str]
) -> GatewayError | None:
    if requested not in served:
        return ZoneNotServed(f"zone {requested} is not served by this gateway")
    if requested != credential_zone:
        return Forbidden(
            f"a credential of zone {credential_zone} cannot enrol subjects in zone {requested}"
        )
    return None
