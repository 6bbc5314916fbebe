"""A study's de-identification policy: what its extracts keep, and how coarsely."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from gateway.devices import MODEL_FAMILIES, Vocabulary

_DAY = timedelta(days=1)
_WEEK = timedelta(weeks=1)


class TimestampResolution(StrEnum):
    """How much of the time of day an extract keeps. Shifts are whole days, so truncating before
    or after shifting gives the same instant."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    def truncate(self, moment: datetime) -> datetime:
        """`moment` in UTC, cut down to this resolution."""
        utc = moment.astimezone(UTC).replace(microsecond=0)
        if self is TimestampResolution.SECOND:
            return utc
        if self is TimestampResolution.MINUTE:
            return utc.replace(second=0)
        if self is TimestampResolution.HOUR:
            return utc.replace(minute=0, second=0)
        return utc.replace(hour=0, minute=0, second=0)


@dataclass(frozen=True, slots=True)
class DeidPolicy:
    """What one study's extracts keep.

    `date_shift_bound`: the largest date offset, either way. A keyed per-subject shift hides
    calendar dates but keeps every interval within a subject; it is a method for HIPAA Expert
    Determination (45 CFR 164.514(b)(1)), not Safe Harbor, which would keep years only.
    `keep_weekday`: offsets are whole weeks, so weekdays (in UTC) survive the shift.
    `timestamp_resolution`: how much of the time of day is kept.
    `k`: the k of the k-anonymity gate on (age band, sex, site).
    `allowed_codes`: the LOINC codes of the measures the study was approved for; Observations of
    other measures are left out.
    `model_families`: the device model -> family table.
    """

    date_shift_bound: timedelta
    allowed_codes: frozenset[str]
    keep_weekday: bool = False
    timestamp_resolution: TimestampResolution = TimestampResolution.SECOND
    k: int = 5
    age_band_width: int = 5
    generalise_site: bool = True
    model_families: Vocabulary = field(default=MODEL_FAMILIES)

    def __post_init__(self) -> None:
        unit = self.shift_unit
        if self.date_shift_bound < unit:
            raise ValueError(f"date_shift_bound must be at least {unit.days} day(s)")
        if not self.allowed_codes:
            raise ValueError("a study must allow at least one measure code")
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if self.age_band_width < 1:
            raise ValueError("age_band_width must be at least 1 year")

    @property
    def shift_unit(self) -> timedelta:
        """Offsets are whole multiples of this: a week keeps weekdays, a day keeps times of day."""
        return _WEEK if self.keep_weekday else _DAY

    def check_shift(self, shift: timedelta) -> None:
        """Refuse an offset this policy could not have produced (0, out of bound, or not whole
        days/weeks), so a caller cannot mix up policies or pass an unshifted subject through."""
        if not shift or abs(shift) > self.date_shift_bound or shift % self.shift_unit:
            raise ValueError("the date shift does not fit this study's policy")
