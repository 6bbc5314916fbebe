"""What the bridge (`bridge`) and export.xml (`export`) readers share in turning one HealthKit
sample into a candidate reading: its unit as a UCUM quantity, its device id, and the rejection
messages, which name Apple's identifiers and units but never free text from the payload."""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.adapters.healthkit.codes import GLUCOSE_MOLAR_UNIT, UnitMapping
from gateway.measures.specimen import GLUCOSE_MEASURES, Specimen, glucose_measure
from gateway.models import DeviceInfo, Quantity

# Shape of an identifier that is safe to name in a rejection message: Apple's own spelling.
_IDENTIFIER = re.compile(r"HK[A-Za-z]+TypeIdentifier[A-Za-z0-9]{1,80}")


def hk_unit(unit: str) -> str:
    """The key under which `unit` is looked up in a type's unit table."""
    return "mmol/L" if GLUCOSE_MOLAR_UNIT.fullmatch(unit) else unit


def sample_measure(measure: str, device: DeviceInfo) -> str:
    """The measure of a sample of `measure` from `device`: a glucose sample, whose specimen
    HealthKit never states, is interstitial when its device is a known CGM and otherwise stays
    "glucose", specimen not stated (never capillary blood)."""
    if measure == GLUCOSE_MEASURES[Specimen.UNKNOWN]:
        return glucose_measure(Specimen.UNKNOWN, device)
    return measure


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
