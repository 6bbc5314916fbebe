"""The measures the gateway accepts: codes, UCUM units, accepted input units, plausibility ranges.

Sources, cited per row:
  [M]     ../shared/reference/measures.md (codes, canonical units, hard/soft ranges)
  [R4]    FHIR R4 vital-signs examples (observation-example-*.json, v4.0.1) for displays and units
  [PHD]   HL7 Personal Health Device IG examples (MDC reference ids, decimal codes)
  [HK]    StanfordBDHG/HealthKitOnFHIR HKSampleMapping.json (LOINC displays of 40443-4, 41982-0,
          55423-8, 80404-7)
  [UCUM]  https://ucum.org/ucum (unit codes and conversion factors)
  [CGM]   HL7 FHIR IG Continuous Glucose Monitoring 1.0.0 (STU 1), http://hl7.org/fhir/uv/cgm/
          (profiles.fsh of github.com/HL7/cgm): profile CGMSensorReadingMassPerVolume
          (StructureDefinition-cgm-sensor-reading-mass-per-volume.html) fixes code LOINC 99504-3,
          valueQuantity UCUM mg/dL with unit "mg/dl", effectiveDateTime 1..1, subject 1..1;
          CGMSensorReadingMolesPerVolume (...-moles-per-volume.html) fixes LOINC 105272-9, UCUM
          mmol/L, unit "mmol/l". Displays as the IG's examples render them
          (Observation-cgmSensorReadingMassPerVolumeExample.html, ...MolesPerVolumeExample.html).
  [LOINC] LOINC Users' Guide §2.5 "System (Sample) Type": every LOINC glucose term names the
          specimen it was measured in (Bld, BldC, Ser/Plas, ISF, ...); the placeholder system
          XXX means "specified elsewhere in the message", i.e. it still needs a specimen stated.
Hard range: outside, the reading is rejected. Soft range: outside, it is stored and flagged L/H.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.models import Coding, ComponentSpec, Measure, UnitConversion, ValueRange

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
# The gateway's own code system: measures that no standard code states truthfully.
GATEWAY_MEASURE = "urn:wearable-gateway:measure"

_SAME = UnitConversion(1.0)


# --- accepted input units -> canonical UCUM ----------------------------------------------------

# /min: [UCUM] "/min"; bpm, beats/min, count/min are field spellings listed in [M] "traps";
# {beat}/min is the PHD IG's annotation form, count/min HealthKit's.
_PER_MINUTE_HEART = MappingProxyType(
    {
        "/min": _SAME,
        "1/min": _SAME,
        "bpm": _SAME,
        "beats/min": _SAME,
        "beats/minute": _SAME,
        "count/min": _SAME,
        "{beats}/min": _SAME,
        "{beat}/min": _SAME,
    }
)
_PER_MINUTE_BREATHS = MappingProxyType(
    {
        "/min": _SAME,
        "1/min": _SAME,
        "breaths/min": _SAME,
        "breaths/minute": _SAME,
        "{breaths}/min": _SAME,
        "{breath}/min": _SAME,
    }
)
_PERCENT = MappingProxyType({"%": _SAME})
# Cel = K - 273.15; Cel = ([degF] - 32) * 5/9 = [degF] * 5/9 - 160/9  [UCUM §4.4 special units].
_CELSIUS = MappingProxyType(
    {
        "Cel": _SAME,
        "degC": _SAME,
        "C": _SAME,
        "°C": _SAME,
        "[degF]": UnitConversion(5 / 9, -160 / 9),
        "degF": UnitConversion(5 / 9, -160 / 9),
        "F": UnitConversion(5 / 9, -160 / 9),
        "°F": UnitConversion(5 / 9, -160 / 9),
        "K": UnitConversion(1.0, -273.15),
    }
)
_MM_HG = MappingProxyType({"mm[Hg]": _SAME, "mmHg": _SAME})
# [lb_av] = 0.45359237 kg exactly [UCUM, avoirdupois pound].
_KILOGRAM = MappingProxyType(
    {
        "kg": _SAME,
        "g": UnitConversion(0.001),
        "[lb_av]": UnitConversion(0.45359237),
        "lb": UnitConversion(0.45359237),
        "lbs": UnitConversion(0.45359237),
    }
)
# [in_i] = 2.54 cm exactly [UCUM, international inch].
_CENTIMETRE = MappingProxyType(
    {
        "cm": _SAME,
        "m": UnitConversion(100.0),
        "mm": UnitConversion(0.1),
        "[in_i]": UnitConversion(2.54),
        "in": UnitConversion(2.54),
    }
)
_KG_PER_M2 = MappingProxyType({"kg/m2": _SAME, "kg/m^2": _SAME})
# 1 mmol/L glucose = 180.156 g/mol x 1 mmol/L = 180.156 mg/L = 18.0156 mg/dL; [M] gives 18.01559
# (molar mass of C6H12O6 from standard atomic weights: 6x12.0107 + 12x1.00794 + 6x15.9994
# = 180.1559 g/mol).
_MG_PER_DL = MappingProxyType({"mg/dL": _SAME, "mmol/L": UnitConversion(18.01559)})
_STEPS = MappingProxyType({"{steps}": _SAME, "{step}": _SAME, "steps": _SAME})
_MILLISECOND = MappingProxyType({"ms": _SAME, "s": UnitConversion(1000.0)})


# --- codings ------------------------------------------------------------------------------------

_HEART_RATE = (
    Coding(LOINC, "8867-4", "Heart rate"),  # [M] [R4 heart-rate]
    Coding(MDC, "147842", "MDC_ECG_HEART_RATE"),  # [M]
)
_RESTING_HEART_RATE = (Coding(LOINC, "40443-4", "Heart rate --resting"),)  # [M] [HK]
_RESPIRATORY_RATE = (
    Coding(LOINC, "9279-1", "Respiratory rate"),  # [M] [R4 respiratory-rate]
    Coding(MDC, "151562", "MDC_RESP_RATE"),  # [M]
)
_OXYGEN_SATURATION = (
    Coding(LOINC, "2708-6", "Oxygen saturation in Arterial blood"),  # [M] [R4 satO2]
    Coding(LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),  # [R4 satO2]
    Coding(MDC, "150456", "MDC_PULS_OXIM_SAT_O2"),  # [M] [R4 satO2]
)
_BODY_TEMPERATURE = (
    Coding(LOINC, "8310-5", "Body temperature"),  # [M] [R4 body-temperature]
    Coding(MDC, "150364", "MDC_TEMP_BODY"),  # [M] [PHD temperature-observation]
)
# [M] proposes 39106-0 (marked "verify"): LOINC defines 39106-0 "Temperature of Skin" as a nominal
# finding (Property Find, Scale Nom; answers such as "Cold"), not a measured temperature.
# 61008-9 "Body surface temperature" is the quantitative term (Property Temp, Scale Qn, deg C).
_SKIN_TEMPERATURE = (Coding(LOINC, "61008-9", "Body surface temperature"),)
_BLOOD_PRESSURE = (
    Coding(LOINC, "85354-9", "Blood pressure panel with all children optional"),  # [M] [R4 bp]
    Coding(MDC, "150020", "MDC_PRESS_BLD_NONINV"),  # [M] [PHD compound-numeric-blood-pressure]
)
_SYSTOLIC = (
    Coding(LOINC, "8480-6", "Systolic blood pressure"),  # [M] [R4 bp]
    Coding(MDC, "150021", "MDC_PRESS_BLD_NONINV_SYS"),  # [M] [PHD]
)
_DIASTOLIC = (
    Coding(LOINC, "8462-4", "Diastolic blood pressure"),  # [M] [R4 bp]
    Coding(MDC, "150022", "MDC_PRESS_BLD_NONINV_DIA"),  # [M] [PHD]
)
_MEAN = (
    Coding(LOINC, "8478-0", "Mean blood pressure"),  # [M]
    Coding(MDC, "150023", "MDC_PRESS_BLD_NONINV_MEAN"),  # [M] [PHD]
)
_BODY_WEIGHT = (
    Coding(LOINC, "29463-7", "Body weight"),  # [M] [HK]
    Coding(MDC, "188736", "MDC_MASS_BODY_ACTUAL"),  # [M]
)
_BODY_HEIGHT = (
    Coding(LOINC, "8302-2", "Body height"),  # [M] [R4 body-height]
    Coding(MDC, "188740", "MDC_LEN_BODY_ACTUAL"),  # [M]
)
_BODY_MASS_INDEX = (
    Coding(LOINC, "39156-5", "Body mass index (BMI) [Ratio]"),  # [M] [R4 bmi]
    Coding(MDC, "188752", "MDC_RATIO_MASS_BODY_LEN_SQ"),  # [M]
)
_BODY_FAT = (Coding(LOINC, "41982-0", "Percentage of body fat Measured"),)  # [M] [HK]
# Glucose is coded by the specimen it was measured in, never by guess: a CGM sensor measures
# interstitial fluid, a meter capillary blood, and the two differ (ISF lags blood by minutes).
# Adapters pick the measure from what the source states (gateway.measures.specimen).
_BLOOD_GLUCOSE = (
    Coding(LOINC, "41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer"),  # [M]
    Coding(MDC, "160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),  # [M]
)
_INTERSTITIAL_GLUCOSE = (
    Coding(LOINC, "99504-3", "Glucose [Mass/volume] in Interstitial fluid"),  # [CGM]
)
# [CGM] molar form of the same observation; readings coded so are accepted (CODE_ALIASES) and
# stored in the measure's canonical mg/dL under 99504-3, converted with glucose's molar mass.
INTERSTITIAL_GLUCOSE_MOLAR = Coding(
    LOINC, "105272-9", "Glucose [Moles/volume] in Interstitial fluid"
)
# Glucose whose source does not say the specimen (HealthKit has no specimen key; Health Connect
# SPECIMEN_SOURCE_UNKNOWN; an Open mHealth data point without specimen_source). No LOINC term is
# specimen-neutral [LOINC]: 2339-0 claims blood, 2345-7 serum or plasma, 41653-7 capillary blood,
# and an XXX term would need Observation.specimen, which such a source cannot give. So it is coded
# in the gateway's own system only, with no LOINC claim at all.
_GLUCOSE_UNSPECIFIED = (
    Coding(GATEWAY_MEASURE, "glucose", "Glucose [Mass/volume], specimen not stated"),
)
# [M] [HK]
_STEP_COUNT = (Coding(LOINC, "55423-8", "Number of steps in unspecified time Pedometer"),)
# [M] [HK]; SDNN only: RMSSD is a different quantity and never stored under this code [M].
_HRV_SDNN = (Coding(LOINC, "80404-7", "R-R interval.standard deviation (Heart rate variability)"),)


def _single(
    name: str,
    category: str,
    codings: tuple[Coding, ...],
    *,
    ucum: str,
    unit: str,
    accepts: Mapping[str, UnitConversion],
    hard: ValueRange,
    soft: ValueRange | None = None,
    interval: bool = False,
) -> Measure:
    value = ComponentSpec("value", codings, ucum, unit, accepts, hard, soft)
    return Measure(name, category, codings, (value,), interval=interval)


# Ranges: [M]. `unit` (valueQuantity.unit) follows the R4 examples where they give one.
_TABLE = (
    _single(
        "heart-rate", "vital-signs", _HEART_RATE,
        ucum="/min", unit="beats/minute", accepts=_PER_MINUTE_HEART,
        hard=ValueRange(20, 300), soft=ValueRange(35, 200),
    ),
    _single(
        "resting-heart-rate", "vital-signs", _RESTING_HEART_RATE,
        ucum="/min", unit="beats/minute", accepts=_PER_MINUTE_HEART,
        hard=ValueRange(20, 200), soft=ValueRange(35, 110),
    ),
    _single(
        "respiratory-rate", "vital-signs", _RESPIRATORY_RATE,
        ucum="/min", unit="breaths/minute", accepts=_PER_MINUTE_BREATHS,
        hard=ValueRange(2, 80), soft=ValueRange(8, 30),
    ),
    _single(
        "oxygen-saturation", "vital-signs", _OXYGEN_SATURATION,
        ucum="%", unit="%", accepts=_PERCENT,
        hard=ValueRange(50, 100), soft=ValueRange(88, 100),
    ),
    _single(
        "body-temperature", "vital-signs", _BODY_TEMPERATURE,
        ucum="Cel", unit="C", accepts=_CELSIUS,
        hard=ValueRange(25, 45), soft=ValueRange(35, 39),
    ),
    _single(
        "skin-temperature", "vital-signs", _SKIN_TEMPERATURE,
        ucum="Cel", unit="C", accepts=_CELSIUS,
        hard=ValueRange(15, 45), soft=ValueRange(25, 40),
    ),
    Measure(
        "blood-pressure", "vital-signs", _BLOOD_PRESSURE,
        (
            ComponentSpec(
                "systolic", _SYSTOLIC, "mm[Hg]", "mmHg", _MM_HG,
                hard=ValueRange(40, 300), soft=ValueRange(90, 180),
            ),
            ComponentSpec(
                "diastolic", _DIASTOLIC, "mm[Hg]", "mmHg", _MM_HG,
                hard=ValueRange(20, 200), soft=ValueRange(50, 110),
            ),
            ComponentSpec(
                "mean", _MEAN, "mm[Hg]", "mmHg", _MM_HG,
                hard=ValueRange(30, 250), required=False,
            ),
        ),
        panel=True,
    ),
    _single(
        "body-weight", "vital-signs", _BODY_WEIGHT,
        ucum="kg", unit="kg", accepts=_KILOGRAM,
        hard=ValueRange(0.3, 650),
    ),
    _single(
        "body-height", "vital-signs", _BODY_HEIGHT,
        ucum="cm", unit="cm", accepts=_CENTIMETRE,
        hard=ValueRange(30, 272),
    ),
    _single(
        "body-mass-index", "vital-signs", _BODY_MASS_INDEX,
        ucum="kg/m2", unit="kg/m2", accepts=_KG_PER_M2,
        hard=ValueRange(8, 120), soft=ValueRange(15, 50),
    ),
    _single(
        "body-fat-percentage", "vital-signs", _BODY_FAT,
        ucum="%", unit="%", accepts=_PERCENT,
        hard=ValueRange(2, 75),
    ),
    # A meter reading is a point-of-care test, so observation-category "laboratory".
    _single(
        "blood-glucose", "laboratory", _BLOOD_GLUCOSE,
        ucum="mg/dL", unit="mg/dL", accepts=_MG_PER_DL,
        hard=ValueRange(0, 1000),
    ),
    # A CGM sensor reading; `unit` is the [CGM] profile's fixed valueQuantity.unit.
    _single(
        "interstitial-glucose", "laboratory", _INTERSTITIAL_GLUCOSE,
        ucum="mg/dL", unit="mg/dl", accepts=_MG_PER_DL,
        hard=ValueRange(0, 1000),
    ),
    _single(
        "glucose", "laboratory", _GLUCOSE_UNSPECIFIED,
        ucum="mg/dL", unit="mg/dL", accepts=_MG_PER_DL,
        hard=ValueRange(0, 1000),
    ),
    _single(
        "step-count", "activity", _STEP_COUNT,
        ucum="{steps}", unit="steps", accepts=_STEPS,
        hard=ValueRange(0, 100_000), interval=True,
    ),
    _single(
        "heart-rate-variability-sdnn", "vital-signs", _HRV_SDNN,
        ucum="ms", unit="ms", accepts=_MILLISECOND,
        hard=ValueRange(1, 500),
    ),
)  # fmt: skip

MEASURES: Mapping[str, Measure] = MappingProxyType({m.name: m for m in _TABLE})

# Codings that name a measure on input (a FHIR Observation's code) but are not written on output.
CODE_ALIASES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        (LOINC, INTERSTITIAL_GLUCOSE_MOLAR.code): "interstitial-glucose",
    }
)

# FHIR profiles a measure's Observation claims when it has the shape the profile requires:
# [CGM] CGMSensorReadingMassPerVolume needs effectiveDateTime (a point reading, not a period).
POINT_PROFILES: Mapping[str, str] = MappingProxyType(
    {
        "interstitial-glucose": (
            "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-sensor-reading-mass-per-volume"
        ),
    }
)

# Largest plausible count per minute of an interval measure's period: [M] "<= 300 per minute".
MAX_RATE_PER_MINUTE: Mapping[str, float] = MappingProxyType({"step-count": 300})
