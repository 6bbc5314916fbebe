from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.measures.table import (
    CODE_ALIASES,
    GATEWAY_MEASURE,
    LOINC,
    MAX_RATE_PER_MINUTE,
    MDC,
    MEASURES,
    POINT_PROFILES,
)
from gateway.models import ComponentSpec, Measure, UnitConversion

FIXTURES = Path(__file__).parents[1] / "fixtures" / "fhir-r4"

# Written out independently of the table, from ../shared/reference/measures.md, so that a slip in
# the table (e.g. 8867-4 heart rate on the diastolic component) cannot also be in the expectation.
EXPECTED_LOINC = {
    ("heart-rate", "value"): "8867-4",
    ("resting-heart-rate", "value"): "40443-4",
    ("respiratory-rate", "value"): "9279-1",
    ("oxygen-saturation", "value"): "2708-6",
    ("body-temperature", "value"): "8310-5",
    ("skin-temperature", "value"): "61008-9",
    ("blood-pressure", "systolic"): "8480-6",
    ("blood-pressure", "diastolic"): "8462-4",
    ("blood-pressure", "mean"): "8478-0",
    ("body-weight", "value"): "29463-7",
    ("body-height", "value"): "8302-2",
    ("body-mass-index", "value"): "39156-5",
    ("body-fat-percentage", "value"): "41982-0",
    ("blood-glucose", "value"): "41653-7",
    # HL7 CGM IG STU1 profile CGMSensorReadingMassPerVolume fixes this code.
    ("interstitial-glucose", "value"): "99504-3",
    ("step-count", "value"): "55423-8",
    ("heart-rate-variability-sdnn", "value"): "80404-7",
}
# Glucose from a source that does not state the specimen: no LOINC term is specimen-neutral, so it
# carries only the gateway's own code (its `loinc` property is that code).
UNCODED_IN_LOINC = {("glucose", "value"): "glucose"}
EXPECTED_MEASURE_LOINC = (
    {name: code for (name, component), code in EXPECTED_LOINC.items() if component == "value"}
    | {"blood-pressure": "85354-9"}
    | {name: code for (name, _), code in UNCODED_IN_LOINC.items()}
)
EXPECTED_MDC = {
    ("heart-rate", "value"): "147842",
    ("respiratory-rate", "value"): "151562",
    ("oxygen-saturation", "value"): "150456",
    ("body-temperature", "value"): "150364",
    ("blood-pressure", "systolic"): "150021",
    ("blood-pressure", "diastolic"): "150022",
    ("blood-pressure", "mean"): "150023",
    ("body-weight", "value"): "188736",
    ("body-height", "value"): "188740",
    ("body-mass-index", "value"): "188752",
    ("blood-glucose", "value"): "160184",
}
EXPECTED_UCUM = {
    ("heart-rate", "value"): "/min",
    ("resting-heart-rate", "value"): "/min",
    ("respiratory-rate", "value"): "/min",
    ("oxygen-saturation", "value"): "%",
    ("body-temperature", "value"): "Cel",
    ("skin-temperature", "value"): "Cel",
    ("blood-pressure", "systolic"): "mm[Hg]",
    ("blood-pressure", "diastolic"): "mm[Hg]",
    ("blood-pressure", "mean"): "mm[Hg]",
    ("body-weight", "value"): "kg",
    ("body-height", "value"): "cm",
    ("body-mass-index", "value"): "kg/m2",
    ("body-fat-percentage", "value"): "%",
    ("blood-glucose", "value"): "mg/dL",
    ("interstitial-glucose", "value"): "mg/dL",
    ("glucose", "value"): "mg/dL",
    ("step-count", "value"): "{steps}",
    ("heart-rate-variability-sdnn", "value"): "ms",
}

COMPONENTS = [(m, spec) for m in MEASURES.values() for spec in m.components]


COMPONENT_IDS = [f"{m.name}.{s.name}" for m, s in COMPONENTS]


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC codes end in a mod-10 (Luhn) check digit (LOINC Users' Guide, Appendix)."""
    number, _, check = code.partition("-")
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10 == int(check)


def test_the_table_has_exactly_the_expected_measures_and_components() -> None:
    assert {(m.name, s.name) for m, s in COMPONENTS} == set(EXPECTED_LOINC) | set(UNCODED_IN_LOINC)


@pytest.mark.parametrize(("measure", "spec"), COMPONENTS, ids=COMPONENT_IDS)
def test_every_component_is_coded_with_its_own_loinc_code(
    measure: Measure, spec: ComponentSpec
) -> None:
    codings = spec.codings
    if (measure.name, spec.name) in UNCODED_IN_LOINC:
        assert [(c.system, c.code) for c in codings] == [
            (GATEWAY_MEASURE, UNCODED_IN_LOINC[(measure.name, spec.name)])
        ]
        return
    assert codings[0].system == LOINC
    assert codings[0].code == EXPECTED_LOINC[(measure.name, spec.name)]


# LOINC terms whose System is capillary blood (BldC), and the MDC capillary glucose code.
CAPILLARY_GLUCOSE_CODES = {"41653-7", "160184"}


def test_only_blood_glucose_claims_capillary_blood() -> None:
    claims = {
        name
        for name, m in MEASURES.items()
        for c in m.codings + tuple(c for s in m.components for c in s.codings)
        if c.code in CAPILLARY_GLUCOSE_CODES
    }
    assert claims == {"blood-glucose"}


def test_glucose_of_unstated_specimen_claims_no_loinc_specimen() -> None:
    assert all(c.system != LOINC for c in MEASURES["glucose"].codings)


def test_interstitial_glucose_is_coded_and_profiled_as_the_cgm_ig_says() -> None:
    measure = MEASURES["interstitial-glucose"]
    assert [(c.system, c.code) for c in measure.codings] == [(LOINC, "99504-3")]
    (value,) = measure.components
    # CGMSensorReadingMassPerVolume: valueQuantity = 'mg/dL' "mg/dl".
    assert (value.ucum, value.unit_display) == ("mg/dL", "mg/dl")
    assert POINT_PROFILES["interstitial-glucose"] == (
        "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-sensor-reading-mass-per-volume"
    )
    # CGMSensorReadingMolesPerVolume's code names the same measure on input.
    assert CODE_ALIASES[(LOINC, "105272-9")] == "interstitial-glucose"
    assert loinc_check_digit_ok("105272-9")


def test_diastolic_is_never_coded_as_heart_rate() -> None:
    diastolic = next(s for s in MEASURES["blood-pressure"].components if s.name == "diastolic")
    assert "8867-4" not in {c.code for c in diastolic.codings}


@pytest.mark.parametrize(("measure", "spec"), COMPONENTS, ids=COMPONENT_IDS)
def test_mdc_codes_match_the_reference(measure: Measure, spec: ComponentSpec) -> None:
    mdc = [c.code for c in spec.codings if c.system == MDC]
    expected = EXPECTED_MDC.get((measure.name, spec.name))
    assert mdc == ([expected] if expected else [])


def test_measure_codes_match_the_reference() -> None:
    assert {name: m.loinc for name, m in MEASURES.items()} == EXPECTED_MEASURE_LOINC
    assert MEASURES["blood-pressure"].codings[1].code == "150020"


def test_every_coding_uses_a_known_system_and_well_formed_code() -> None:
    for measure in MEASURES.values():
        for coding in measure.codings + tuple(c for s in measure.components for c in s.codings):
            assert coding.system in {LOINC, MDC, GATEWAY_MEASURE}
            assert coding.display
            if coding.system == LOINC:
                assert loinc_check_digit_ok(coding.code), coding.code
            elif coding.system == MDC:
                # MDC decimal code = partition << 16 | term code; all of ours are SCADA (2).
                assert int(coding.code) >> 16 == 2, coding.code


def test_loinc_check_digit_rejects_a_wrong_check_digit() -> None:
    assert loinc_check_digit_ok("8867-4")
    assert not loinc_check_digit_ok("8867-5")


def test_loinc_comes_first_then_mdc_in_every_coding_list() -> None:
    for measure in MEASURES.values():
        for codings in [measure.codings, *(s.codings for s in measure.components)]:
            systems = [c.system for c in codings]
            assert systems == sorted(systems, key=lambda s: s != LOINC)


def test_oxygen_saturation_codings_are_those_of_the_r4_example() -> None:
    example = json.loads((FIXTURES / "observation-example-satO2.json").read_text())
    ours = [
        {"system": c.system, "code": c.code, "display": c.display}
        for c in MEASURES["oxygen-saturation"].codings
    ]
    assert ours == example["code"]["coding"]


@pytest.mark.parametrize(("measure", "spec"), COMPONENTS, ids=COMPONENT_IDS)
def test_canonical_unit_is_the_expected_ucum_code_and_converts_with_factor_one(
    measure: Measure, spec: ComponentSpec
) -> None:
    assert spec.ucum == EXPECTED_UCUM[(measure.name, spec.name)]
    assert spec.conversions[spec.ucum] == UnitConversion(1.0, 0.0)


@pytest.mark.parametrize(("measure", "spec"), COMPONENTS, ids=COMPONENT_IDS)
def test_soft_range_lies_inside_hard_range(measure: Measure, spec: ComponentSpec) -> None:
    hard, soft = spec.hard, spec.soft
    assert hard.low < hard.high
    if soft is not None:
        assert hard.low <= soft.low < soft.high <= hard.high


def test_ranges_match_the_reference() -> None:
    ranges = {
        (m.name, s.name): (s.hard.low, s.hard.high, s.soft and (s.soft.low, s.soft.high))
        for m, s in COMPONENTS
    }
    assert ranges == {
        ("heart-rate", "value"): (20, 300, (35, 200)),
        ("resting-heart-rate", "value"): (20, 200, (35, 110)),
        ("respiratory-rate", "value"): (2, 80, (8, 30)),
        ("oxygen-saturation", "value"): (50, 100, (88, 100)),
        ("body-temperature", "value"): (25, 45, (35, 39)),
        ("skin-temperature", "value"): (15, 45, (25, 40)),
        ("blood-pressure", "systolic"): (40, 300, (90, 180)),
        ("blood-pressure", "diastolic"): (20, 200, (50, 110)),
        ("blood-pressure", "mean"): (30, 250, None),
        ("body-weight", "value"): (0.3, 650, None),
        ("body-height", "value"): (30, 272, None),
        ("body-mass-index", "value"): (8, 120, (15, 50)),
        ("body-fat-percentage", "value"): (2, 75, None),
        ("blood-glucose", "value"): (0, 1000, None),
        ("interstitial-glucose", "value"): (0, 1000, None),
        ("glucose", "value"): (0, 1000, None),
        ("step-count", "value"): (0, 100_000, None),
        ("heart-rate-variability-sdnn", "value"): (1, 500, None),
    }


def test_blood_pressure_is_a_panel_with_systolic_and_diastolic_required() -> None:
    bp = MEASURES["blood-pressure"]
    assert bp.panel
    assert [(s.name, s.required) for s in bp.components] == [
        ("systolic", True),
        ("diastolic", True),
        ("mean", False),
    ]


def test_single_valued_measures_have_one_value_component_coded_like_the_measure() -> None:
    for measure in MEASURES.values():
        if not measure.panel:
            (spec,) = measure.components
            assert spec.name == "value"
            assert spec.codings == measure.codings


def test_only_step_count_is_an_interval_measure_and_has_a_rate_limit() -> None:
    assert [m.name for m in MEASURES.values() if m.interval] == ["step-count"]
    assert dict(MAX_RATE_PER_MINUTE) == {"step-count": 300}


def test_categories() -> None:
    assert {name: m.category for name, m in MEASURES.items() if m.category != "vital-signs"} == {
        "step-count": "activity",
        "blood-glucose": "laboratory",
        "interstitial-glucose": "laboratory",
        "glucose": "laboratory",
    }


def test_exact_conversion_factors() -> None:
    weight = MEASURES["body-weight"].components[0].conversions
    height = MEASURES["body-height"].components[0].conversions
    glucose = MEASURES["blood-glucose"].components[0].conversions
    for other in ("interstitial-glucose", "glucose"):
        assert MEASURES[other].components[0].conversions == glucose
    temperature = MEASURES["body-temperature"].components[0].conversions
    assert weight["[lb_av]"].factor == 0.45359237  # UCUM: [lb_av] = 7000 [gr] = 453.59237 g
    assert height["[in_i]"].factor == 2.54  # UCUM: [in_i] = 2.54 cm
    assert glucose["mmol/L"].factor == pytest.approx(180.156 / 10, abs=1e-4)  # g/mol -> mg/dL
    assert temperature["[degF]"].factor * 212 + temperature["[degF]"].offset == pytest.approx(100)
    assert temperature["K"].factor * 273.15 + temperature["K"].offset == pytest.approx(0)


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        MEASURES["heart-rate"] = MEASURES["body-weight"]  # type: ignore[index]
