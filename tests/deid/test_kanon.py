"""The k-anonymity gate: generalise the site, then suppress what is still too rare."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.deid import ANY_SITE, QuasiIdentifiers, k_anonymity


def cohort(*groups: tuple[str, str, str, int]) -> dict[str, QuasiIdentifiers]:
    subjects: dict[str, QuasiIdentifiers] = {}
    for band, sex, site, count in groups:
        for _ in range(count):
            subjects[f"r1-{len(subjects):04d}"] = QuasiIdentifiers(band, sex, site)
    return subjects


def test_groups_of_k_or_more_are_kept_as_they_are() -> None:
    subjects = cohort(("40-44", "female", "a", 5), ("40-44", "male", "a", 7))
    result = k_anonymity(subjects, 5)
    assert result.kept == frozenset(subjects)
    assert not result.suppressed
    assert not result.generalised
    assert dict(result.groups) == {
        QuasiIdentifiers("40-44", "female", "a"): 5,
        QuasiIdentifiers("40-44", "male", "a"): 7,
    }


def test_small_groups_lose_their_site_and_are_kept_when_that_makes_k() -> None:
    subjects = cohort(
        ("40-44", "female", "a", 3), ("40-44", "female", "b", 2), ("40-44", "female", "c", 6)
    )
    result = k_anonymity(subjects, 5)
    assert len(result.kept) == 11
    assert len(result.generalised) == 5
    assert not result.suppressed
    assert dict(result.groups) == {
        QuasiIdentifiers("40-44", "female", "c"): 6,
        QuasiIdentifiers("40-44", "female", ANY_SITE): 5,
    }
    assert {result.released[s].site for s in result.generalised} == {ANY_SITE}


def test_subjects_still_in_groups_smaller_than_k_are_suppressed_and_counted() -> None:
    subjects = cohort(
        ("40-44", "female", "a", 5),
        ("90+", "male", "a", 2),
        ("90+", "male", "b", 1),
        ("20-24", "other", "a", 1),
    )
    result = k_anonymity(subjects, 5)
    assert len(result.suppressed) == 4
    assert len(result.kept) == 5
    assert not result.generalised
    assert result.kept | result.suppressed == frozenset(subjects)


def test_without_generalisation_small_groups_are_suppressed_at_once() -> None:
    subjects = cohort(("40-44", "female", "a", 3), ("40-44", "female", "b", 2))
    result = k_anonymity(subjects, 5, generalise_site=False)
    assert len(result.suppressed) == 5
    assert not result.kept


def test_k_of_one_releases_everyone_unchanged() -> None:
    subjects = cohort(("40-44", "female", "a", 1), ("90+", "male", "b", 1))
    result = k_anonymity(subjects, 1)
    assert result.kept == frozenset(subjects)
    assert dict(result.released) == subjects


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="k"):
        k_anonymity({}, 0)


quasi_identifiers = st.builds(
    QuasiIdentifiers,
    age_band=st.sampled_from(["20-24", "40-44", "60-64", "90+"]),
    sex=st.sampled_from(["female", "male"]),
    site=st.sampled_from(["a", "b", "c"]),
)


@given(
    subjects=st.dictionaries(st.text(min_size=1, max_size=8), quasi_identifiers, max_size=60),
    k=st.integers(min_value=1, max_value=8),
    generalise=st.booleans(),
)
def test_every_released_combination_is_shared_by_at_least_k_subjects(
    subjects: dict[str, QuasiIdentifiers], k: int, generalise: bool
) -> None:
    result = k_anonymity(subjects, k, generalise_site=generalise)
    assert result.kept | result.suppressed == frozenset(subjects)
    assert not result.kept & result.suppressed
    assert result.generalised <= result.kept
    assert set(result.released) == result.kept
    released = Counter(result.released.values())
    assert dict(released) == dict(result.groups)
    assert all(count >= k for count in released.values())
    for subject, qi in result.released.items():
        original = subjects[subject]
        assert (qi.age_band, qi.sex) == (original.age_band, original.sex)
        assert qi.site == (ANY_SITE if subject in result.generalised else original.site)
