"""Lexical rules for text that arrives in a request, each decided here once.

Handlers, adapters and the search parser call these before a value is used, so nothing that
PostgreSQL or `int()` would refuse gets that far:

- `is_fhir_id`: the R4 `id` datatype, `[A-Za-z0-9\\-\\.]{1,64}` (datatypes.html#id).
- `ascii_int`, `is_ascii_decimal`: numbers in ASCII digits only. `str.isdigit()`, `int()`,
  `float()` and `Decimal()` also take other scripts' digits (Arabic-Indic U+0661, fullwidth
  U+FF11) and superscripts (U+00B3, which `isdigit()` accepts and `int()` then refuses); no wire
  format this gateway reads writes numbers that way.
- `is_fhir_string`: no control character below U+0020 except tab, line feed and carriage return,
  the R4 `string` rule (datatypes.html#string: "Strings SHALL NOT contain Unicode character
  points below 32, except for u0009 (horizontal tab), u0010 (carriage return) and u0013 (line
  feed)"). Every text value here is compared with, or becomes, a FHIR string; and it covers NUL,
  which PostgreSQL `text` and `jsonb` cannot hold (SQLSTATE 22021 / 22P05).
"""

from __future__ import annotations

import re
from typing import Final

FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ASCII_DIGITS: Final = re.compile(r"[0-9]+")
# What Decimal() and float() read, less other scripts' digits, spaces, `_`, nan and infinity.
_ASCII_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NOT_IN_FHIR_STRING: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# 18 digits always fit a PostgreSQL bigint (at most 9 223 372 036 854 775 807).
BIGINT_DIGITS: Final = 18


def is_fhir_id(text: str) -> bool:
    return FHIR_ID.fullmatch(text) is not None


def ascii_int(text: str, *, max_digits: int = BIGINT_DIGITS) -> int | None:
    """The non-negative integer `text` writes in 1 to `max_digits` ASCII digits, else None."""
    if len(text) > max_digits or _ASCII_DIGITS.fullmatch(text) is None:
        return None
    return int(text)


def is_ascii_decimal(text: str) -> bool:
    """A decimal number in ASCII digits, optional sign and exponent; no spaces, no `_`."""
    return _ASCII_DECIMAL.fullmatch(text) is not None


def is_fhir_string(text: str) -> bool:
    return _NOT_IN_FHIR_STRING.search(text) is None
