"""Health Connect record types and units, as literal tables.

Sources, cited per row:
  [HC]   androidx.health.connect.client.records (Jetpack Health Connect SDK): record classes,
         their fields, and the `BloodGlucoseRecord.SPECIMEN_SOURCE_*` constants
  [HCU]  androidx.health.connect.client.units: the `in<Unit>` getters of Mass, Length,
         Temperature, Pressure, BloodGlucose, Percentage
  [CAP]  kiwi-health/capacitor-health-connect Serializer.kt (commit 76ea2ed7): the plugin's JSON
         form, `{"unit": <word>, "value": n}` unit objects and the record `type` names
  [UCUM] https://ucum.org/ucum for the conversion factors
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.measures.specimen import Specimen


@dataclass(frozen=True, slots=True)
class UnitRule:
    """A Health Connect unit -> a UCUM code the measure table accepts, times `factor`."""

    ucum: str
    factor: float = 1.0


@dataclass(frozen=True, slots=True)
class Units:
    """The two spellings of one unit class: SDK getters [HCU] and the plugin's words [CAP]."""

    # `{"inKilograms": 70.2}`. In preferred order: a plain-shape object may carry every getter of
    # the unit class (a serialiser that walked all properties), and the first one found wins.
    getters: Mapping[str, UnitRule]
    # `{"unit": "kilogram", "value": 70.2}`.
    words: Mapping[str, UnitRule]


# The measure table does not accept mg, ug, oz, km or mi: those are converted here [UCUM].
_MILLIGRAM = UnitRule("g", 0.001)
_MICROGRAM = UnitRule("g", 0.000_001)
_OUNCE = UnitRule("g", 28.349523125)  # [oz_av] = 28.349523125 g exactly [UCUM]
_FOOT = UnitRule("[in_i]", 12.0)  # [ft_i] = 12 [in_i] [UCUM]
_KILOMETRE = UnitRule("m", 1000.0)
_MILE = UnitRule("m", 1609.344)  # [mi_i] = 5280 [ft_i] = 1609.344 m [UCUM]

MASS = Units(
    getters=MappingProxyType(
        {
            "inKilograms": UnitRule("kg"),
            "inGrams": UnitRule("g"),
            "inPounds": UnitRule("[lb_av]"),
            "inOunces": _OUNCE,
            "inMilligrams": _MILLIGRAM,
            "inMicrograms": _MICROGRAM,
        }
    ),
    words=MappingProxyType(
        {
            "kilogram": UnitRule("kg"),
            "gram": UnitRule("g"),
            "pound": UnitRule("[lb_av]"),
            "ounce": _OUNCE,
            "milligram": _MILLIGRAM,
            "microgram": _MICROGRAM,
        }
    ),
)
LENGTH = Units(
    getters=MappingProxyType(
        {
            "inMeters": UnitRule("m"),
            "inInches": UnitRule("[in_i]"),
            "inFeet": _FOOT,
            "inKilometers": _KILOMETRE,
            "inMiles": _MILE,
        }
    ),
    words=MappingProxyType(
        {
            "meter": UnitRule("m"),
            "inch": UnitRule("[in_i]"),
            "feet": _FOOT,
            "kilometer": _KILOMETRE,
            "mile": _MILE,
        }
    ),
)
TEMPERATURE = Units(
    getters=MappingProxyType({"inCelsius": UnitRule("Cel"), "inFahrenheit": UnitRule("[degF]")}),
    words=MappingProxyType({"celsius": UnitRule("Cel"), "fahrenheit": UnitRule("[degF]")}),
)
PRESSURE = Units(
    getters=MappingProxyType({"inMillimetersOfMercury": UnitRule("mm[Hg]")}),
    # "mmHg" is what the plugin writes when it reads records out [CAP].
    words=MappingProxyType(
        {"millimetersOfMercury": UnitRule("mm[Hg]"), "mmHg": UnitRule("mm[Hg]")}
    ),
)
BLOOD_GLUCOSE = Units(
    getters=MappingProxyType(
        {
            "inMilligramsPerDeciliter": UnitRule("mg/dL"),
            "inMillimolesPerLiter": UnitRule("mmol/L"),
        }
    ),
    words=MappingProxyType(
        {
            "milligramsPerDeciliter": UnitRule("mg/dL"),
            "millimolesPerLiter": UnitRule("mmol/L"),
        }
    ),
)
# Percentage is 0-100 in Health Connect [HC]; HealthKit's 0-1 fractions are not rescaled here
# (normalise rejects them as out of range). `Percentage.value` is its only getter [HCU]; the
# plugin writes `{"value": n}` without a unit [CAP].
PERCENT = Units(getters=MappingProxyType({"value": UnitRule("%")}), words=MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class PointRecord:
    """A record with `time` + `zoneOffset` and one value field."""

    measure: str
    field: str
    units: Units | None  # None: the field is a bare number in `bare_unit`
    bare_unit: str | None = None


@dataclass(frozen=True, slots=True)
class PanelRecord:
    """A record with `time` + `zoneOffset` and one field per measure component."""

    measure: str
    components: Mapping[str, str]  # component name -> record field
    units: Units


@dataclass(frozen=True, slots=True)
class IntervalRecord:
    """A record with `startTime`/`endTime` (+ zone offsets) and one bare number."""

    measure: str
    field: str
    bare_unit: str


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """A record with `startTime`/`endTime` and `samples[{time, <field>}]`: one reading each."""

    measure: str
    field: str
    bare_unit: str


RecordKind = PointRecord | PanelRecord | IntervalRecord | SeriesRecord

# Record type name (without the SDK's "Record" suffix) -> how to read it [HC] [CAP].
SUPPORTED: Mapping[str, RecordKind] = MappingProxyType(
    {
        "HeartRate": SeriesRecord("heart-rate", "beatsPerMinute", "/min"),
        # The plugin's read side names HeartRateRecord "HeartRateSeries" [CAP].
        "HeartRateSeries": SeriesRecord("heart-rate", "beatsPerMinute", "/min"),
        "Steps": IntervalRecord("step-count", "count", "{steps}"),
        "BloodPressure": PanelRecord(
            "blood-pressure", {"systolic": "systolic", "diastolic": "diastolic"}, PRESSURE
        ),
        "OxygenSaturation": PointRecord("oxygen-saturation", "percentage", PERCENT, "%"),
        "BodyTemperature": PointRecord("body-temperature", "temperature", TEMPERATURE),
        "Weight": PointRecord("body-weight", "weight", MASS),
        "Height": PointRecord("body-height", "height", LENGTH),
        "RespiratoryRate": PointRecord("respiratory-rate", "rate", None, "/min"),
        # "glucose" until specimenSource says otherwise (parse._glucose_measure).
        "BloodGlucose": PointRecord("glucose", "level", BLOOD_GLUCOSE),
        "RestingHeartRate": PointRecord("resting-heart-rate", "beatsPerMinute", None, "/min"),
        "BodyFat": PointRecord("body-fat-percentage", "percentage", PERCENT, "%"),
    }
)

# Record types that look like a supported measure but are a different quantity: refused with
# the reason, so an uploader does not retry them under another name.
REFUSED: Mapping[str, str] = MappingProxyType(
    {
        "HeartRateVariabilityRmssd": (
            "HeartRateVariabilityRmssd is RMSSD, which is not SDNN: the gateway stores only "
            "SDNN heart rate variability (LOINC 80404-7)"
        ),
        "SkinTemperature": (
            "SkinTemperature holds deltas from a baseline, not an absolute skin temperature"
        ),
        "BasalBodyTemperature": (
            "BasalBodyTemperature is a fertility-tracking measure, not stored as body temperature"
        ),
    }
)

# The other record types of the SDK [HC] [CAP]: named in the rejection as not supported (a name
# outside this list is not echoed back).
KNOWN_UNSUPPORTED: frozenset[str] = frozenset(
    {
        "ActiveCaloriesBurned",
        "ActivityIntensity",
        "BasalMetabolicRate",
        "BodyWaterMass",
        "BoneMass",
        "CervicalMucus",
        "CyclingPedalingCadence",
        "Distance",
        "ElevationGained",
        "ExerciseSession",
        "FloorsClimbed",
        "Hydration",
        "IntermenstrualBleeding",
        "LeanBodyMass",
        "Menstruation",
        "MenstruationFlow",
        "MenstruationPeriod",
        "MindfulnessSession",
        "Nutrition",
        "OvulationTest",
        "PlannedExerciseSession",
        "Power",
        "SexualActivity",
        "SleepSession",
        "Speed",
        "StepsCadence",
        "TotalCaloriesBurned",
        "Vo2Max",
        "WheelchairPushes",
    }
)

# BloodGlucoseRecord.specimenSource [HC]: SDK ints (SPECIMEN_SOURCE_UNKNOWN = 0,
# INTERSTITIAL_FLUID = 1, CAPILLARY_BLOOD = 2, PLASMA = 3, SERUM = 4, TEARS = 5, WHOLE_BLOOD = 6)
# and the plugin's strings [CAP] -> the specimen that picks the glucose measure
# (gateway.measures.specimen). None: a specimen the gateway has no glucose code for, refused per
# record rather than stored under another specimen's code. An absent specimenSource is 0, the
# SDK's default.
GLUCOSE_SPECIMENS: Mapping[str | int, Specimen | None] = MappingProxyType(
    {
        0: Specimen.UNKNOWN,
        "unknown": Specimen.UNKNOWN,
        1: Specimen.INTERSTITIAL_FLUID,
        "interstitial_fluid": Specimen.INTERSTITIAL_FLUID,
        2: Specimen.CAPILLARY_BLOOD,
        "capillary_blood": Specimen.CAPILLARY_BLOOD,
        3: None,
        "plasma": None,
        4: None,
        "serum": None,
        5: None,
        "tears": None,
        6: None,
        "whole_blood": None,
    }
)
# The Health Connect record type whose measure is chosen by GLUCOSE_SPECIMENS.
GLUCOSE_RECORD = "BloodGlucose"
