from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.models import Identifier
from gateway.privacy import KeyPurpose, Pseudonymiser, ZoneKeyRing, parse_version

# FHIR R4 §2.24.0.1 (datatypes, "id").
FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")

RING = ZoneKeyRing.generate("cn")
PSEUDONYMISER = Pseudonymiser(RING)
START = datetime(2025, 3, 1, 8, 30, 15, 250000, tzinfo=UTC)
# Subject pseudonyms are made from a random enrolment id since issue 6 (unlinkable
# re-enrolment); a fixed one pins the encoding.
ENROLMENT_ID = "0123456789abcdef0123456789abcdef"


def fixed_ring() -> ZoneKeyRing:
    keys = {p: {1: bytes([i]) * 32} for i, p in enumerate(KeyPurpose)}
    return ZoneKeyRing(zone="cn", keys=keys, active=dict.fromkeys(KeyPurpose, 1))


def dedup(pseudonymiser: Pseudonymiser = PSEUDONYMISER, **overrides: object) -> str:
    fields: dict[str, object] = {
        "vendor": "acme",
        "device_id": "dev-1",
        "subject": "s1-abc",
        "measure": "heart-rate",
        "start": START,
        "end": None,
    } | overrides
    return pseudonymiser.dedup_key(**fields)  # type: ignore[arg-type]


def digest_part(value: str) -> str:
    return value.split("-", 1)[1]


def test_values_are_pinned_for_fixed_keys() -> None:
    """Changing the encoding would orphan every stored pseudonym, so the exact values are fixed."""
    pseudonymiser = Pseudonymiser(fixed_ring())
    identifier = Identifier(system="urn:oid:1.2.36.146.595.217.0.1", value="12345")
    assert pseudonymiser.subject_pseudonym("cn", "site-1", ENROLMENT_ID) == PINNED["subject"]
    assert pseudonymiser.device_pseudonym("acme", "dev-1") == PINNED["device"]
    assert pseudonymiser.blind_index(identifier) == PINNED["blind"]
    assert dedup(pseudonymiser) == PINNED["dedup"]


PINNED = {
    "subject": "s1-nipykccha2x65ddjap4xaqf7vt5ivnqn",  # encoding /2
    "device": "d1-vpionscze77pujcd5mwprglj7i3wbt3k",
    "blind": "b1-kapnp5voqdk3qhzq7kg5y3olkybl6iqi",
    "dedup": "o1-crrad2qaxowtvmdbdktyy32gzcyscw7w",
}


def test_subject_pseudonym_is_hmac_sha256_of_the_documented_encoding() -> None:
    """Recomputed with the standard library alone, from the format in the module docstring."""
    fields = ("wearable-gateway/subject-pseudonym/2", "cn", "site-1", "é 1")
    message = b"".join(struct.pack(">I", len(f.encode())) + f.encode() for f in fields)
    key = fixed_ring().key(KeyPurpose.SUBJECT_PSEUDONYM)
    digest = hmac.new(key, message, hashlib.sha256).digest()[:20]
    expected = "s1-" + base64.b32encode(digest).decode().lower()
    pseudonymiser = Pseudonymiser(fixed_ring())
    assert pseudonymiser.subject_pseudonym("cn", "site-1", "é 1") == expected


@given(zone_site=st.text(), system=st.text(), value=st.text())
def test_subject_pseudonyms_are_fhir_ids_carrying_version_1(
    zone_site: str, system: str, value: str
) -> None:
    pseudonym = PSEUDONYMISER.subject_pseudonym("cn", zone_site, system + value)
    assert FHIR_ID.fullmatch(pseudonym)
    assert re.fullmatch(r"s1-[a-z2-7]{32}", pseudonym)
    assert parse_version(pseudonym) == 1


@given(vendor=st.text(), device_id=st.text())
def test_device_pseudonyms_are_fhir_ids_carrying_version_1(vendor: str, device_id: str) -> None:
    pseudonym = PSEUDONYMISER.device_pseudonym(vendor, device_id)
    assert FHIR_ID.fullmatch(pseudonym)
    assert re.fullmatch(r"d1-[a-z2-7]{32}", pseudonym)
    assert parse_version(pseudonym) == 1


@given(system=st.text(), value=st.text())
def test_blind_indexes_are_fhir_ids_carrying_version_1(system: str, value: str) -> None:
    index = PSEUDONYMISER.blind_index(Identifier(system, value))
    assert FHIR_ID.fullmatch(index)
    assert re.fullmatch(r"b1-[a-z2-7]{32}", index)
    assert parse_version(index) == 1


@given(
    texts=st.tuples(st.text(), st.text(), st.text(), st.text()),
    # A day's margin at both ends: every such time, at any offset, is an instant in UTC.
    # (Hypothesis takes naive bounds and adds the zones itself.)
    start=st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.timezones(),
    ),
    end=st.none() | st.datetimes(timezones=st.just(UTC)),
)
def test_dedup_keys_are_fhir_ids_carrying_version_1(
    texts: tuple[str, str, str, str], start: datetime, end: datetime | None
) -> None:
    vendor, device_id, subject, measure = texts
    key = PSEUDONYMISER.dedup_key(
        vendor=vendor, device_id=device_id, subject=subject, measure=measure, start=start, end=end
    )
    assert FHIR_ID.fullmatch(key)
    assert re.fullmatch(r"o1-[a-z2-7]{32}", key)
    assert parse_version(key) == 1


@pytest.mark.parametrize(
    "start",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=3))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-3))),
    ],
)
def test_a_time_with_no_utc_instant_is_a_value_error_not_an_overflow(start: datetime) -> None:
    with pytest.raises(ValueError, match="UTC"):
        PSEUDONYMISER.dedup_key(
            vendor="v", device_id="d", subject="s", measure="m", start=start, end=None
        )


def test_values_survive_writing_and_reloading_the_key_ring(tmp_path: Path) -> None:
    ring = ZoneKeyRing.generate("cn")
    ring.write(tmp_path / "keys.json")
    before = Pseudonymiser(ring)
    after = Pseudonymiser(ZoneKeyRing.load(tmp_path / "keys.json", expected_zone="cn"))
    identifier = Identifier("http://hospital.example/mrn", "MRN-1")
    assert after.subject_pseudonym("cn", "site", ENROLMENT_ID) == before.subject_pseudonym(
        "cn", "site", ENROLMENT_ID
    )
    assert after.device_pseudonym("acme", "d") == before.device_pseudonym("acme", "d")
    assert after.blind_index(identifier) == before.blind_index(identifier)
    assert dedup(after) == dedup(before)


def test_another_key_ring_gives_other_values() -> None:
    other = Pseudonymiser(ZoneKeyRing.generate("cn"))
    identifier = Identifier("http://hospital.example/mrn", "MRN-1")
    assert other.subject_pseudonym("cn", "site", ENROLMENT_ID) != PSEUDONYMISER.subject_pseudonym(
        "cn", "site", ENROLMENT_ID
    )
    assert other.device_pseudonym("acme", "d") != PSEUDONYMISER.device_pseudonym("acme", "d")
    assert other.blind_index(identifier) != PSEUDONYMISER.blind_index(identifier)
    assert dedup(other) != dedup()


@given(system=st.text(), value=st.text())
def test_purposes_never_produce_the_same_digest(system: str, value: str) -> None:
    identifier = Identifier(system, value)
    digests = {
        digest_part(PSEUDONYMISER.subject_pseudonym("cn", "", ENROLMENT_ID)),
        digest_part(PSEUDONYMISER.blind_index(identifier)),
        digest_part(PSEUDONYMISER.device_pseudonym(system, value)),
    }
    assert len(digests) == 3


@given(left=st.text(), right=st.text(), cut=st.integers(min_value=0))
def test_moving_a_field_boundary_changes_the_value(left: str, right: str, cut: int) -> None:
    joined = left + right
    split = cut % (len(joined) + 1)
    other_left, other_right = joined[:split], joined[split:]
    same = (left, right) == (other_left, other_right)
    assert (
        PSEUDONYMISER.device_pseudonym(left, right)
        == PSEUDONYMISER.device_pseudonym(other_left, other_right)
    ) == same
    assert (
        PSEUDONYMISER.blind_index(Identifier(left, right))
        == PSEUDONYMISER.blind_index(Identifier(other_left, other_right))
    ) == same


def test_length_prefixes_separate_ab_c_from_a_bc() -> None:
    assert PSEUDONYMISER.device_pseudonym("ab", "c") != PSEUDONYMISER.device_pseudonym("a", "bc")
    assert PSEUDONYMISER.blind_index(Identifier("ab", "c")) != PSEUDONYMISER.blind_index(
        Identifier("a", "bc")
    )
    assert dedup(vendor="ab", device_id="c") != dedup(vendor="a", device_id="bc")


def test_blind_index_uses_system_and_value_exactly_as_given() -> None:
    base = PSEUDONYMISER.blind_index(Identifier("urn:sys", "ABC"))
    assert PSEUDONYMISER.blind_index(Identifier("urn:sys", "abc")) != base
    assert PSEUDONYMISER.blind_index(Identifier("urn:sys", "ABC ")) != base
    assert PSEUDONYMISER.blind_index(Identifier("urn:sys/", "ABC")) != base


def test_subject_pseudonym_depends_on_the_site() -> None:
    assert PSEUDONYMISER.subject_pseudonym("cn", "a", ENROLMENT_ID) != (
        PSEUDONYMISER.subject_pseudonym("cn", "b", ENROLMENT_ID)
    )


def test_subject_pseudonym_refuses_a_zone_the_key_ring_is_not_for() -> None:
    with pytest.raises(ValueError, match="serves zone cn, not eu"):
        PSEUDONYMISER.subject_pseudonym("eu", "site", ENROLMENT_ID)


@given(start=st.datetimes(timezones=st.timezones()), offset_minutes=st.integers(-14 * 60, 14 * 60))
def test_one_instant_gives_one_dedup_key_whatever_its_offset(
    start: datetime, offset_minutes: int
) -> None:
    elsewhere = start.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert dedup(start=start, end=start) == dedup(start=elsewhere, end=elsewhere)


def test_same_instant_at_plus_eight_and_plus_one_gives_one_dedup_key() -> None:
    beijing = datetime(2025, 3, 1, 16, 30, 15, 250000, tzinfo=timezone(timedelta(hours=8)))
    paris = datetime(2025, 3, 1, 9, 30, 15, 250000, tzinfo=timezone(timedelta(hours=1)))
    assert dedup(start=beijing) == dedup(start=paris) == dedup(start=START)


@pytest.mark.parametrize(
    "change",
    [
        {"start": START + timedelta(microseconds=1)},
        {"end": START + timedelta(minutes=1)},
        {"measure": "steps"},
        {"subject": "s1-abd"},
        {"vendor": "other"},
        {"device_id": "dev-2"},
    ],
)
def test_every_field_of_a_reading_changes_its_dedup_key(change: dict[str, Any]) -> None:
    assert dedup(**change) != dedup()


@pytest.mark.parametrize("field", ["start", "end"])
def test_dedup_key_refuses_naive_times(field: str) -> None:
    naive: Any = START.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        dedup(**{field: naive})


def test_rotated_key_gives_values_carrying_the_new_version() -> None:
    rotated = Pseudonymiser(RING.with_new_version(KeyPurpose.SUBJECT_PSEUDONYM))
    identifier = Identifier("urn:sys", "1")
    pseudonym = rotated.subject_pseudonym("cn", "site", ENROLMENT_ID)
    assert pseudonym.startswith("s2-")
    assert parse_version(pseudonym) == 2
    assert digest_part(pseudonym) != digest_part(
        PSEUDONYMISER.subject_pseudonym("cn", "site", ENROLMENT_ID)
    )
    assert rotated.blind_index(identifier) == PSEUDONYMISER.blind_index(identifier)


@pytest.mark.parametrize(
    "value",
    ["", "s1", "x1-" + "a" * 32, "s0-" + "a" * 32, "s1-" + "a" * 31, "s1-" + "A" * 32, "s01-"],
)
def test_parse_version_refuses_values_it_did_not_make(value: str) -> None:
    with pytest.raises(ValueError, match="not a gateway pseudonym"):
        parse_version(value)


def test_aggregates_over_one_period_differ_by_statistic_and_raw_keys_do_not_change() -> None:
    ring = ZoneKeyRing.generate("cn")
    pseudonyms = Pseudonymiser(ring)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    common = {
        "vendor": "v",
        "device_id": "d",
        "subject": "s1-x",
        "measure": "heart-rate",
        "start": start,
        "end": end,
    }
    minimum = pseudonyms.dedup_key(**common, statistic="minimum")
    maximum = pseudonyms.dedup_key(**common, statistic="maximum")
    assert minimum != maximum
    assert pseudonyms.dedup_key(**common) == pseudonyms.dedup_key(**common, statistic=None)
    assert pseudonyms.dedup_key(**common) not in (minimum, maximum)


# --- keys from a vendor's record identity -------------------------------------------


def test_record_keys_are_hmac_sha256_of_vendor_subject_measure_record_under_their_label() -> None:
    """Recomputed with the standard library alone: device and times are not part of the key."""
    fields = ("wearable-gateway/dedup-record/1", "cn", "acme", "s1-abc", "heart-rate", "uuid-1")
    message = b"".join(struct.pack(">I", len(f.encode())) + f.encode() for f in fields)
    digest = hmac.new(fixed_ring().key(KeyPurpose.DEDUP), message, hashlib.sha256).digest()[:20]
    expected = "o1-" + base64.b32encode(digest).decode().lower()
    assert dedup(Pseudonymiser(fixed_ring()), record_key="uuid-1") == expected


def test_a_record_key_makes_device_and_time_irrelevant() -> None:
    keyed = dedup(record_key="uuid-1")
    assert dedup(record_key="uuid-1", device_id="dev-2", start=START + timedelta(hours=1)) == keyed
    assert dedup(record_key="uuid-1", end=START + timedelta(minutes=1)) == keyed


def test_two_records_at_one_instant_on_one_device_get_two_keys() -> None:
    assert dedup(record_key="uuid-1") != dedup(record_key="uuid-2")


@pytest.mark.parametrize(
    "change",
    [{"vendor": "other"}, {"subject": "s1-abd"}, {"measure": "steps"}, {"statistic": "maximum"}],
)
def test_every_field_of_a_record_key_changes_it(change: dict[str, Any]) -> None:
    assert dedup(record_key="uuid-1", **change) != dedup(record_key="uuid-1")


def test_a_record_key_never_gives_the_key_of_a_reading_identified_by_device_and_time() -> None:
    # Same texts in the same positions: only the domain label keeps the two kinds apart.
    instant = START.isoformat(timespec="microseconds")
    record = dedup(vendor="acme", device_id="s1-abc", subject="heart-rate", record_key=instant)
    assert record != dedup()
    assert dedup(record_key="uuid-1") != dedup()


@given(record_key=st.text(min_size=1), statistic=st.none() | st.text())
def test_record_keys_are_fhir_ids_carrying_version_1(
    record_key: str, statistic: str | None
) -> None:
    key = dedup(record_key=record_key, statistic=statistic)
    assert FHIR_ID.fullmatch(key)
    assert parse_version(key) == 1
