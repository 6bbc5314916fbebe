"""De-identification of research extracts: pure functions, no I/O and no keys.

Keyed values (study pseudonyms, study resource ids, date offsets) come from
`gateway.privacy.deid_keys`; this package applies them under a study's `DeidPolicy`:

    stored Observation --deidentify_observation--> allow-listed, shifted, re-identified copy
    enrolment (birth date, sex, site) --age_band, k_anonymity--> deidentify_patient
    a subject's device (its model) --model_family--> deidentify_device
"""

from __future__ import annotations

from gateway.deid.age import age_band
from gateway.deid.device import deidentify_device
from gateway.deid.kanon import ANY_SITE, KResult, QuasiIdentifiers, k_anonymity
from gateway.deid.observation import deidentify_observation
from gateway.deid.patient import AGE_BAND_URL, SITE_URL, deidentify_patient
from gateway.deid.report import DeidReport, ExclusionReason, ResourceExcluded
from gateway.deid.study import DeidPolicy, TimestampResolution
from gateway.devices import MODEL_FAMILIES, Vocabulary, model_family

__all__ = [
    "AGE_BAND_URL",
    "ANY_SITE",
    "MODEL_FAMILIES",
    "SITE_URL",
    "DeidPolicy",
    "DeidReport",
    "ExclusionReason",
    "KResult",
    "QuasiIdentifiers",
    "ResourceExcluded",
    "TimestampResolution",
    "Vocabulary",
    "age_band",
    "deidentify_device",
    "deidentify_observation",
    "deidentify_patient",
    "k_anonymity",
    "model_family",
]
