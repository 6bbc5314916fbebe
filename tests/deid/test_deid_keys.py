"""Study pseudonyms and date offsets (gateway.privacy.deid_keys): deterministic under one key,
unlinkable across studies, offsets never 0 and within the study's bound."""

from __future__ import annotations

import base64
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.privacy import KeyPurpose, ZoneKeyRing
from gateway.privacy.deid_keys import (
    STUDY_RESOURCE_ID_PATTERN,
    date_shift,
    date_shift_version,
    parse_study_version,
    study_device_id,
    study_pseudonym,
    study_resource_id,
)
from tests.deid.common import RECIPIENT, RING, STUDY, fixed_ring

FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
YEAR = timedelta(days=365)

# Zone pseudonyms are opaque text to these functions; their shape does not matter.
subjects = st.text(min_size=1, max_size=40)
studies = st.text(min_size=1, max_size=30)
bounds = st.integers(min_value=7, max_value=3 * 365).map(lambda d: timedelta(days=d))

# 500 zone pseudonyms, fixed so the statistical checks below are deterministic.
SUBJECTS = [f"s1-subject{i:05d}" for i in range(500)]


@pytest.fixture(scope="module")
def loaded_rings(tmp_path_factory: pytest.TempPathFactory) -> tuple[ZoneKeyRing, ZoneKeyRing]:
    path: Path = tmp_path_factory.mktemp("deid-keys") / "cn.keys.json"
    ZoneKeyRing.generate("cn").write(path)
    return ZoneKeyRing.load(path, expected_zone="cn"), ZoneKeyRing.load(path, expected_zone="cn")


@given(subject=subjects, study=studies, bound=bounds, keep_weekday=st.booleans())
def test_the_same_study_and_subject_always_get_the_same_offset(
    loaded_rings: tuple[ZoneKeyRing, ZoneKeyRing],
    subject: str,
    study: str,
    bound: timedelta,
    keep_weekday: bool,
) -> None:
    first, second = loaded_rings
    offsets = {
        date_shift(ring, study, subject, bound=bound, keep_weekday=keep_weekday)
        for ring in (first, second, first)
    }
    assert len(offsets) == 1


@given(subject=subjects, study=studies)
def test_the_same_study_recipient_and_subject_always_get_the_same_pseudonym(
    loaded_rings: tuple[ZoneKeyRing, ZoneKeyRing], subject: str, study: str
) -> None:
    first, second = loaded_rings
    assert study_pseudonym(first, study, RECIPIENT, subject) == study_pseudonym(
        second, study, RECIPIENT, subject
    )


@given(subject=subjects, study=studies, bound=bounds, keep_weekday=st.booleans())
def test_an_offset_is_never_zero_and_never_beyond_the_bound(
    subject: str, study: str, bound: timedelta, keep_weekday: bool
) -> None:
    offset = date_shift(RING, study, subject, bound=bound, keep_weekday=keep_weekday)
    assert offset
    assert abs(offset) <= bound
    unit = timedelta(weeks=1) if keep_weekday else timedelta(days=1)
    assert offset % unit == timedelta(0)


def test_a_one_day_bound_gives_minus_or_plus_one_day() -> None:
    offsets = {
        date_shift(RING, STUDY, s, bound=timedelta(days=1), keep_weekday=False) for s in SUBJECTS
    }
    assert offsets == {timedelta(days=-1), timedelta(days=1)}


def test_offsets_are_spread_evenly_over_the_whole_range() -> None:
    # 3 days each way: 6 outcomes, ~83 each of 500; a 5-sigma band (sigma ~8.3).
    counts = Counter(
        date_shift(RING, STUDY, s, bound=timedelta(days=3), keep_weekday=False).days
        for s in SUBJECTS
    )
    assert set(counts) == {-3, -2, -1, 1, 2, 3}
    assert all(40 <= n <= 125 for n in counts.values()), counts


def test_two_studies_give_a_subject_independent_offsets() -> None:
    first = [date_shift(RING, "study-a", s, bound=YEAR, keep_weekday=False) for s in SUBJECTS]
    second = [date_shift(RING, "study-b", s, bound=YEAR, keep_weekday=False) for s in SUBJECTS]
    equal = sum(a == b for a, b in zip(first, second, strict=True))
    assert equal <= len(SUBJECTS) // 100  # chance alone: 500/730 ~ 0.7 expected
    differences = Counter(b - a for a, b in zip(first, second, strict=True))
    # Not one study's offsets plus a constant: the difference is all over the place.
    assert differences.most_common(1)[0][1] <= 10
    assert len(differences) > 300


def test_offsets_depend_on_the_key() -> None:
    other = fixed_ring(seed=1)
    same = sum(
        date_shift(RING, STUDY, s, bound=YEAR, keep_weekday=False)
        == date_shift(other, STUDY, s, bound=YEAR, keep_weekday=False)
        for s in SUBJECTS
    )
    assert same <= 5


def test_an_offset_can_be_reproduced_with_an_earlier_key_version() -> None:
    rotated = RING.with_new_version(KeyPurpose.DATE_SHIFT)
    assert date_shift_version(rotated) == 2
    before = [date_shift(RING, STUDY, s, bound=YEAR, keep_weekday=False) for s in SUBJECTS[:50]]
    after = [date_shift(rotated, STUDY, s, bound=YEAR, keep_weekday=False) for s in SUBJECTS[:50]]
    again = [
        date_shift(rotated, STUDY, s, bound=YEAR, keep_weekday=False, version=1)
        for s in SUBJECTS[:50]
    ]
    assert again == before
    assert after != before


@pytest.mark.parametrize(
    ("bound", "keep_weekday"),
    [(timedelta(hours=23), False), (timedelta(days=6), True), (timedelta(0), False)],
)
def test_a_bound_shorter_than_one_step_is_refused(bound: timedelta, keep_weekday: bool) -> None:
    with pytest.raises(ValueError, match="bound"):
        date_shift(RING, STUDY, "s1-x", bound=bound, keep_weekday=keep_weekday)


@given(subject=subjects, first=studies, second=studies)
def test_two_studies_never_give_a_subject_the_same_pseudonym(
    subject: str, first: str, second: str
) -> None:
    a = study_pseudonym(RING, first, RECIPIENT, subject)
    b = study_pseudonym(RING, second, RECIPIENT, subject)
    assert (a == b) == (first == second)
    assert FHIR_ID.fullmatch(a)
    assert a.startswith("r1-")


def _bits(pseudonym: str) -> int:
    return int.from_bytes(base64.b32decode(pseudonym.split("-", 1)[1].upper()), "big")


def test_study_pseudonyms_are_not_derivable_from_each_other() -> None:
    a = [study_pseudonym(RING, "study-a", RECIPIENT, s) for s in SUBJECTS]
    b = [study_pseudonym(RING, "study-b", RECIPIENT, s) for s in SUBJECTS]
    assert not set(a) & set(b)
    assert len(set(a)) == len(set(b)) == len(SUBJECTS)
    # Unrelated 160-bit values differ in ~80 bits on average, and XOR to no common pattern:
    # no fixed mask or offset turns one study's pseudonym into the other's.
    distances = [(_bits(x) ^ _bits(y)).bit_count() for x, y in zip(a, b, strict=True)]
    assert 75 <= sum(distances) / len(distances) <= 85
    assert len({_bits(x) ^ _bits(y) for x, y in zip(a, b, strict=True)}) == len(SUBJECTS)
    assert len({(_bits(y) - _bits(x)) % 2**160 for x, y in zip(a, b, strict=True)}) == len(SUBJECTS)


def test_two_recipients_of_one_study_get_different_pseudonyms() -> None:
    assert study_pseudonym(RING, STUDY, "team-a", "s1-x") != study_pseudonym(
        RING, STUDY, "team-b", "s1-x"
    )


def test_study_pseudonyms_and_resource_ids_need_the_key() -> None:
    other = fixed_ring(seed=1)
    assert study_pseudonym(RING, STUDY, RECIPIENT, "s1-x") != study_pseudonym(
        other, STUDY, RECIPIENT, "s1-x"
    )
    assert study_resource_id(RING, STUDY, RECIPIENT, "o1-x") != study_resource_id(
        other, STUDY, RECIPIENT, "o1-x"
    )


def test_a_resource_id_is_never_the_subject_pseudonym_of_the_same_text() -> None:
    # Same key, separate labels and prefixes: the two kinds of value can never collide.
    pseudonym = study_pseudonym(RING, STUDY, RECIPIENT, "x")
    resource = study_resource_id(RING, STUDY, RECIPIENT, "x")
    assert pseudonym[3:] != resource[3:]
    assert (pseudonym[0], resource[0]) == ("r", "e")


def test_values_carry_their_key_version() -> None:
    rotated = RING.with_new_version(KeyPurpose.STUDY_PSEUDONYM)
    value = study_pseudonym(rotated, STUDY, RECIPIENT, "s1-x")
    assert value.startswith("r2-")
    assert parse_study_version(value) == 2
    assert parse_study_version(study_resource_id(RING, STUDY, RECIPIENT, "o1-x")) == 1
    with pytest.raises(ValueError, match="not a study"):
        parse_study_version("s1-abcdefghijklmnopqrstuvwxyz234567")


@pytest.mark.parametrize("empty", ["study_id", "recipient", "zone_pseudonym"])
def test_empty_inputs_are_refused(empty: str) -> None:
    fields = {"study_id": STUDY, "recipient": RECIPIENT, "zone_pseudonym": "s1-x"} | {empty: ""}
    with pytest.raises(ValueError, match=empty):
        study_pseudonym(RING, **fields)


def test_new_key_rings_have_study_and_date_shift_keys() -> None:
    ring = ZoneKeyRing.generate("eu")
    keys = {ring.key(KeyPurpose.STUDY_PSEUDONYM), ring.key(KeyPurpose.DATE_SHIFT)}
    assert len(keys) == 2
    assert not keys & {
        ring.key(p)
        for p in KeyPurpose
        if p not in {KeyPurpose.STUDY_PSEUDONYM, KeyPurpose.DATE_SHIFT}
    }


def test_a_device_gets_one_study_id_per_subject_study_and_recipient() -> None:
    device = "d1-" + "q" * 32
    first = study_device_id(RING, STUDY, RECIPIENT, "s1-" + "a" * 32, device)
    assert STUDY_RESOURCE_ID_PATTERN.fullmatch(first)
    assert first == study_device_id(RING, STUDY, RECIPIENT, "s1-" + "a" * 32, device)  # stable
    others = {
        study_device_id(RING, STUDY, RECIPIENT, "s1-" + "b" * 32, device),  # a second subject
        study_device_id(RING, "another-study", RECIPIENT, "s1-" + "a" * 32, device),
        study_device_id(RING, STUDY, "Another Org", "s1-" + "a" * 32, device),
        study_resource_id(RING, STUDY, RECIPIENT, device),
    }
    assert first not in others
    assert len(others) == 4
    with pytest.raises(ValueError, match="device"):
        study_device_id(RING, STUDY, RECIPIENT, "s1-" + "a" * 32, "")
