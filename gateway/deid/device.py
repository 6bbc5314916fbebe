"""The Device a research extract releases: one per (subject, device), with the study's id for it,
the subject's study pseudonym and the model family (gateway.devices). No serial, vendor
device id, model, manufacturer, name or version ever reaches it: they are not inputs."""

from __future__ import annotations

from gateway.deid.observation import PSEUDONYMISED_LABEL
from gateway.devices import MODEL_FAMILIES, Vocabulary, model_family
from gateway.privacy.deid_keys import STUDY_PSEUDONYM_PATTERN, STUDY_RESOURCE_ID_PATTERN


def deidentify_device(
    *,
    study_device: str,
    study_subject: str,
    model: str | None,
    table: Vocabulary = MODEL_FAMILIES,
) -> dict[str, object]:
    """The extract's Device: `study_device` from `study_device_id`, the model family as
    `type.text` (no standard code system names these families)."""
    if not STUDY_RESOURCE_ID_PATTERN.fullmatch(study_device):
        raise ValueError("study_device must be a study resource id")
    if not STUDY_PSEUDONYM_PATTERN.fullmatch(study_subject):
        raise ValueError("study_subject must be a study pseudonym")
    return {
        "resourceType": "Device",
        "id": study_device,
        "meta": {"security": [dict(PSEUDONYMISED_LABEL)]},
        "type": {"text": model_family(model, table)},
        "patient": {"reference": f"Patient/{study_subject}"},
    }
