"""Data about a subject stays in the subject's home zone (ARCHITECTURE §2). A request that would
move it elsewhere is refused, never forwarded, and the refusal names the zone, not the subject."""

from __future__ import annotations

import re
from collections.abc import Collection

from gateway.errors import Forbidden, GatewayError, ZoneNotServed
from gateway.models import Rejection, RejectionCode

# Zone names are configuration vocabulary (gateway.settings: `[a-z][a-z0-9]{0,15}`). A zone a
# client declared is named back only when it has that form; anything else is payload, and
# refusals never echo payload (a test posts SQL, traversal and canaries through them).
_ZONE_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")


def _wrong_zone(home: str, served: Collection[str]) -> Rejection:
    if not _ZONE_NAME.fullmatch(home):
        return Rejection(
            RejectionCode.WRONG_ZONE,
            "the reading's declared home zone is not a zone this gateway serves",
        )
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
        named = f"zone {requested}" if _ZONE_NAME.fullmatch(requested) else "the requested zone"
        return ZoneNotServed(f"{named} is not served by this gateway")
    if requested != credential_zone:
        return Forbidden(
            f"a credential of zone {credential_zone} cannot enrol subjects in zone {requested}"
        )
    return None
