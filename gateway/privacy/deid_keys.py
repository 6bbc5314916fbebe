"""Keyed values of research extracts: study pseudonyms, study resource ids and date
offsets. The de-identification itself (`gateway.deid`) is pure and never sees a key; it takes the
values made here.

- A study pseudonym is HMAC-SHA256 (RFC 2104) of (study, recipient, zone pseudonym) under the
  zone's `study-pseudonym` key: two studies, or two recipients of one study, get unrelated values,
  so their extracts cannot be joined on ids, and re-running an export gives the same values.
- A date offset is the output of the same PRF under the separate `date-shift` key, mapped
  uniformly onto the whole days (or weeks) of [-bound, +bound] without 0: one offset per
  (study, subject), whatever the recipient, so every timestamp of the subject moves together.
"""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count
from typing import Final

from gateway.privacy._primitives import KeyedHash, b32_lower, encode_fields
from gateway.privacy.keys import KeyPurpose, ZoneKeyRing

# As gateway.privacy.pseudonyms: 160 bits in 32 base32 characters, `<prefix><version>-…`, a FHIR
# id (FHIR R4 §2.24.0.1 "id": [A-Za-z0-9\-\.]{1,64}). Prefixes differ from the zone values
# (s, d, b, o) so a study value can never be mistaken for, or looked up as, a zone value.
_DIGEST_BYTES: Final = 20
STUDY_PSEUDONYM_PATTERN: Final = re.compile(r"r([1-9][0-9]{0,8})-[a-z2-7]{32}")
STUDY_RESOURCE_ID_PATTERN: Final = re.compile(r"e([1-9][0-9]{0,8})-[a-z2-7]{32}")

_STUDY_PSEUDONYM_LABEL: Final = "wearable-gateway/study-pseudonym/1"
# Same key as study pseudonyms (both are per-(study, recipient) renamings), its own label.
_STUDY_RESOURCE_LABEL: Final = "wearable-gateway/study-resource-id/1"
_STUDY_DEVICE_LABEL: Final = "wearable-gateway/study-device-id/1"
_DATE_SHIFT_LABEL: Final = "wearable-gateway/date-shift/1"

_DAY: Final = timedelta(days=1)
_WEEK: Final = timedelta(weeks=1)
_CHUNK_BYTES: Final = 8
_CHUNK_RANGE: Final = 1 << (8 * _CHUNK_BYTES)


def study_pseudonym(
    keyring: ZoneKeyRing, study_id: str, recipient: str, zone_pseudonym: str
) -> str:
    """The subject's pseudonym in the extracts of `study_id` sent to `recipient`:
    `r<key version>-<32 base32 chars>`, a FHIR id that reveals neither the zone pseudonym nor the
    pseudonyms of other studies or recipients."""
    _require_text(study_id=study_id, recipient=recipient, zone_pseudonym=zone_pseudonym)
    return _sign(
        "r",
        keyring,
        _STUDY_PSEUDONYM_LABEL,
        keyring.zone,
        study_id,
        recipient,
        zone_pseudonym,
    )


def study_resource_id(keyring: ZoneKeyRing, study_id: str, recipient: str, resource_id: str) -> str:
    """The id a stored resource (an Observation's keyed dedup id) gets in that study's extracts
    for `recipient`: `e<key version>-<32 base32 chars>`. Stable across re-runs; unlinkable to the
    stored id and to the id of the same resource in another study's extract."""
    _require_text(study_id=study_id, recipient=recipient, resource_id=resource_id)
    return _sign(
        "e",
        keyring,
        _STUDY_RESOURCE_LABEL,
        keyring.zone,
        study_id,
        recipient,
        resource_id,
    )


def study_device_id(
    keyring: ZoneKeyRing, study_id: str, recipient: str, zone_pseudonym: str, device: str
) -> str:
    """The id of one subject's device (`device`: its zone pseudonym) in that study's extracts
    for `recipient`, shaped like a study resource id. Per subject: a device two subjects share
    (a household scale) gets two unrelated ids, so the extract does not reveal who shares one."""
    _require_text(
        study_id=study_id, recipient=recipient, zone_pseudonym=zone_pseudonym, device=device
    )
    return _sign(
        "e",
        keyring,
        _STUDY_DEVICE_LABEL,
        keyring.zone,
        study_id,
        recipient,
        zone_pseudonym,
        device,
    )


def date_shift(
    keyring: ZoneKeyRing,
    study_id: str,
    zone_pseudonym: str,
    *,
    bound: timedelta,
    keep_weekday: bool,
    version: int | None = None,
) -> timedelta:
    """The subject's date offset in `study_id`: a whole number of days (whole weeks when
    `keep_weekday`), uniform over [-bound, +bound] without 0, the same on every call with the
    same key. `version` picks the date-shift key version (the active one when None), so an export
    re-run after a key rotation can reproduce the offsets recorded in its manifest."""
    _require_text(study_id=study_id, zone_pseudonym=zone_pseudonym)
    unit = _WEEK if keep_weekday else _DAY
    steps = bound // unit
    if steps < 1:
        raise ValueError(f"the date-shift bound must be at least {unit.days} day(s)")
    hasher = KeyedHash(keyring.key(KeyPurpose.DATE_SHIFT, version))
    # 2 * steps outcomes: -steps..-1 and 1..steps; 0 is not one of them, so no subject's dates
    # are ever left unshifted.
    drawn = _uniform_below(
        hasher, (_DATE_SHIFT_LABEL, keyring.zone, study_id, zone_pseudonym), 2 * steps
    )
    offset = drawn - steps if drawn < steps else drawn - steps + 1
    return offset * unit


def date_shift_version(keyring: ZoneKeyRing) -> int:
    """The date-shift key version `date_shift` uses by default, for an export's manifest."""
    return keyring.active_version(KeyPurpose.DATE_SHIFT)


def parse_study_version(value: str) -> int:
    """The key version inside a study pseudonym or study resource id."""
    match = STUDY_PSEUDONYM_PATTERN.fullmatch(value) or STUDY_RESOURCE_ID_PATTERN.fullmatch(value)
    if match is None:
        raise ValueError("not a study pseudonym or study resource id")
    return int(match.group(1))


def _uniform_below(hasher: KeyedHash, fields: tuple[str, ...], limit: int) -> int:
    # Rejection sampling over 64-bit chunks of the PRF output: exactly uniform over [0, limit),
    # where a plain modulo would favour small values (by at most limit / 2^64, but exactly is as
    # cheap). A chunk is rejected with probability < limit / 2^64, so the loop all but never
    # needs a second block; the block counter keeps it deterministic when it does.
    accept_below = _CHUNK_RANGE - _CHUNK_RANGE % limit
    for block in count():
        digest = hasher.digest(encode_fields(*fields, str(block)))
        for start in range(0, len(digest), _CHUNK_BYTES):
            value = int.from_bytes(digest[start : start + _CHUNK_BYTES], "big")
            if value < accept_below:
                return value % limit
    raise AssertionError("unreachable")  # pragma: no cover - count() never ends


def _sign(prefix: str, keyring: ZoneKeyRing, *fields: str) -> str:
    digest = KeyedHash(keyring.key(KeyPurpose.STUDY_PSEUDONYM)).digest(encode_fields(*fields))
    text = b32_lower(digest[:_DIGEST_BYTES])
    return f"{prefix}{keyring.active_version(KeyPurpose.STUDY_PSEUDONYM)}-{text}"


def _require_text(**values: str) -> None:
    for name, value in values.items():
        if not value:
            raise ValueError(f"{name} must not be empty")
