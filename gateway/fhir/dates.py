"""FHIR R4 date search semantics (https://hl7.org/fhir/R4/search.html#date and #prefix), pure.

A search value is a *range*: the whole interval its precision names. `2024` is the year,
`2024-03` the month, `2024-03-05` the day, `2024-03-05T10:00` the minute, and so on; a value with
seconds (or fractions) is still the interval of its last given digit. A value without a UTC offset
is read in the server's time zone ("If no timezone is specified, the server's timezone is
assumed"), which for this gateway is UTC. A search range is half-open: [low, high).

A resource's effective[x] is a range too: effectiveDateTime t is [t, t], effectivePeriod is
[start, end] (closed: the stored instants are the bounds themselves).

The prefixes, as the R4 table defines them, with S = [sl, sh) the search range and R = [rl, rh]:

    eq  S fully contains R                          sl <= rl and rh < sh
    ne  S does not fully contain R                  not eq
    gt  the range above S overlaps R                rh >= sh
    lt  the range below S overlaps R                rl < sl
    ge  gt, or S fully contains R                   rh >= sh or rl >= sl
    le  lt, or S fully contains R                   rl < sl or rh < sh
    sa  R starts after S (no overlap, above)        rl >= sh
    eb  R ends before S (no overlap, below)         rh < sl
    ap  S widened by 10% of its distance to now, on each side, overlaps R
                                                    rl < sh' and rh >= sl'

`ap` is left to the server by the spec ("the recommended value ... would be 10% of the gap between
now and the date"); the search range keeps its own width, so `ap2024-03-05` is at least that day.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Final


class Prefix(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    SA = "sa"
    EB = "eb"
    AP = "ap"


class InvalidDate(ValueError):
    """A search value that is not a FHIR date, dateTime or instant."""


# FHIR R4 dateTime regex (datatypes.html#dateTime), loosened to allow minutes without seconds,
# which the search page's examples use ("2013-01-14T10:00").
_DATE: Final = re.compile(
    r"(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<offset>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
_PREFIXED: Final = re.compile(r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?(?P<value>.+)")
_AP_FRACTION: Final = 0.1


@dataclass(frozen=True, slots=True)
class DateRange:
    """A half-open interval [low, high) of aware UTC instants."""

    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class DateCondition:
    """One `date=` value: a prefix and the range its text names."""

    prefix: Prefix
    range: DateRange


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=total // 12, month=total % 12 + 1)


def parse_date_range(text: str) -> DateRange:
    """The range a FHIR date/dateTime/instant search value names."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise InvalidDate("not a FHIR date: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss]")
    parts = match.groupdict()
    zone = UTC
    if parts["offset"] and parts["offset"] != "Z":
        sign = 1 if parts["offset"][0] == "+" else -1
        hours, minutes = int(parts["offset"][1:3]), int(parts["offset"][4:6])
        if hours > 14 or minutes > 59:
            raise InvalidDate("UTC offsets are -14:00 to +14:00")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    fraction = parts["fraction"] or ""
    try:
        low = datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int((fraction + "000000")[:6]) if fraction else 0,
            tzinfo=zone,
        )
    except ValueError as exc:
        raise InvalidDate("not a calendar date or time") from exc
    if parts["hour"] is not None and parts["offset"] is None:
        # R4 datatypes: "If hours and minutes are specified, a time zone SHALL be populated";
        # search.html lets the server assume its own: UTC here (documented in the README).
        low = low.replace(tzinfo=UTC)
    if fraction:
        high = low + timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    elif parts["second"] is not None:
        high = low + timedelta(seconds=1)
    elif parts["minute"] is not None:
        high = low + timedelta(minutes=1)
    elif parts["day"] is not None:
        high = low + timedelta(days=1)
    elif parts["month"] is not None:
        high = _add_months(low, 1)
    else:
        high = low.replace(year=low.year + 1)
    return DateRange(low.astimezone(UTC), high.astimezone(UTC))


def parse_date_condition(text: str, *, now: datetime) -> DateCondition:
    """`[prefix]value` -> condition; `ap` is widened here, against `now`."""
    match = _PREFIXED.fullmatch(text)
    if match is None:
        raise InvalidDate("empty date value")
    prefix = Prefix(match["prefix"] or "eq")
    found = parse_date_range(match["value"])
    if prefix is Prefix.AP:
        distance = max(abs(now - found.low), abs(now - found.high))
        margin = distance * _AP_FRACTION
        found = DateRange(found.low - margin, found.high + margin)
    return DateCondition(prefix, found)


# (search low, search high, resource low, resource high) -> match; the table above, as code.
_TESTS: Final[Mapping[Prefix, Callable[[datetime, datetime, datetime, datetime], bool]]] = {
    Prefix.EQ: lambda sl, sh, rl, rh: sl <= rl and rh < sh,
    Prefix.NE: lambda sl, sh, rl, rh: not (sl <= rl and rh < sh),
    Prefix.GT: lambda sl, sh, rl, rh: rh >= sh,
    Prefix.LT: lambda sl, sh, rl, rh: rl < sl,
    Prefix.GE: lambda sl, sh, rl, rh: rh >= sh or rl >= sl,
    Prefix.LE: lambda sl, sh, rl, rh: rl < sl or rh < sh,
    Prefix.SA: lambda sl, sh, rl, rh: rl >= sh,
    Prefix.EB: lambda sl, sh, rl, rh: rh < sl,
    Prefix.AP: lambda sl, sh, rl, rh: rl < sh and rh >= sl,
}


def matches(condition: DateCondition, start: datetime, end: datetime | None) -> bool:
    """Whether a resource range [start, end or start] meets `condition` (the table above).
    The SQL in `gateway.storage.fhir_search` states the same predicates; tests compare both."""
    test = _TESTS[condition.prefix]
    return test(condition.range.low, condition.range.high, start, end or start)
