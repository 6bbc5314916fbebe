"""FHIR R4 resources the read API builds besides Observations: Bundles (searchset, history), the
pseudonymous Patient and Device, `_elements` subsets. Plain dicts for orjson; stored resources
are spliced in as `orjson.Fragment`s, never parsed and re-serialised, unless `_elements` asks
for a subset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import orjson

from gateway.fhir.observation import VITAL_SIGNS_PROFILES

DEVICE_IDENTIFIER_SYSTEM: Final = "urn:wearable-gateway:device"
# R4 search.html §2.1.1.8.6 "_elements": "the server SHOULD mark the resources with the tag
# SUBSETTED to ensure that the incomplete resource is not actually used to overwrite a complete
# resource".
SUBSETTED: Final = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
# Elements that are always returned (resourceType, id, meta: search.html "_elements": "mandatory
# elements" and the tag above).
_ALWAYS: Final = ("resourceType", "id", "meta")
# search.html §2.1.1.8.6: "Servers SHOULD always return mandatory elements whether they are
# requested or not". The elements of cardinality 1..* in R4 (observation.html: status, code;
# Patient and Device have none) per resource type served.
_MANDATORY: Final[Mapping[str, tuple[str, ...]]] = {
    "Observation": ("status", "code"),
    "Patient": (),
    "Device": (),
}
# What the R4 vital-signs profile (observation-vitalsigns.html) adds: category (VSCat), subject,
# effective[x] (1..1), and vs-2's value[x], dataAbsentReason or component; so a subsetted
# vital-signs Observation still conforms to the profile it claims in meta.profile.
_VITAL_SIGNS_MANDATORY: Final = (
    "category",
    "subject",
    "effectiveDateTime",
    "effectivePeriod",
    "valueQuantity",
    "dataAbsentReason",
    "component",
)


def _mandatory(resource: Mapping[str, object]) -> tuple[str, ...]:
    kept = _ALWAYS + _MANDATORY.get(str(resource.get("resourceType")), ())
    meta = resource.get("meta")
    profiles = meta.get("profile", []) if isinstance(meta, dict) else []
    if isinstance(profiles, list) and VITAL_SIGNS_PROFILES.intersection(map(str, profiles)):
        kept += _VITAL_SIGNS_MANDATORY
    return kept


@dataclass(frozen=True, slots=True)
class Entry:
    resource_type: str
    id: str
    resource: bytes | dict[str, object]  # stored JSON, or a resource built here
    mode: str = "match"  # Bundle.entry.search.mode: match | include


def instant(moment: datetime) -> str:
    return moment.isoformat()


def subset(resource: bytes | dict[str, object], elements: Sequence[str]) -> dict[str, object]:
    """The resource with only `elements` (top-level names) and the mandatory ones, tagged."""
    full: dict[str, object] = orjson.loads(resource) if isinstance(resource, bytes) else resource
    mandatory = _mandatory(full)
    kept = {name: value for name, value in full.items() if name in mandatory or name in elements}
    meta = dict(kept.get("meta") or {})  # type: ignore[call-overload]
    tags = list(meta.get("tag", []))
    tags.append(SUBSETTED)
    meta["tag"] = tags
    kept["meta"] = meta
    return kept


def _resource(entry: Entry, elements: Sequence[str] | None) -> object:
    if elements is not None and entry.mode == "match":
        return subset(entry.resource, elements)
    if isinstance(entry.resource, bytes):
        return orjson.Fragment(entry.resource)
    return entry.resource


def searchset(
    *,
    base: str,
    entries: Iterable[Entry],
    links: Sequence[tuple[str, str]],
    total: int | None,
    elements: Sequence[str] | None = None,
) -> dict[str, object]:
    """A searchset Bundle (R4 bundle.html; search.html §2.1.1.3 paging links)."""
    bundle: dict[str, object] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": relation, "url": url} for relation, url in links]
    bundle["entry"] = [
        {
            "fullUrl": f"{base}/{entry.resource_type}/{entry.id}",
            "resource": _resource(entry, elements),
            "search": {"mode": entry.mode},
        }
        for entry in entries
    ]
    if not bundle["entry"]:
        del bundle["entry"]
    return bundle


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    resource: bytes
    first: bool  # the oldest version: created, not updated


def history(
    *, base: str, resource_type: str, resource_id: str, versions: Sequence[Version]
) -> dict[str, object]:
    """A history Bundle of one resource, newest version first (R4 http.html#history); each
    entry carries the request and response of the version (bdl-3, bdl-4)."""
    url = f"{resource_type}/{resource_id}"
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(versions),
        "link": [{"relation": "self", "url": f"{base}/{url}/_history"}],
        "entry": [
            {
                "fullUrl": f"{base}/{url}",
                "resource": orjson.Fragment(v.resource),
                "request": {"method": "POST" if v.first else "PUT", "url": url},
                "response": {
                    "status": "201" if v.first else "200",
                    "etag": f'W/"{v.version}"',
                },
            }
            for v in versions
        ],
    }


def patient(
    pseudonym: str, enrolled_at: datetime, identifiers: Iterable[tuple[str, str]]
) -> dict[str, object]:
    """The pseudonymous Patient: its id is the zone pseudonym and it carries the identifiers its
    clinic enrolled, and nothing else of identity: no name, birth date or sex."""
    resource: dict[str, object] = {
        "resourceType": "Patient",
        "id": pseudonym,
        "meta": {"lastUpdated": instant(enrolled_at)},
    }
    found = [{"system": system, "value": value} for system, value in identifiers]
    if found:
        resource["identifier"] = found
    return resource


def device(
    pseudonym: str, *, subject: str, model: str | None, manufacturer: str | None
) -> dict[str, object]:
    """A Device named by its pseudonym; the vendor's serial number is never stored or shown."""
    resource: dict[str, object] = {
        "resourceType": "Device",
        "id": pseudonym,
        "identifier": [{"system": DEVICE_IDENTIFIER_SYSTEM, "value": pseudonym}],
    }
    if manufacturer:
        resource["manufacturer"] = manufacturer
    if model:
        resource["deviceName"] = [{"name": model, "type": "model-name"}]
    resource["patient"] = {"reference": f"Patient/{subject}"}
    return resource
