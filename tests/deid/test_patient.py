"""The extract's Patient and Device, age bands (HIPAA Safe Harbor top-coding) and device model
families."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.patient import Patient
from hypothesis import given
from hypothesis import strategies as st

from gateway.deid import (
    AGE_BAND_URL,
    SITE_URL,
    age_band,
    deidentify_device,
    deidentify_patient,
    model_family,
)
from gateway.deid.age import age_in_years
from gateway.models import Sex
from tests.deid.common import STUDY_SUBJECT, ZONE_SUBJECT

ENROLLED = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("birth", "band"),
    [
        (date(1986, 11, 30), "40-44"),  # 40 on the day
        (date(1986, 12, 1), "35-39"),  # 40 tomorrow
        (date(1981, 12, 1), "40-44"),
        (date(2026, 11, 30), "0-4"),
        (date(1937, 12, 1), "85-89"),  # 89
        (date(1936, 11, 30), "90+"),  # 90
        (date(1900, 1, 1), "90+"),
    ],
)
def test_an_age_band_is_the_five_year_band_at_enrolment(birth: date, band: str) -> None:
    assert age_band(birth, ENROLLED) == band


def test_a_leap_day_birthday_counts_from_the_first_of_march() -> None:
    born = date(2000, 2, 29)
    assert age_in_years(born, date(2025, 2, 28)) == 24
    assert age_in_years(born, date(2025, 3, 1)) == 25
    assert age_in_years(born, date(2024, 2, 29)) == 24


def test_a_band_never_crosses_ninety() -> None:
    assert age_band(date(1942, 11, 30), ENROLLED, width=7) == "84-89"
    assert age_band(date(1946, 11, 30), ENROLLED, width=10) == "80-89"


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=ENROLLED),
    width=st.integers(min_value=1, max_value=20),
)
def test_the_band_holds_the_age_and_is_at_most_width_years_wide(birth: date, width: int) -> None:
    band = age_band(birth, ENROLLED, width)
    age = age_in_years(birth, ENROLLED)
    if age >= 90:
        assert band == "90+"
    else:
        low, high = map(int, band.split("-"))
        assert low <= age <= high < 90
        assert high - low < width
        assert low % width == 0


def test_a_birth_date_after_enrolment_is_refused() -> None:
    with pytest.raises(ValueError, match="after"):
        age_band(ENROLLED + timedelta(days=1), ENROLLED)


@pytest.mark.parametrize("site", ["hainan-general", None, "*"])
@pytest.mark.parametrize("sex", list(Sex))
def test_the_patient_is_valid_fhir_with_only_the_released_quasi_identifiers(
    site: str | None, sex: Sex
) -> None:
    patient: dict[str, Any] = deidentify_patient(
        study_subject=STUDY_SUBJECT, age_band="40-44", sex=sex, site=site
    )
    Patient.model_validate_json(orjson.dumps(patient))
    assert patient["id"] == STUDY_SUBJECT
    assert patient["gender"] == sex.value
    expected = [{"url": AGE_BAND_URL, "valueString": "40-44"}]
    if site == "hainan-general":
        expected.append({"url": SITE_URL, "valueString": site})
    assert patient["extension"] == expected
    assert set(patient) == {"resourceType", "id", "meta", "extension", "gender"}
    assert patient["meta"]["security"][0]["code"] == "PSEUDED"


def test_the_top_band_is_a_valid_patient_too() -> None:
    patient = deidentify_patient(study_subject=STUDY_SUBJECT, age_band="90+", sex=Sex.FEMALE)
    Patient.model_validate(patient)


@pytest.mark.parametrize(
    ("subject", "band"), [(ZONE_SUBJECT, "40-44"), (STUDY_SUBJECT, "1971-03-09")]
)
def test_a_zone_pseudonym_or_a_birth_date_is_refused(subject: str, band: str) -> None:
    with pytest.raises(ValueError, match="must"):
        deidentify_patient(study_subject=subject, age_band=band, sex=Sex.MALE)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("Watch6,2", "Apple Watch"),
        ("Watch7,11", "Apple Watch"),
        ("iPhone14,2", "iPhone"),
        ("BPM Connect", "Withings BPM"),
        ("bpm connect", "Withings BPM"),
        ("45", "Withings BPM"),  # Withings Heart v2 numeric model id
        ("Body+", "Withings scale"),
        ("Body Scan", "Withings scale"),
        ("5", "Withings scale"),
        ("Aura Sensor V2", "Withings sleep sensor"),
        ("1055", "phone app"),  # Google Fit feed, not Withings hardware
        ("Watch 5", "other"),
        ("SN-CANARY-77702", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_device_models_become_their_family(model: str | None, family: str) -> None:
    assert model_family(model) == family


def test_the_extract_device_holds_the_model_family_and_whose_it_is_nothing_else() -> None:
    study_device = "e1-" + "a" * 32
    device = deidentify_device(
        study_device=study_device, study_subject=STUDY_SUBJECT, model="BPM Connect"
    )
    Device.model_validate(device)
    assert device["type"] == {"text": "Withings BPM"}
    assert device["patient"] == {"reference": f"Patient/{STUDY_SUBJECT}"}
    unknown = deidentify_device(
        study_device=study_device, study_subject=STUDY_SUBJECT, model="CANARY-MODEL-9"
    )
    assert b"CANARY" not in orjson.dumps(unknown)
    with pytest.raises(ValueError, match="study pseudonym"):
        deidentify_device(study_device=study_device, study_subject=ZONE_SUBJECT, model=None)
    with pytest.raises(ValueError, match="study resource id"):
        deidentify_device(study_device="d1-" + "a" * 32, study_subject=STUDY_SUBJECT, model=None)
