"""The Patient a research extract releases: a study pseudonym, sex, age band and (unless
generalised) the enrolling site. No name, identifier, birth date, address or contact ever
reaches it: they are not inputs."""

from __future__ import annotations

from typing import Final

from gateway.deid.age import AGE_BAND_PATTERN
from gateway.deid.kanon import ANY_SITE
from gateway.deid.observation import PSEUDONYMISED_LABEL
from gateway.models import Sex
from gateway.privacy.deid_keys import STUDY_PSEUDONYM_PATTERN

# The subject's age at enrolment as a band ("40-44", "90+"), in place of Patient.birthDate.
AGE_BAND_URL: Final = "urn:wearable-gateway:extension:age-band"
# The enrolling site, one of the k-anonymity quasi-identifiers; left out once generalised.
SITE_URL: Final = "urn:wearable-gateway:extension:site"


def deidentify_patient(
    *, study_subject: str, age_band: str, sex: Sex, site: str | None = None
) -> dict[str, object]:
    """The extract's Patient for one subject, from the quasi-identifiers the k-anonymity gate
    released (`site` None or "*": not shown)."""
    if not STUDY_PSEUDONYM_PATTERN.fullmatch(study_subject):
        raise ValueError("study_subject must be a study pseudonym")
    if not AGE_BAND_PATTERN.fullmatch(age_band):
        raise ValueError("age_band must look like '40-44' or '90+'")
    extensions: list[dict[str, object]] = [{"url": AGE_BAND_URL, "valueString": age_band}]
    if site is not None and site != ANY_SITE:
        extensions.append({"url": SITE_URL, "valueString": site})
    return {
        "resourceType": "Patient",
        "id": study_subject,
        "meta": {"security": [dict(PSEUDONYMISED_LABEL)]},
        "extension": extensions,
        "gender": Sex(sex).value,
    }
