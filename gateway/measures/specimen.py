"""Which glucose measure a reading is: chosen by the specimen its source states, never guessed.

A CGM sensor measures glucose in interstitial fluid, a meter in capillary blood; the two are
different LOINC observations (99504-3, 41653-7) and differ clinically (interstitial glucose lags
blood glucose). A source that does not say the specimen gets the `glucose` measure, which claims
none (gateway.measures.table). The one other signal used is the device: a reading from a device
the closed device tables know as a CGM (`gateway.devices.is_cgm`) is interstitial.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from gateway.devices import is_cgm
from gateway.models import DeviceInfo


class Specimen(StrEnum):
    """The specimens the gateway has a glucose measure for. Other specimens a source may name
    (plasma, serum, whole blood, tears) have none and are refused by the adapter."""

    CAPILLARY_BLOOD = "capillary-blood"
    INTERSTITIAL_FLUID = "interstitial-fluid"
    UNKNOWN = "unknown"


GLUCOSE_MEASURES: Mapping[Specimen, str] = MappingProxyType(
    {
        Specimen.CAPILLARY_BLOOD: "blood-glucose",
        Specimen.INTERSTITIAL_FLUID: "interstitial-glucose",
        Specimen.UNKNOWN: "glucose",
    }
)


def glucose_measure(specimen: Specimen, device: DeviceInfo) -> str:
    """The measure name of a glucose reading the source says came from `specimen`.

    A stated specimen wins (a CGM app may record a fingerstick calibration as capillary blood);
    an unstated one is interstitial only when the device is a known CGM, and otherwise stays
    unknown: it is never taken to be capillary blood.
    """
    if specimen is Specimen.UNKNOWN and is_cgm(device):
        return GLUCOSE_MEASURES[Specimen.INTERSTITIAL_FLUID]
    return GLUCOSE_MEASURES[specimen]
