"""The Open mHealth schemas the gateway maps, as data: body fields, units, qualifier value sets.

Every row cites the schema it was read from, at https://github.com/openmhealth/schemas
(`schema/omh/<name>-<version>.json`, commit 36078a89). IEEE 1752.1 schemas referenced by URL
(https://w3id.org/ieee/ieee-1752-schema/...) are cited as [IEEE <name>].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class SchemaMapping:
    """How one Open mHealth body schema becomes a gateway measure."""

    measure: str  # gateway measure name (gateway.measures.table)
    fields: Mapping[str, str]  # body field holding a unit-value -> measure component name
    # Open mHealth unit (the schema's `unit` enum) -> UCUM code the measure table accepts. A unit
    # outside this map is passed on unchanged, so normalise rejects it `unit-not-convertible`.
    units: Mapping[str, str]
    majors: frozenset[int]  # schema major versions whose body shape was checked against this row
    # False where the schema's time frame is [IEEE time-frame-1.0], whose time interval has no
    # date + part_of_day form (the blood-pressure 4.0 and body-height 2.0 test data reject it).
    part_of_day: bool
    interval_only: bool = False  # the schema requires a time_interval (step-count 3.0)


# Qualifiers whose value sets the schemas close. The mapping does not use them, but a value outside
# the set means the data point is not valid Open mHealth, so it is rejected rather than stored.
QUALIFIERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        # temporal-relationship-to-physical-activity-1.0
        "temporal_relationship_to_physical_activity": frozenset(
            {"at rest", "active", "before exercise", "after exercise", "during exercise"}
        ),
        # temporal-relationship-to-meal-1.0
        "temporal_relationship_to_meal": frozenset(
            {
                "fasting",
                "not fasting",
                "before meal",
                "after meal",
                "before breakfast",
                "after breakfast",
                "before lunch",
                "after lunch",
                "before dinner",
                "after dinner",
                "2 hours postprandial",
            }
        ),
        # temporal-relationship-to-sleep-1.0
        "temporal_relationship_to_sleep": frozenset(
            {"before sleeping", "during sleep", "on waking"}
        ),
    }
)

# blood-glucose-4.0 `specimen_source` (specimen-source-2.x). The measure table's glucose code is
# LOINC 41653-7 "Glucose [Mass/volume] in Capillary blood by Glucometer"; other specimens (plasma,
# interstitial fluid, ...) are other LOINC terms, so only capillary blood (or no source: a meter
# reading) maps to it.
GLUCOSE_SPECIMENS: frozenset[str] = frozenset({"capillary blood"})

# oxygen-saturation-2.0 `supplemental_oxygen_flow_rate.unit` enum.
OXYGEN_FLOW_UNITS: frozenset[str] = frozenset({"L/min"})

# [IEEE descriptive-statistic-1.0] / descriptive-statistic-1.x enum.
DESCRIPTIVE_STATISTICS: frozenset[str] = frozenset(
    {
        "average", "count", "maximum", "median", "minimum", "standard deviation", "sum",
        "variance", "20th percentile", "80th percentile", "lower quartile", "upper quartile",
        "quartile deviation", "1st quintile", "2nd quintile", "3rd quintile", "4th quintile",
    }
)  # fmt: skip

# Statistics whose value is a value of the measure itself, in its unit and plausibility range, so
# the Observation's valueQuantity means what its code says. A count, a variance (unit squared) or a
# spread (standard deviation, quartile deviation) is not a heart rate, a weight, ...
LOCATION_STATISTICS: frozenset[str] = frozenset(
    {
        "average", "maximum", "median", "minimum", "20th percentile", "80th percentile",
        "lower quartile", "upper quartile", "1st quintile", "2nd quintile", "3rd quintile",
        "4th quintile",
    }
)  # fmt: skip
# The sum of step counts over the interval is the step count of the interval.
SUM_MEASURES: frozenset[str] = frozenset({"step-count"})

# duration-unit-value-1.0 `unit` enum -> seconds. "s" is the UCUM spelling of "sec" that
# IEEE 1752.1 producers send. "Mo" and "yr" have no fixed length in seconds and are refused.
DURATION_SECONDS: Mapping[str, float] = MappingProxyType(
    {
        "ps": 1e-12,
        "ns": 1e-9,
        "us": 1e-6,
        "ms": 1e-3,
        "sec": 1.0,
        "s": 1.0,
        "min": 60.0,
        "h": 3600.0,
        "d": 86400.0,
        "wk": 604800.0,
    }
)

# part-of-day-1.0 enum -> (start hour, end hour) of that date. The schema gives no hours; these
# are the gateway's reading of the SNOMED concepts it cites (morning 73775008, afternoon
# 422133006, evening 3157002, night 2546009), with night the early hours of the same date.
PART_OF_DAY_HOURS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}
)

_HEART_RATE_UNITS = MappingProxyType({"beats/min": "/min"})  # heart-rate-2.0 unit enum
_RESPIRATORY_RATE_UNITS = MappingProxyType({"breaths/min": "/min"})  # respiratory-rate-2.0
_PRESSURE_UNITS = MappingProxyType({"mmHg": "mm[Hg]"})  # systolic/diastolic-blood-pressure-1.x
_GLUCOSE_UNITS = MappingProxyType({"mg/dL": "mg/dL", "mmol/L": "mmol/L"})  # blood-glucose-4.0
# [IEEE temperature-unit-value-1.0] enum K, F, C.
_TEMPERATURE_UNITS = MappingProxyType({"C": "Cel", "F": "[degF]", "K": "K"})
_PERCENT_UNITS = MappingProxyType({"%": "%"})  # oxygen-saturation-2.0
_STEP_UNITS = MappingProxyType({"steps": "{steps}"})  # step-count-3.0
# mass-unit-value-1.x enum; only the units the measure table converts are listed, the others
# (fg, pg, ng, ug, mg, Metric Ton, gr, oz, Ton) pass through and are refused by normalise.
_MASS_UNITS = MappingProxyType({"kg": "kg", "g": "g", "lb": "[lb_av]"})
# length-unit-value-1.x enum; as above (fm, pm, nm, um, km, ft, yd, mi are refused).
_LENGTH_UNITS = MappingProxyType({"cm": "cm", "m": "m", "mm": "mm", "in": "[in_i]"})
_BMI_UNITS = MappingProxyType({"kg/m^2": "kg/m2"})  # body-mass-index-3.0

# Schema name (header.schema_id.name, namespace "omh") -> mapping.
SCHEMAS: Mapping[str, SchemaMapping] = MappingProxyType(
    {
        "heart-rate": SchemaMapping(
            "heart-rate", {"heart_rate": "value"}, _HEART_RATE_UNITS,
            frozenset({2}), part_of_day=True,
        ),
        "respiratory-rate": SchemaMapping(
            "respiratory-rate", {"respiratory_rate": "value"}, _RESPIRATORY_RATE_UNITS,
            frozenset({2}), part_of_day=True,
        ),
        "oxygen-saturation": SchemaMapping(
            "oxygen-saturation", {"oxygen_saturation": "value"}, _PERCENT_UNITS,
            frozenset({2}), part_of_day=True,
        ),
        "step-count": SchemaMapping(
            "step-count", {"step_count": "value"}, _STEP_UNITS,
            frozenset({3}), part_of_day=True, interval_only=True,
        ),
        "blood-pressure": SchemaMapping(
            "blood-pressure",
            {"systolic_blood_pressure": "systolic", "diastolic_blood_pressure": "diastolic"},
            _PRESSURE_UNITS, frozenset({4}), part_of_day=False,
        ),
        "blood-glucose": SchemaMapping(
            "blood-glucose", {"blood_glucose": "value"}, _GLUCOSE_UNITS,
            frozenset({4}), part_of_day=False,
        ),
        "body-temperature": SchemaMapping(
            "body-temperature", {"body_temperature": "value"}, _TEMPERATURE_UNITS,
            frozenset({4}), part_of_day=False,
        ),
        "body-weight": SchemaMapping(
            "body-weight", {"body_weight": "value"}, _MASS_UNITS,
            frozenset({3}), part_of_day=False,
        ),
        "body-height": SchemaMapping(
            "body-height", {"body_height": "value"}, _LENGTH_UNITS,
            frozenset({2}), part_of_day=False,
        ),
        "body-mass-index": SchemaMapping(
            "body-mass-index", {"body_mass_index": "value"}, _BMI_UNITS,
            frozenset({3}), part_of_day=False,
        ),
    }
)  # fmt: skip
