"""Stored Observation -> the Observation a research extract releases.

An explicit allow-list: only the elements below survive, everything else is dropped and
counted in the report. What is kept, and how:

| element | in the extract |
|---|---|
| resourceType, status | as stored |
| id | a keyed per-study id of the stored id (the caller's `resource_id`) |
| meta | only `security` = PSEUDED (v3-ObservationValue): the data is pseudonymised |
| extension | only the gateway's statistic (an aggregate stays an aggregate) |
| category, code, interpretation | coding system + code + display (`text` is free text: dropped) |
| subject | Patient/<study pseudonym> |
| device | Device/<study device id> (the caller's `device_id`), only when the extract has Devices |
| effective[x], issued | shifted by the subject's offset, cut to the resolution, in UTC "Z" |
| valueQuantity | value, comparator, unit, system, code |
| component | code + valueQuantity + interpretation |

Dropped, among others: identifier (the keyed dedup id), device when the extract has no Devices,
meta.source (vendor and format), meta.lastUpdated (gateway receive time, unshifted), meta.versionId
(the vendor's record version), meta.profile, the offset-assumed extension (offsets are removed)
and any extension the gateway does not define.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Final

from gateway.deid.report import DeidReport, ExclusionReason, ResourceExcluded
from gateway.deid.study import DeidPolicy
from gateway.deid.timestamps import NotShiftable, shift_timestamp
from gateway.fhir.observation import OFFSET_ASSUMED_URL, STATISTIC_URL
from gateway.privacy.deid_keys import STUDY_PSEUDONYM_PATTERN, STUDY_RESOURCE_ID_PATTERN
from gateway.privacy.pseudonyms import DEVICE_PSEUDONYM_PATTERN

LOINC: Final = "http://loinc.org"

# http://terminology.hl7.org/CodeSystem/v3-ObservationValue, code PSEUDED ("pseudonymized"):
# the security label FHIR's security-labels page lists for data whose identifiers are replaced
# by pseudonyms (http://hl7.org/fhir/R4/security-labels.html, "Integrity"/"Obligation" examples).
OBSERVATION_VALUE: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
PSEUDONYMISED_LABEL: Final[Mapping[str, str]] = MappingProxyType(
    {"system": OBSERVATION_VALUE, "code": "PSEUDED", "display": "pseudonymized"}
)

# IEEE 1752.1 / Open mHealth descriptive statistics (omh:descriptive-statistic), the values the
# statistic extension carries (gateway.fhir.observation.STATISTIC_URL).
KNOWN_STATISTICS: Final = frozenset(
    {
        "average", "count", "maximum", "median", "minimum", "standard deviation", "sum",
        "variance", "20th percentile", "80th percentile", "lower quartile", "upper quartile",
        "quartile deviation", "1st quintile", "2nd quintile", "3rd quintile", "4th quintile",
    }
)  # fmt: skip

# Gateway extensions that are known and removed on purpose: counted apart from unknown ones.
_DROPPED_GATEWAY_EXTENSIONS: Final = frozenset({OFFSET_ASSUMED_URL})

# FHIR R4 §2.24.0.1 "id".
_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")

_EFFECTIVE_INSTANTS: Final = ("effectiveDateTime", "effectiveInstant")
_KEPT: Final = frozenset(
    {
        "resourceType",
        "id",
        "meta",
        "extension",
        "status",
        "category",
        "code",
        "subject",
        *_EFFECTIVE_INSTANTS,
        "effectivePeriod",
        "issued",
        "valueQuantity",
        "interpretation",
        "component",
    }
)
_CODING_KEPT: Final = ("system", "code", "display")
_QUANTITY_KEPT: Final = ("value", "comparator", "unit", "system", "code")
_COMPONENT_KEPT: Final = frozenset({"code", "valueQuantity", "interpretation"})
_PERIOD_KEPT: Final = ("start", "end")
_UNKNOWN_URL: Final = "(no url)"


def deidentify_observation(
    resource: Mapping[str, object],
    *,
    study_subject: str,
    shift: timedelta,
    policy: DeidPolicy,
    resource_id: Callable[[str], str],
    device_id: Callable[[str], str] | None = None,
) -> tuple[dict[str, object], DeidReport]:
    """The de-identified copy of a stored Observation, and what was removed from it.

    `study_subject` is the subject's study pseudonym, `shift` its date offset in this study (from
    gateway.privacy.deid_keys), `resource_id` maps the stored id to the study's id for it, and
    `device_id` (None: the reference is dropped) a stored device pseudonym to the study's id of
    that subject's device. Raises
    `ResourceExcluded` when the resource cannot be released at all (another measure than the
    study's, a modifier extension, no shiftable effective time, an unknown statistic)."""
    if not STUDY_PSEUDONYM_PATTERN.fullmatch(study_subject):
        # Guards against passing the zone pseudonym, which would make extracts joinable.
        raise ValueError("study_subject must be a study pseudonym")
    policy.check_shift(shift)
    stored_id = _releasable_id(resource, policy)
    new_id = resource_id(stored_id)
    if not _FHIR_ID.fullmatch(new_id) or new_id == stored_id:
        raise ValueError("resource_id must map the stored id to a different FHIR id")

    cleaner = _Cleaner(policy, shift)
    for name in resource:
        if name not in _KEPT and (name != "device" or device_id is None):
            cleaner.drop(name, resource[name])
    # Every stored meta element goes (source, lastUpdated, versionId, profile, security):
    # the only meta an extract carries is its own security label.
    meta = _fields(resource.get("meta"))
    for name in meta:
        cleaner.drop(f"meta.{name}", meta[name])

    out: dict[str, object] = {
        "resourceType": "Observation",
        "id": new_id,
        "meta": {"security": [dict(PSEUDONYMISED_LABEL)]},
    }
    extensions = cleaner.extensions(resource.get("extension"))
    if extensions:
        out["extension"] = extensions
    if isinstance(status := resource.get("status"), str):
        out["status"] = status
    cleaner.put_concepts(out, "category", resource.get("category"))
    cleaner.put_concept(out, "code", resource.get("code"))
    out["subject"] = {"reference": f"Patient/{study_subject}"}
    cleaner.put_effective(out, resource)
    if "issued" in resource:
        cleaner.put_instant(out, "issued", resource["issued"])
    cleaner.put_quantity(out, "valueQuantity", resource.get("valueQuantity"))
    cleaner.put_concepts(out, "interpretation", resource.get("interpretation"))
    if device_id is not None and "device" in resource:
        cleaner.put_device(out, resource["device"], device_id)
    if "component" in resource:
        components = [
            c for c in map(cleaner.component, _as_list(resource["component"])) if c is not None
        ]
        if components:
            out["component"] = components
    return out, cleaner.report()


class _Cleaner:
    """Copies allowed parts of one resource and counts what it leaves behind."""

    def __init__(self, policy: DeidPolicy, shift: timedelta) -> None:
        self._policy = policy
        self._shift = shift
        self._dropped: Counter[str] = Counter()
        self._dropped_extensions: Counter[str] = Counter()
        self._unknown_extensions: Counter[str] = Counter()

    def report(self) -> DeidReport:
        return DeidReport(
            dropped_elements=self._dropped,
            dropped_extensions=self._dropped_extensions,
            unknown_extensions=self._unknown_extensions,
        )

    def drop(self, path: str, value: object) -> None:
        if path == "extension" or path.endswith(".extension"):
            for extension in _as_list(value):
                self._drop_extension(extension)
        else:
            self._dropped[path] += 1

    def _drop_extension(self, extension: object) -> None:
        url = _fields(extension).get("url")
        url = url if isinstance(url, str) and url else _UNKNOWN_URL
        if url in _DROPPED_GATEWAY_EXTENSIONS:
            self._dropped_extensions[url] += 1
        else:
            self._unknown_extensions[url] += 1

    def extensions(self, value: object) -> list[dict[str, object]]:
        kept: list[dict[str, object]] = []
        for extension in _as_list(value):
            fields = _fields(extension)
            if fields.get("url") != STATISTIC_URL:
                self._drop_extension(extension)
                continue
            statistic = fields.get("valueCode")
            if statistic not in KNOWN_STATISTICS:
                raise ResourceExcluded(ExclusionReason.UNKNOWN_STATISTIC)
            kept.append({"url": STATISTIC_URL, "valueCode": statistic})
        return kept

    def put_effective(self, out: dict[str, object], resource: Mapping[str, object]) -> None:
        for name in _EFFECTIVE_INSTANTS:
            if name in resource:
                out[name] = self._shifted(resource[name])
                return
        period = _as_dict(resource.get("effectivePeriod"))
        if period is None:
            raise ResourceExcluded(ExclusionReason.NO_EFFECTIVE_TIME)
        shifted = {k: self._shifted(period[k]) for k in _PERIOD_KEPT if k in period}
        for name in period:
            if name not in _PERIOD_KEPT:
                self.drop(f"effectivePeriod.{name}", period[name])
        if not shifted:
            raise ResourceExcluded(ExclusionReason.NO_EFFECTIVE_TIME)
        out["effectivePeriod"] = shifted

    def put_instant(self, out: dict[str, object], name: str, value: object) -> None:
        try:
            out[name] = self._shifted(value)
        except ResourceExcluded:
            # `issued` is optional: a value that cannot be shifted is dropped, never kept as is.
            self._dropped[name] += 1

    def _shifted(self, value: object) -> str:
        if not isinstance(value, str):
            raise ResourceExcluded(ExclusionReason.TIME_NOT_SHIFTABLE)
        try:
            return shift_timestamp(value, self._shift, self._policy.timestamp_resolution)
        except NotShiftable:
            raise ResourceExcluded(ExclusionReason.TIME_NOT_SHIFTABLE) from None

    def put_concept(self, out: dict[str, object], name: str, value: object, path: str = "") -> None:
        concept = self._concept(value, path + name)
        if concept is not None:
            out[name] = concept
        elif value is not None:
            self._dropped[path + name] += 1

    def put_concepts(
        self, out: dict[str, object], name: str, value: object, path: str = ""
    ) -> None:
        concepts = [
            c for c in (self._concept(v, path + name) for v in _as_list(value)) if c is not None
        ]
        if concepts:
            out[name] = concepts
        elif value is not None:
            self._dropped[path + name] += 1

    def _concept(self, value: object, path: str) -> dict[str, object] | None:
        fields = _as_dict(value)
        if fields is None:
            return None
        for name in fields:
            if name != "coding":
                self.drop(f"{path}.{name}", fields[name])
        codings: list[dict[str, object]] = []
        for coding in map(_as_dict, _as_list(fields.get("coding"))):
            if coding is None:
                continue
            for name in coding:
                if name not in _CODING_KEPT:
                    self.drop(f"{path}.coding.{name}", coding[name])
            kept = {k: coding[k] for k in _CODING_KEPT if isinstance(coding.get(k), str)}
            if kept:
                codings.append(kept)
        return {"coding": codings} if codings else None

    def put_quantity(
        self, out: dict[str, object], name: str, value: object, path: str = ""
    ) -> None:
        fields = _as_dict(value)
        if fields is None:
            return
        for key in fields:
            if key not in _QUANTITY_KEPT:
                self.drop(f"{path}{name}.{key}", fields[key])
        kept = {
            k: fields[k]
            for k in _QUANTITY_KEPT
            if k in fields and (k != "value" or _is_number(fields[k]))
        }
        if "value" in kept:
            out[name] = kept
        else:
            self._dropped[path + name] += 1

    def put_device(
        self, out: dict[str, object], value: object, device_id: Callable[[str], str]
    ) -> None:
        fields = _fields(value)
        for name in fields:
            if name != "reference":
                self.drop(f"device.{name}", fields[name])
        reference = fields.get("reference")
        stored = reference.removeprefix("Device/") if isinstance(reference, str) else ""
        if not DEVICE_PSEUDONYM_PATTERN.fullmatch(stored):
            self._dropped["device"] += 1
            return
        new_id = device_id(stored)
        if not STUDY_RESOURCE_ID_PATTERN.fullmatch(new_id):
            raise ValueError("device_id must map a device pseudonym to a study resource id")
        out["device"] = {"reference": f"Device/{new_id}"}

    def component(self, value: object) -> dict[str, object] | None:
        fields = _as_dict(value)
        if fields is None:
            self._dropped["component"] += 1
            return None
        for name in fields:
            if name not in _COMPONENT_KEPT:
                self.drop(f"component.{name}", fields[name])
        out: dict[str, object] = {}
        self.put_concept(out, "code", fields.get("code"), "component.")
        if "code" not in out:
            # component.code is required (1..1): without it the value means nothing.
            self._dropped["component"] += 1
            return None
        self.put_quantity(out, "valueQuantity", fields.get("valueQuantity"), "component.")
        self.put_concepts(out, "interpretation", fields.get("interpretation"), "component.")
        return out


def _releasable_id(resource: Mapping[str, object], policy: DeidPolicy) -> str:
    """The stored id of a resource this study may release; `ResourceExcluded` otherwise."""
    if resource.get("resourceType") != "Observation":
        raise ResourceExcluded(ExclusionReason.NOT_AN_OBSERVATION)
    if _has_modifier_extension(resource):
        raise ResourceExcluded(ExclusionReason.MODIFIER_EXTENSION)
    if not _loinc_codes(resource.get("code")) & policy.allowed_codes:
        raise ResourceExcluded(ExclusionReason.MEASURE_NOT_IN_STUDY)
    stored_id = resource.get("id")
    if not isinstance(stored_id, str) or not stored_id:
        raise ResourceExcluded(ExclusionReason.NO_ID)
    return stored_id


def _has_modifier_extension(resource: Mapping[str, object]) -> bool:
    # Root and component are the BackboneElements that are kept; a modifier extension inside an
    # element that is dropped anyway (e.g. referenceRange) goes with it.
    if "modifierExtension" in resource:
        return True
    return any("modifierExtension" in _fields(c) for c in _as_list(resource.get("component")))


def _loinc_codes(code: object) -> set[str]:
    codes: set[str] = set()
    for coding in map(_fields, _as_list(_fields(code).get("coding"))):
        value = coding.get("code")
        if coding.get("system") == LOINC and isinstance(value, str):
            codes.add(value)
    return codes


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_dict(value: object) -> Mapping[str, object] | None:
    return value if isinstance(value, Mapping) else None


def _fields(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
