"""The Open mHealth schemas the gateway maps, as data: body fields, units, qualifier value sets.

Every `omh` row cites the schema it was read from, at https://github.com/openmhealth/schemas
(`schema/omh/<name>-<version>.json`, commit 36078a89). IEEE 1752.1 schemas referenced by URL
(https://w3id.org/ieee/ieee-1752-schema/...) are cited as [IEEE <name>].

The normative 1752.1 schema files live at https://opensource.ieee.org/omh/1752 (`schemas/<folder>/
<name>-1.0.json`; folders as in openmhealth/schemas `test-data-validator/ieee_url_workaround.py`).
That repository is not mirrored here, so the `ieee` rows were read from what cites it: Open
mHealth's own references to it (step-count-3.0 "deprecated, in favor of the IEEE 1752.1
physical-activity schema which models also number of steps"), the Kotlin SDK in openmhealth/schemas
(`kotlin-schema-sdk/.../domain/ieee/`, same commit) and StanfordBDHG/OMHModels
`Sources/OMHModels/PhysicalActivity.swift` (commit a8bbf5aa, "Generated from IEEE 1752.1
`physical-activity-1.0`").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.measures.specimen import Specimen


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
    # Unit-value fields the schema makes optional: a data point without one is valid, but carries
    # no value of the measure, so it is refused `missing-component` (not `unsupported-type`).
    optional: frozenset[str] = frozenset()
    # Body fields the schema requires as strings; checked, not stored (IEEE activity_name).
    required_text: tuple[str, ...] = ()
    source: str = ""  # URL of the schema the row was read from


@dataclass(frozen=True, slots=True)
class Namespace:
    """What differs between the `schema_id.namespace`s the gateway reads, as data."""

    # True: a date-time without an offset is UTC (omh date-time-1.0: "If a timezone is not
    # included, the timezone is assumed to be UTC"). False: the schema's date-time is an offset
    # date-time, so a time without one is refused `missing-offset` ([IEEE date-time]: the Kotlin
    # SDK types it `OffsetDateTime`; JSON Schema `format: date-time` is RFC 3339 section 5.6,
    # whose time-offset is not optional).
    naive_is_utc: bool
    source: str


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

# blood-glucose-4.0 `specimen_source`, the value set of schema specimen-source-2.x
# (https://www.openmhealth.org/documentation/#/schema-docs/schema-library: omh:specimen-source) ->
# the specimen that picks the glucose measure (gateway.measures.specimen). None: a specimen the
# gateway has no glucose code for, refused rather than stored under another specimen's code. A data
# point without specimen_source states none: Specimen.UNKNOWN, never capillary blood.
GLUCOSE_SPECIMENS: Mapping[str, Specimen | None] = MappingProxyType(
    {
        "capillary blood": Specimen.CAPILLARY_BLOOD,
        "interstitial fluid": Specimen.INTERSTITIAL_FLUID,
        "plasma": None,
        "serum": None,
        "tears": None,
        "whole blood": None,
    }
)

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

NAMESPACES: Mapping[str, Namespace] = MappingProxyType(
    {
        "omh": Namespace(
            naive_is_utc=True,
            source="https://w3id.org/openmhealth/schemas/omh/date-time-1.0.json",
        ),
        "ieee": Namespace(
            naive_is_utc=False,
            source="https://w3id.org/ieee/ieee-1752-schema/date-time.json",
        ),
    }
)

_IEEE = "https://w3id.org/ieee/ieee-1752-schema/"

# (header.schema_id.namespace, header.schema_id.name) -> mapping.
SCHEMAS: Mapping[tuple[str, str], SchemaMapping] = MappingProxyType(
    {
        ("omh", "heart-rate"): SchemaMapping(
            "heart-rate", {"heart_rate": "value"}, _HEART_RATE_UNITS,
            frozenset({2}), part_of_day=True,
        ),
        ("omh", "respiratory-rate"): SchemaMapping(
            "respiratory-rate", {"respiratory_rate": "value"}, _RESPIRATORY_RATE_UNITS,
            frozenset({2}), part_of_day=True,
        ),
        ("omh", "oxygen-saturation"): SchemaMapping(
            "oxygen-saturation", {"oxygen_saturation": "value"}, _PERCENT_UNITS,
            frozenset({2}), part_of_day=True,
        ),
        ("omh", "step-count"): SchemaMapping(
            "step-count", {"step_count": "value"}, _STEP_UNITS,
            frozenset({3}), part_of_day=True, interval_only=True,
        ),
        ("omh", "blood-pressure"): SchemaMapping(
            "blood-pressure",
            {"systolic_blood_pressure": "systolic", "diastolic_blood_pressure": "diastolic"},
            _PRESSURE_UNITS, frozenset({4}), part_of_day=False,
        ),
        # "glucose" until specimen_source says otherwise (parse._glucose_measure).
        ("omh", "blood-glucose"): SchemaMapping(
            "glucose", {"blood_glucose": "value"}, _GLUCOSE_UNITS,
            frozenset({4}), part_of_day=False,
        ),
        ("omh", "body-temperature"): SchemaMapping(
            "body-temperature", {"body_temperature": "value"}, _TEMPERATURE_UNITS,
            frozenset({4}), part_of_day=False,
        ),
        ("omh", "body-weight"): SchemaMapping(
            "body-weight", {"body_weight": "value"}, _MASS_UNITS,
            frozenset({3}), part_of_day=False,
        ),
        ("omh", "body-height"): SchemaMapping(
            "body-height", {"body_height": "value"}, _LENGTH_UNITS,
            frozenset({2}), part_of_day=False,
        ),
        ("omh", "body-mass-index"): SchemaMapping(
            "body-mass-index", {"body_mass_index": "value"}, _BMI_UNITS,
            frozenset({3}), part_of_day=False,
        ),
        # [IEEE physical-activity] 1.0: `activity_name` (required), `effective_time_frame`
        # "restricted to be a time interval", `base_movement_quantity` (optional; unit one of
        # steps, laps, skips, movements, strokes), descriptive_statistic(_denominator). Only a
        # count of steps is a gateway measure: other units pass through and are refused
        # `unit-not-convertible`; no quantity at all is `missing-component`. [IEEE time-frame]
        # has no date + part_of_day interval.
        ("ieee", "physical-activity"): SchemaMapping(
            "step-count", {"base_movement_quantity": "value"}, _STEP_UNITS,
            frozenset({1}), part_of_day=False, interval_only=True,
            optional=frozenset({"base_movement_quantity"}), required_text=("activity_name",),
            source=_IEEE + "physical-activity.json",
        ),
        # No other 1752.1 schema maps to a measure of gateway.measures.table: the sleep schemas
        # (sleep-episode, total-sleep-time, ...) have no measure yet, ambient-* describe the
        # environment, survey-* are answers, and the utility schemas are not data points.
    }
)  # fmt: skip
