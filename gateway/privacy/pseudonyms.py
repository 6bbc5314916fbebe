"""Keyed pseudonyms: HMAC-SHA256 (RFC 2104) over length-prefixed fields under a per-purpose key.

Every value is `<prefix><key version>-<32 base32 chars>`: a valid FHIR id
(`[A-Za-z0-9\\-\\.]{1,64}`, FHIR R4 §2.24.0.1 "id") that names the key version it was made with.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Final

from gateway.models import Identifier
from gateway.privacy._primitives import KeyedHash, b32_lower, encode_fields
from gateway.privacy.keys import KeyPurpose, ZoneKeyRing

# 160 bits: collisions stay negligible (birthday bound ~2^80) and the base32 text needs no
# padding (RFC 4648 §6), 32 characters exactly.
_DIGEST_BYTES: Final = 20
_PSEUDONYM_BODY: Final = r"([1-9][0-9]{0,8})-[a-z2-7]{32}"  # key version, base32 digest
_PSEUDONYM_PATTERN: Final = re.compile(r"[sdbo]" + _PSEUDONYM_BODY)
DEVICE_PSEUDONYM_PATTERN: Final = re.compile("d" + _PSEUDONYM_BODY)

# Domain labels keep values of different functions apart even if a key were ever shared.
# /2: made from a random enrolment id, no longer from the first identifier, so a
# re-enrolment after erasure gets a new pseudonym that nothing links to the erased one.
_SUBJECT_LABEL: Final = "wearable-gateway/subject-pseudonym/2"
# 128 random bits (NIST SP 800-90A via `secrets`): two enrolments never share an id.
ENROLMENT_ID_BYTES: Final = 16
_DEVICE_LABEL: Final = "wearable-gateway/device-pseudonym/1"
_BLIND_INDEX_LABEL: Final = "wearable-gateway/blind-index/1"
_DEDUP_LABEL: Final = "wearable-gateway/dedup/1"
# Keys from a vendor's own record identity: a label of their own, so no record key can ever
# produce the key of a reading identified by device and time (or the other way round).
_DEDUP_RECORD_LABEL: Final = "wearable-gateway/dedup-record/1"


class _Signer:
    __slots__ = ("_hash", "_prefix")

    def __init__(
        self, prefix: str, keyring: ZoneKeyRing, purpose: KeyPurpose, version: int | None = None
    ) -> None:
        version = keyring.active_version(purpose) if version is None else version
        self._prefix = f"{prefix}{version}-"
        self._hash = KeyedHash(keyring.key(purpose, version))

    def sign(self, *fields: str) -> str:
        digest = self._hash.digest(encode_fields(*fields))[:_DIGEST_BYTES]
        return self._prefix + b32_lower(digest)


class Pseudonymiser:
    """Deterministic pseudonyms for one zone, under the active version of each purpose's key:
    the same key ring and inputs give the same values in every process and after restarts."""

    __slots__ = ("_blind_index", "_blind_indexes", "_dedup", "_device", "_subject", "_zone")

    def __init__(self, keyring: ZoneKeyRing) -> None:
        self._zone = keyring.zone
        self._subject = _Signer("s", keyring, KeyPurpose.SUBJECT_PSEUDONYM)
        self._device = _Signer("d", keyring, KeyPurpose.DEVICE_PSEUDONYM)
        self._blind_index = _Signer("b", keyring, KeyPurpose.BLIND_INDEX)
        # Lookups try every version the ring holds, active first: identifiers indexed before a
        # blind-index rotation stay findable (README "Key management", the crosswalk).
        self._blind_indexes = [self._blind_index] + [
            _Signer("b", keyring, KeyPurpose.BLIND_INDEX, version)
            for version in sorted(keyring.keys[KeyPurpose.BLIND_INDEX], reverse=True)
            if version != keyring.active_version(KeyPurpose.BLIND_INDEX)
        ]
        self._dedup = _Signer("o", keyring, KeyPurpose.DEDUP)

    @property
    def zone(self) -> str:
        return self._zone

    def subject_pseudonym(self, zone: str, site: str, enrolment_id: str) -> str:
        """The pseudonym of one enrolment in `zone` (which must be this key ring's zone).

        `enrolment_id` is fresh randomness (`new_enrolment_id`) that is kept nowhere: the value
        is stored at enrolment and found again through the blind index, never recomputed, so
        nothing about the subject (identifiers included) can reproduce it. A subject erased and
        enrolled again is a new, unlinkable subject (GDPR art. 17)."""
        if zone != self._zone:
            # A pseudonym for one zone made with another zone's key would break residency.
            raise ValueError(f"this pseudonymiser serves zone {self._zone}, not {zone}")
        return self._subject.sign(_SUBJECT_LABEL, zone, site, enrolment_id)

    def device_pseudonym(self, vendor: str, device_id: str) -> str:
        return self._device.sign(_DEVICE_LABEL, self._zone, vendor, device_id)

    def blind_index(self, identifier: Identifier) -> str:
        """A lookup key for (system, value), used exactly as given, that reveals neither. Made
        with the active version: this is the value to store for a new enrolment."""
        return self._blind_index.sign(
            _BLIND_INDEX_LABEL, self._zone, identifier.system, identifier.value
        )

    def blind_indexes(self, identifier: Identifier) -> list[str]:
        """The identifier's blind index under every version the ring holds, active first: the
        values to look a subject up by, whichever version it was enrolled under."""
        return [
            signer.sign(_BLIND_INDEX_LABEL, self._zone, identifier.system, identifier.value)
            for signer in self._blind_indexes
        ]

    def dedup_key(
        self,
        *,
        vendor: str,
        device_id: str,
        subject: str,
        measure: str,
        start: datetime,
        end: datetime | None,
        statistic: str | None = None,
        record_key: str | None = None,
    ) -> str:
        """The idempotency key of a reading, also its Observation id. Times are compared as UTC
        instants, so one reading sent with different UTC offsets gets one key. Aggregates (a
        minimum and a maximum over one period) differ by their statistic.

        With `record_key` (the vendor's own record identity, stable across edits) the key is made
        from (vendor, subject, measure, record_key[, statistic]) alone: device and times are not
        part of it, so an edited record (a corrected time, a new version) keeps its id, and two
        distinct records at the same instant get two."""
        if record_key is not None:
            record_fields = [vendor, subject, measure, record_key]
            if statistic is not None:
                record_fields.append(statistic)
            return self._dedup.sign(_DEDUP_RECORD_LABEL, self._zone, *record_fields)
        # "" cannot be confused with an instant: ISO 8601 text is never empty.
        end_text = "" if end is None else _utc_instant(end)
        fields = [vendor, device_id, subject, measure, _utc_instant(start), end_text]
        if statistic is not None:
            # Appended only when present, so keys of raw readings stay what they always were.
            fields.append(statistic)
        return self._dedup.sign(_DEDUP_LABEL, self._zone, *fields)


def new_enrolment_id() -> str:
    """A random enrolment id for `Pseudonymiser.subject_pseudonym` (hex, 128 bits)."""
    return secrets.token_hex(ENROLMENT_ID_BYTES)


def parse_version(pseudonym: str) -> int:
    """The key version a value from `Pseudonymiser` was made with."""
    match = _PSEUDONYM_PATTERN.fullmatch(pseudonym)
    if match is None:
        raise ValueError("not a gateway pseudonym")
    return int(match.group(1))


def _utc_instant(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("reading times must be timezone-aware")
    try:
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:
        raise ValueError("reading time cannot be expressed in UTC") from None
