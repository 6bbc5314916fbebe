"""What de-identification removed, counted for an extract's manifest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(counts.items())))


@dataclass(frozen=True, slots=True)
class DeidReport:
    """Counts of what was removed: elements by path (e.g. "identifier", "meta.source",
    "component.code.text"), gateway extensions removed by policy and unknown extensions, both by
    URL. Reports of many resources add up with `+`."""

    dropped_elements: Mapping[str, int] = field(default_factory=dict)
    dropped_extensions: Mapping[str, int] = field(default_factory=dict)
    unknown_extensions: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("dropped_elements", "dropped_extensions", "unknown_extensions"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def __add__(self, other: DeidReport) -> DeidReport:
        return DeidReport(
            dropped_elements=Counter(self.dropped_elements) + Counter(other.dropped_elements),
            dropped_extensions=Counter(self.dropped_extensions) + Counter(other.dropped_extensions),
            unknown_extensions=Counter(self.unknown_extensions) + Counter(other.unknown_extensions),
        )

    def as_json(self) -> dict[str, dict[str, int]]:
        """The manifest's `deidentification` report object."""
        return {
            "droppedElements": dict(self.dropped_elements),
            "droppedExtensions": dict(self.dropped_extensions),
            "unknownExtensions": dict(self.unknown_extensions),
        }


class ExclusionReason(StrEnum):
    """Why a whole resource is left out of an extract (stable codes for the manifest)."""

    NOT_AN_OBSERVATION = "not-an-observation"
    MEASURE_NOT_IN_STUDY = "measure-not-in-study"
    # FHIR R4 §2.4.2 (extensibility): a resource with a modifier extension the reader does not
    # know must not be processed as if it were absent, since it may change the meaning.
    MODIFIER_EXTENSION = "modifier-extension"
    NO_EFFECTIVE_TIME = "no-effective-time"
    TIME_NOT_SHIFTABLE = "time-not-shiftable"
    # Dropping the statistic would turn an aggregate (a daily maximum) into a raw reading.
    UNKNOWN_STATISTIC = "unknown-statistic"
    NO_ID = "no-id"


class ResourceExcluded(Exception):
    """The resource cannot be released in de-identified form; `reason` says why."""

    def __init__(self, reason: ExclusionReason) -> None:
        super().__init__(f"resource left out of the extract: {reason}")
        self.reason = reason
