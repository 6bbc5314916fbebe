"""Shifting FHIR timestamps: parse, move by the subject's offset, cut to the study's resolution,
render in UTC.

Only full date-times with a UTC offset are shifted (FHIR R4 dateTime with a time, and instant,
must carry one: http://hl7.org/fhir/R4/datatypes.html#dateTime). A date, a year-month or a year
has no instant to move and no zone to normalise, so it is not shiftable: the caller decides what
to do with it (drop the element, or leave the resource out).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from gateway.deid.study import TimestampResolution

_DATE_TIME: Final = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})T(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})"
)


class NotShiftable(ValueError):
    """The text is not a full date-time with a UTC offset (or moves out of the calendar)."""


def parse_instant(text: str) -> datetime:
    """A FHIR dateTime/instant with a time and an offset, as an aware datetime."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise NotShiftable("not a date-time with a UTC offset")
    zone = match["zone"]
    if zone == "Z":
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    try:
        day = datetime.strptime(match["date"], "%Y-%m-%d")  # noqa: DTZ007 - zone set below
        return day.replace(
            hour=int(match["h"]),
            minute=int(match["m"]),
            second=int(match["s"]),
            microsecond=int(fraction),
            tzinfo=tz,
        )
    except ValueError:
        # 24:00, a leap second (":60", allowed by FHIR's regex), 30 February, ...
        raise NotShiftable("not a valid calendar date-time") from None


def shift_timestamp(text: str, shift: timedelta, resolution: TimestampResolution) -> str:
    """`text` moved by `shift`, cut to `resolution` and rendered in UTC ("…Z"): the offset of the
    original is dropped, since it reveals where the subject was."""
    try:
        moved = parse_instant(text).astimezone(UTC) + shift
    except OverflowError:
        raise NotShiftable("shifted out of the calendar") from None
    return render_utc(resolution.truncate(moved))


def render_utc(moment: datetime) -> str:
    """An aware time as FHIR instant text in UTC with whole seconds, e.g. 2026-11-30T00:00:07Z.
    (isoformat, not strftime: %Y is not zero-padded below year 1000 on every platform.)"""
    utc = moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    return utc.isoformat(timespec="seconds") + "Z"
