"""Birth date -> age band at enrolment; the birth date itself never enters an extract."""

from __future__ import annotations

import re
from datetime import date
from typing import Final

# HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C): ages over 89 are aggregated into a single
# category of 90 or older.
TOP_CODED_AGE: Final = 90
TOP_BAND: Final = f"{TOP_CODED_AGE}+"
AGE_BAND_PATTERN: Final = re.compile(r"(0|[1-9][0-9]?)-(0|[1-9][0-9]?)|90\+")


def age_in_years(birth_date: date, at: date) -> int:
    """Completed years at `at`: the age goes up on the birthday (29 February: on 1 March in
    years without one)."""
    if at < birth_date:
        raise ValueError("the birth date is after the reference date")
    had_birthday = (at.month, at.day) >= (birth_date.month, birth_date.day)
    return at.year - birth_date.year - (0 if had_birthday else 1)


def age_band(birth_date: date, at: date, width: int = 5) -> str:
    """The `width`-year band holding the age at `at`, e.g. "40-44"; "90+" from 90 on. Bands start
    at multiples of `width`; the band below 90 ends at 89 when `width` does not divide 90."""
    if width < 1:
        raise ValueError("the band width must be at least 1 year")
    age = age_in_years(birth_date, at)
    if age >= TOP_CODED_AGE:
        return TOP_BAND
    low = age - age % width
    high = min(low + width - 1, TOP_CODED_AGE - 1)
    return f"{low}-{high}"
