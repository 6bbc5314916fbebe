"""Observation and component codes -> the gateway's measure and component names.

The lookup is derived from `gateway.measures.table` (every coding of every measure and panel
component, and the table's input-only CODE_ALIASES), so a code the table does not list is
`unsupported-type` here too. Only the aliases below are added by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.measures.table import CODE_ALIASES, LOINC, MDC, MEASURES

# Code systems may also be named by their HL7 OIDs (HL7 OID registry: 2.16.840.1.113883.6.1 is
# LOINC, 2.16.840.1.113883.6.24 is IEEE 11073-10101 MDC); the R4 ECG example uses the latter.
SYSTEM_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "urn:oid:2.16.840.1.113883.6.1": LOINC,
        "urn:oid:2.16.840.1.113883.6.24": MDC,
    }
)

# ../shared/reference/measures.md lists three MDC heart-rate codes; the measure table carries only
# MDC_ECG_HEART_RATE (147842). PHD pulse oximeters report MDC_PULS_OXIM_PULS_RATE (149530, e.g.
# numeric-spotnumeric.json) and blood-pressure monitors MDC_PULS_RATE_NON_INV (149546).
# TODO(table): move these two codings into gateway.measures.table and drop this alias table.
_MEASURE_ALIASES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        (MDC, "149530"): "heart-rate",
        (MDC, "149546"): "heart-rate",
    }
)


def _measure_codes() -> Mapping[tuple[str, str], str]:
    codes = {(c.system, c.code): m.name for m in MEASURES.values() for c in m.codings}
    return MappingProxyType({**codes, **CODE_ALIASES, **_MEASURE_ALIASES})


def _component_codes() -> Mapping[str, Mapping[tuple[str, str], str]]:
    return MappingProxyType(
        {
            m.name: MappingProxyType(
                {(c.system, c.code): spec.name for spec in m.components for c in spec.codings}
            )
            for m in MEASURES.values()
            if m.panel
        }
    )


# (system, code) -> measure name, e.g. (LOINC, "85354-9") -> "blood-pressure".
MEASURE_CODES: Mapping[tuple[str, str], str] = _measure_codes()
# panel measure name -> (system, code) -> component name, e.g. (MDC, "150021") -> "systolic".
COMPONENT_CODES: Mapping[str, Mapping[tuple[str, str], str]] = _component_codes()
