"""HealthKit type identifiers and units -> the gateway's measures and UCUM units.

Sources, cited per row:
  [HKQ]  Apple, HKQuantityTypeIdentifier (developer.apple.com/documentation/healthkit/
         hkquantitytypeidentifier) and HKUnit unit strings (developer.apple.com/documentation/
         healthkit/hkunit): "count/min", "%", "degC", "degF", "kg", "lb", "cm", "m", "in", "ft",
         "count", "mg/dL", "ms", "mmHg"; molar units carry the molar mass in angle brackets,
         e.g. "mmol<180.1558800000541>/L" for glucose.
  [HKF]  StanfordBDHG/HealthKitOnFHIR HKSampleMapping.json (tests/fixtures/healthkit/): the same
         identifiers with their LOINC codes and units, used as a cross-check.
  [M]    ../shared/reference/measures.md: HealthKit stores SpO2 and body fat as fractions 0-1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class UnitMapping:
    """A HealthKit unit string as the UCUM unit the measure table accepts, times a factor."""

    ucum: str
    factor: float = 1.0


@dataclass(frozen=True, slots=True)
class TypeMapping:
    measure: str
    units: Mapping[str, UnitMapping]


_PER_MINUTE = MappingProxyType({"count/min": UnitMapping("/min")})
# HealthKit's "%" unit holds a fraction: 0.97 means 97 % [M] [HKQ HKUnit.percent()].
_FRACTION_PERCENT = MappingProxyType({"%": UnitMapping("%", 100.0)})

QUANTITY_TYPES: Mapping[str, TypeMapping] = MappingProxyType(
    {
        "HKQuantityTypeIdentifierHeartRate": TypeMapping("heart-rate", _PER_MINUTE),  # [HKF]
        "HKQuantityTypeIdentifierRestingHeartRate": TypeMapping(  # [HKF]
            "resting-heart-rate", _PER_MINUTE
        ),
        "HKQuantityTypeIdentifierRespiratoryRate": TypeMapping(  # [HKF]
            "respiratory-rate", _PER_MINUTE
        ),
        "HKQuantityTypeIdentifierOxygenSaturation": TypeMapping(  # [HKF] [M]
            "oxygen-saturation", _FRACTION_PERCENT
        ),
        "HKQuantityTypeIdentifierBodyTemperature": TypeMapping(  # [HKF]
            "body-temperature",
            MappingProxyType({"degC": UnitMapping("Cel"), "degF": UnitMapping("[degF]")}),
        ),
        "HKQuantityTypeIdentifierBodyMass": TypeMapping(  # [HKF] maps lb to [lb_av]
            "body-weight",
            MappingProxyType(
                {"kg": UnitMapping("kg"), "g": UnitMapping("g"), "lb": UnitMapping("[lb_av]")}
            ),
        ),
        "HKQuantityTypeIdentifierHeight": TypeMapping(  # [HKF] maps in to [in_i]
            "body-height",
            MappingProxyType(
                {
                    "cm": UnitMapping("cm"),
                    "m": UnitMapping("m"),
                    "in": UnitMapping("[in_i]"),
                    # The measure table has no foot; 1 [ft_i] = 12 [in_i] exactly [UCUM].
                    "ft": UnitMapping("[in_i]", 12.0),
                }
            ),
        ),
        # HealthKit has no kg/m2 unit; BMI is a plain "count" [HKF].
        "HKQuantityTypeIdentifierBodyMassIndex": TypeMapping(
            "body-mass-index", MappingProxyType({"count": UnitMapping("kg/m2")})
        ),
        "HKQuantityTypeIdentifierBodyFatPercentage": TypeMapping(  # [HKF] [M]
            "body-fat-percentage", _FRACTION_PERCENT
        ),
        # HealthKit has no specimen key [HKQ]: a meter and a CGM app write the same type, so the
        # measure is "glucose" (specimen not stated) unless the sample's device is a known CGM
        # (parse.sample_measure). [HKF] codes every such sample 41653-7, capillary blood: wrong
        # for CGM readings, and not followed here.
        "HKQuantityTypeIdentifierBloodGlucose": TypeMapping(
            "glucose",
            MappingProxyType({"mg/dL": UnitMapping("mg/dL"), "mmol/L": UnitMapping("mmol/L")}),
        ),
        # Steps are counted over [startDate, endDate]: an interval measure.
        "HKQuantityTypeIdentifierStepCount": TypeMapping(
            "step-count", MappingProxyType({"count": UnitMapping("{steps}")})
        ),
        "HKQuantityTypeIdentifierHeartRateVariabilitySDNN": TypeMapping(  # [HKF]
            "heart-rate-variability-sdnn", MappingProxyType({"ms": UnitMapping("ms")})
        ),
    }
)

BLOOD_PRESSURE_CORRELATION = "HKCorrelationTypeIdentifierBloodPressure"
BLOOD_PRESSURE_MEASURE = "blood-pressure"
# Correlation member type -> component of the gateway's blood-pressure measure [HKQ].
BLOOD_PRESSURE_COMPONENTS: Mapping[str, str] = MappingProxyType(
    {
        "HKQuantityTypeIdentifierBloodPressureSystolic": "systolic",
        "HKQuantityTypeIdentifierBloodPressureDiastolic": "diastolic",
    }
)
BLOOD_PRESSURE_UNITS: Mapping[str, UnitMapping] = MappingProxyType({"mmHg": UnitMapping("mm[Hg]")})

# HealthKit spells glucose's molar unit with its molar mass, 180.15588 g/mol [HKQ]; any other
# molar mass would be another substance, so only that one is read as mmol/L.
GLUCOSE_MOLAR_UNIT = re.compile(r"mmol<180\.1558[0-9]*>/L")
