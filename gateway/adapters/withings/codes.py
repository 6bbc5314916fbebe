"""Withings measure type codes (`meastype`) -> the gateway's measures.

Source: Withings Public API reference, "Measure - Getmeas", table of `meastype` values
(https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas).
A measure's real value is `value * 10**unit`; `unit` is a power-of-ten exponent, and the physical
unit is fixed per meastype by that table. `unit` below is the UCUM code of that physical unit, as
the measure table (gateway.measures.table) accepts it.

Every meastype not listed here is reported as `unsupported-type`, for instance 5 fat-free mass,
8 fat mass, 76 muscle mass, 77 hydration, 88 bone mass, 91 pulse wave velocity, 123 VO2 max,
130 atrial fibrillation result, 135-138 ECG intervals, 155 vascular age, 167 nerve health,
168/169 extra/intracellular water, 170 visceral fat, 173-175 segmental composition, 196
electrodermal activity, 226 basal metabolic rate, 227 metabolic age, 229 electrochemical skin
conductance: the gateway has no measure (code, unit, range) for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class MeasType:
    measure: str  # gateway measure name (gateway.measures.table)
    component: str  # "value", or the panel component
    unit: str  # UCUM code of the meastype's documented physical unit


# Blood pressure arrives as two measures of one group (9 diastolic, 10 systolic); the adapter
# joins them into one "blood-pressure" reading. 11 (heart pulse) is a reading of its own.
MEASTYPES: Mapping[int, MeasType] = MappingProxyType(
    {
        1: MeasType("body-weight", "value", "kg"),  # Weight (kg)
        4: MeasType("body-height", "value", "m"),  # Height (meter)
        6: MeasType("body-fat-percentage", "value", "%"),  # Fat Ratio (%)
        9: MeasType("blood-pressure", "diastolic", "mm[Hg]"),  # Diastolic Blood Pressure (mmHg)
        10: MeasType("blood-pressure", "systolic", "mm[Hg]"),  # Systolic Blood Pressure (mmHg)
        11: MeasType("heart-rate", "value", "/min"),  # Heart Pulse (bpm)
        12: MeasType("body-temperature", "value", "Cel"),  # Temperature (celsius)
        # SpO2 (%). Synthetic fixtures (home-assistant) carry 95 with unit -2, i.e. 0.95: that is
        # left as 0.95 % and rejected out-of-range rather than guessed to be a fraction.
        54: MeasType("oxygen-saturation", "value", "%"),
        71: MeasType("body-temperature", "value", "Cel"),  # Body Temperature (celsius)
        73: MeasType("skin-temperature", "value", "Cel"),  # Skin Temperature (celsius)
    }
)

# Withings Public API, "Measure - Getmeas", `category`: 1 real measurement, 2 user objective.
CATEGORY_REAL = 1
CATEGORY_OBJECTIVE = 2

# Withings Public API, "Measure - Getmeas", `attrib`: 1 = "captured by a device but may belong to
# other users as well as this one (it is ambiguous)". The other values (0 device, 2 and 4 manual,
# 8 ...) name one owner, so they are kept.
ATTRIB_AMBIGUOUS = 1

# Withings Public API, "Measure v2 - Getintradayactivity", `data_fields`. Mapped: steps,
# heart_rate, spo2_auto. The other measured fields are reported as unsupported (request only the
# mapped ones with `data_fields=steps,heart_rate,spo2_auto` to avoid those rejections).
INTRADAY_UNSUPPORTED_FIELDS = frozenset(
    {
        "calories",
        "distance",
        "elevation",
        "stroke",
        "pool_lap",
        "rmssd",
        "sdnn1",
        "hrv_quality",
        "sleep_state",
    }
)
# Per-entry metadata, not measured values.
INTRADAY_METADATA_FIELDS = frozenset({"duration", "model", "model_id", "deviceid", "hash_deviceid"})
