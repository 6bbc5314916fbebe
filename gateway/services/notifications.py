"""Vendor data-update notifications: a vendor says a subject has new data, and the
gateway notes a pending fetch in the subject's zone. Top to bottom:

    form -> validate (pure) -> resolve subject (blind index, key's zone only) -> record (idempotent)

Withings calls the URL an integrator registered with "Notify - Subscribe" with a form of `userid`,
`appli` (data category), `startdate` and `enddate` (epoch seconds), sometimes `date` and
`deviceid` (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/).
Fetching the data from Withings is a later step; only what to fetch is stored here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final

from gateway.adapters.withings import WITHINGS_USER_SYSTEM
from gateway.errors import BadRequest
from gateway.models import Identifier
from gateway.runtime.zones import ZoneDirectory
from gateway.services.credentials import Principal


class NotificationOutcome(StrEnum):
    """Closed set; also the `outcome` label of `gateway_notifications_total`."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    UNKNOWN_SUBJECT = "unknown_subject"
    INVALID = "invalid"  # counted by the web layer: the service raises BadRequest instead


# Withings notification categories ("appli"), from the Data API notification-categories table.
# A code missing here is still recorded with its number: Withings adds categories, and deciding
# what to fetch for one is the fetcher's job, not a reason to refuse the notification.
WITHINGS_APPLI: Final[Mapping[int, str]] = {
    1: "weight and body composition",
    2: "temperature",
    4: "blood pressure, heart rate, SpO2, temperature",
    16: "activity",
    44: "sleep",
    46: "user actions",
    50: "bed in",
    51: "bed out",
    52: "inflate done",
    53: "no account associated",
    54: "ECG",
    55: "ECG failed",
    58: "glucose",
}

# ASCII digits only: int() would also take "+1", " 1", "1_0" and non-ASCII digits.
_USERID: Final = re.compile(r"[0-9]{1,20}")
_APPLI: Final = re.compile(r"[0-9]{1,4}")
_EPOCH: Final = re.compile(r"[0-9]{1,10}")
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Plausible windows: nothing before 2000 (Withings devices date from 2009; a smaller number is a
# unit mistake), nothing more than a day ahead of our clock (vendor clock skew).
_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_FUTURE_TOLERANCE: Final = timedelta(days=1)
_EPOCH_TEXT = "an integer number of seconds since 1970-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class NotificationResult:
    outcome: NotificationOutcome
    appli: int


@dataclass(frozen=True, slots=True)
class WithingsNotification:
    userid: str = field(repr=False)
    appli: int
    start: datetime
    end: datetime


def parse_withings_notification(
    form: Mapping[str, object], *, now: datetime
) -> WithingsNotification:
    """Validate a notification form; `BadRequest` names the field and the rule, never the value."""
    userid = _text(form, "userid")
    if userid is None or not _USERID.fullmatch(userid):
        raise BadRequest("`userid` is required and must be 1-20 digits")
    appli = _text(form, "appli")
    if appli is None or not _APPLI.fullmatch(appli):
        raise BadRequest("`appli` is required and must be an integer of at most 4 digits")
    start, end = _window(form)
    if start > end:
        raise BadRequest("`startdate` must not be after `enddate`")
    if start < _EARLIEST:
        raise BadRequest("the notification window must not start before 2000-01-01")
    if end > now + _FUTURE_TOLERANCE:
        raise BadRequest("the notification window must not end more than a day in the future")
    # Canonical as the Withings adapter writes integer userids (`str(int)`): both find one subject.
    return WithingsNotification(userid=str(int(userid)), appli=int(appli), start=start, end=end)


async def record_withings_notification(
    zones: ZoneDirectory,
    principal: Principal,
    form: Mapping[str, object],
    *,
    now: datetime | None = None,
) -> NotificationResult:
    """Note a pending fetch for an enrolled subject of the key's zone. The result is for metrics
    and logs only: callers must answer the vendor the same way whatever it is, so that a key
    holder cannot learn whether a userid is enrolled."""
    notification = parse_withings_notification(form, now=now or datetime.now(UTC))

    # Only the key's zone is searched (ARCHITECTURE §2). Unlike ingest, another served zone is
    # never consulted to name it: that answer would reveal where a userid is enrolled.
    zone = zones.require(principal.zone)
    indexes = zone.pseudonyms.blind_indexes(Identifier(WITHINGS_USER_SYSTEM, notification.userid))
    found = await zone.db.subjects.resolve(indexes)
    subject = next((found[i] for i in indexes if i in found), None)
    if subject is None:
        return NotificationResult(NotificationOutcome.UNKNOWN_SUBJECT, notification.appli)

    created = await zone.db.notifications.add_withings(
        subject, notification.appli, notification.start, notification.end
    )
    outcome = NotificationOutcome.RECORDED if created else NotificationOutcome.DUPLICATE
    return NotificationResult(outcome, notification.appli)


def _text(form: Mapping[str, object], name: str) -> str | None:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else None


def _window(form: Mapping[str, object]) -> tuple[datetime, datetime]:
    startdate, enddate = _text(form, "startdate"), _text(form, "enddate")
    if startdate is None and enddate is None and (day := _text(form, "date")) is not None:
        # Some categories send one `date` instead of a window: YYYY-MM-DD (that whole day, taken
        # as UTC so the fetcher recovers the same calendar date) or an epoch instant.
        return _day_window(day)
    return _epoch(startdate, "startdate"), _epoch(enddate, "enddate")


def _epoch(value: str | None, name: str) -> datetime:
    if value is None or not _EPOCH.fullmatch(value):
        raise BadRequest(f"`{name}` is required and must be {_EPOCH_TEXT}")
    return datetime.fromtimestamp(int(value), UTC)


def _day_window(value: str) -> tuple[datetime, datetime]:
    if _EPOCH.fullmatch(value):
        instant = datetime.fromtimestamp(int(value), UTC)
        return instant, instant
    try:
        day = date.fromisoformat(value) if _DAY.fullmatch(value) else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequest(f"`date` must be a YYYY-MM-DD calendar date or {_EPOCH_TEXT}")
    start = datetime.combine(day, time(0), UTC)
    return start, start + timedelta(days=1)
