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

from gateway.models import Quantity


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
        "HKQuantityTypeIdentifierBloodGlucose": TypeMapping(  # [HKF]
            "blood-glucose",
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
_GLUCOSE_MOLAR = re.compile(r"mmol<180\.1558[0-9]*>/L")
# Shape of an identifier that is safe to name in a rejection message: Apple's own spelling.
_IDENTIFIER = re.compile(r"HK[A-Za-z]+TypeIdentifier[A-Za-z0-9]{1,80}")


def hk_unit(unit: str) -> str:
    """The key under which `unit` is looked up in a type's unit table."""
    return "mmol/L" if _GLUCOSE_MOLAR.fullmatch(unit) else unit


def unsupported_type_message(identifier: str) -> str:
    # Name the type only when it looks like Apple's identifier: messages never echo free text.
    if _IDENTIFIER.fullmatch(identifier):
        return f"HealthKit type {identifier} is not supported"
    return "HealthKit type is not supported"


def unit_message(identifier: str, units: Mapping[str, UnitMapping]) -> str:
    accepted = ", ".join("mmol<180.15588>/L" if u == "mmol/L" else u for u in units)
    return f"unit of {identifier} is not accepted; accepted HealthKit units: {accepted}"


def to_quantity(value: float, unit: str, units: Mapping[str, UnitMapping]) -> Quantity | None:
    """`value` in HealthKit `unit` as a quantity the measure table accepts; None: unit unknown."""
    mapping = units.get(hk_unit(unit))
    if mapping is None:
        return None
    if mapping.factor != 1.0:
        # Round away binary artefacts of the scaling (0.97 * 100 = 97.00000000000001).
        value = round(value * mapping.factor, 9)
    return Quantity(value, mapping.ucum)


def device_id(
    *,
    local_identifier: str | None,
    udi: str | None,
    source_name: str | None,
    hardware: str | None,
    fallback: str,
) -> str:
    """The device id of the dedup key: HealthKit has no serial number, so the most specific of
    HKDevice.localIdentifier, HKDevice.udiDeviceIdentifier, or the source (the app or device
    that wrote the sample, by name) with its hardware version. Stored only as a keyed pseudonym.
    """
    if local_identifier:
        return local_identifier
    if udi:
        return udi
    if source_name:
        return f"{source_name}/{hardware}" if hardware else source_name
    return fallback
