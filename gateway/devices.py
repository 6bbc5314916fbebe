"""The closed vocabulary of device descriptions: model -> model family, manufacturer -> maker.

Vendor payloads describe a device in free text (a FHIR `deviceName` used as the model, a
HealthKit `manufacturer`, a Health Connect `Device.model`, ...). Such text may be anything a user
or an app put there: a serial, a person's name ("Zhang Wei's watch"). Only values of
these tables are kept, stored in `devices` or served; normalise maps every reading's device
through them (`describe`), research extracts show the same families (gateway.deid.device), and
migration 0011 mapped the rows stored before. Anything not in a table becomes "other" rather
than passing through.

An exact model ("Watch6,2", "BPM Connect", Withings model id 45) also narrows a subject down far
more than the kind of device does; the family is what a clinician or researcher needs to judge
the measurement method.

Every family and maker name maps to itself, so a described device describes to itself.
The tables are data; each block names its source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from gateway.models import DeviceInfo

UNKNOWN_FAMILY: Final = "other"

APPLE_WATCH: Final = "Apple Watch"
IPHONE: Final = "iPhone"
WITHINGS_SCALE: Final = "Withings scale"
WITHINGS_BPM: Final = "Withings BPM"
WITHINGS_TRACKER: Final = "Withings activity tracker"
WITHINGS_SLEEP: Final = "Withings sleep sensor"
WITHINGS_THERMOMETER: Final = "Withings thermometer"
PHONE_APP: Final = "phone app"
NONIN_OXIMETER: Final = "Nonin pulse oximeter"
OMRON_BPM: Final = "Omron BPM"

# Withings model names, matched case-insensitively. Source: Withings API reference, "User v2 -
# Getdevice", field `model` ("Value can be: …"), https://developer.withings.com/api-reference,
# and the same names in Getmeas / Getintradayactivity `model` fields.
_WITHINGS_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "withings wbs01": WITHINGS_SCALE,
        "ws30": WITHINGS_SCALE,
        "kid scale": WITHINGS_SCALE,
        "smart body analyzer": WITHINGS_SCALE,
        "body+": WITHINGS_SCALE,
        "body cardio": WITHINGS_SCALE,
        "body": WITHINGS_SCALE,
        "body scan": WITHINGS_SCALE,
        "body pro": WITHINGS_SCALE,
        "body comp": WITHINGS_SCALE,
        "body smart": WITHINGS_SCALE,
        "wbs10": WITHINGS_SCALE,
        "wbs11": WITHINGS_SCALE,
        "withings blood pressure monitor v1": WITHINGS_BPM,
        "withings blood pressure monitor v2": WITHINGS_BPM,
        "withings blood pressure monitor v3": WITHINGS_BPM,
        "bpm core": WITHINGS_BPM,
        "bpm connect": WITHINGS_BPM,
        "bpm connect pro": WITHINGS_BPM,
        "bpm pro 2": WITHINGS_BPM,
        "bpm vision": WITHINGS_BPM,
        "pulse": WITHINGS_TRACKER,
        "activite": WITHINGS_TRACKER,
        "activite (pop, steel)": WITHINGS_TRACKER,
        "withings go": WITHINGS_TRACKER,
        "activite steel hr": WITHINGS_TRACKER,
        "activite steel hr sport edition": WITHINGS_TRACKER,
        "pulse hr": WITHINGS_TRACKER,
        "move": WITHINGS_TRACKER,
        "move ecg": WITHINGS_TRACKER,
        "scanwatch": WITHINGS_TRACKER,
        "aura dock": WITHINGS_SLEEP,
        "aura sensor": WITHINGS_SLEEP,
        "aura sensor v2": WITHINGS_SLEEP,
        "sleep analyzer": WITHINGS_SLEEP,
        "thermo": WITHINGS_THERMOMETER,
    }
)

# Withings numeric model ids (Heart v2 `model`, Sleep `model_id`; the withings adapter keeps them
# as decimal text). Source: joostlek/python-withings (aiowithings), src/aiowithings/models.py,
# `DeviceModel`, which transcribes the Withings API reference. Ids of phone step counters and
# other apps' feeds (1051-1062) are "phone app": no Withings hardware measured them.
_WITHINGS_MODEL_IDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "1": WITHINGS_SCALE,
        "2": WITHINGS_SCALE,
        "3": WITHINGS_SCALE,
        "4": WITHINGS_SCALE,
        "5": WITHINGS_SCALE,
        "6": WITHINGS_SCALE,
        "7": WITHINGS_SCALE,
        "9": WITHINGS_SCALE,
        "10": WITHINGS_SCALE,
        "11": WITHINGS_SCALE,
        "12": WITHINGS_SCALE,
        "13": WITHINGS_SLEEP,
        "41": WITHINGS_BPM,
        "42": WITHINGS_BPM,
        "43": WITHINGS_BPM,
        "44": WITHINGS_BPM,
        "45": WITHINGS_BPM,
        "46": WITHINGS_BPM,
        "51": WITHINGS_TRACKER,
        "52": WITHINGS_TRACKER,
        "53": WITHINGS_TRACKER,
        "54": WITHINGS_TRACKER,
        "55": WITHINGS_TRACKER,
        "58": WITHINGS_TRACKER,
        "59": WITHINGS_TRACKER,
        "60": WITHINGS_SLEEP,
        "61": WITHINGS_SLEEP,
        "63": WITHINGS_SLEEP,
        "70": WITHINGS_THERMOMETER,
        "90": WITHINGS_TRACKER,
        "91": WITHINGS_TRACKER,
        "92": WITHINGS_TRACKER,
        "93": WITHINGS_TRACKER,
        "1051": PHONE_APP,
        "1052": PHONE_APP,
        "1053": PHONE_APP,
        "1054": PHONE_APP,
        "1055": PHONE_APP,
        "1056": PHONE_APP,
        "1057": PHONE_APP,
        "1058": PHONE_APP,
        "1059": PHONE_APP,
        "1060": PHONE_APP,
        "1062": PHONE_APP,
    }
)

# Models named in the HL7 Personal Health Device IG's examples (tests/fixtures/phd/, HL7/phd
# commit 5af8412f): Device.modelNumber "Model 3230" and "Model 3150" with manufacturer Nonin
# Medical (Nonin's 3230 and WristOx2 3150 oximeters), "HEM-9200T" with manufacturer
# OMRONHEALTHCARE (Omron's HEM-9200T upper-arm monitor).
_PHD_MODELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "model 3230": NONIN_OXIMETER,
        "model 3150": NONIN_OXIMETER,
        "hem-9200t": OMRON_BPM,
    }
)

_FAMILIES: Final = (
    APPLE_WATCH, IPHONE, WITHINGS_SCALE, WITHINGS_BPM, WITHINGS_TRACKER, WITHINGS_SLEEP,
    WITHINGS_THERMOMETER, PHONE_APP, NONIN_OXIMETER, OMRON_BPM,
)  # fmt: skip

# Apple hardware model identifiers, as HealthKit's HKDevice.hardwareVersion gives them (the
# healthkit adapter stores that as the model): "Watch<major>,<minor>" for every Apple Watch,
# "iPhone<major>,<minor>" for iPhones. Source: Apple, HKDevice.hardwareVersion
# (https://developer.apple.com/documentation/healthkit/hkdevice/hardwareversion), and the
# identifiers Apple lists per model in "Identify your Apple Watch" (support.apple.com/HT204507).
_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"Watch[1-9][0-9]?,[1-9][0-9]?"), APPLE_WATCH),
    (re.compile(r"iPhone[1-9][0-9]?,[1-9][0-9]?"), IPHONE),
)


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """A closed table, free text -> one of its values: exact names (case-insensitive) and
    whole-string patterns. Compared by identity: a policy refers to one table."""

    names: Mapping[str, str]
    patterns: tuple[tuple[re.Pattern[str], str], ...] = ()
    unknown: str = UNKNOWN_FAMILY
    # Names are matched after case folding and whitespace trimming.
    _folded: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = {name.strip().casefold(): family for name, family in self.names.items()}
        object.__setattr__(self, "_folded", MappingProxyType(folded))

    def family(self, text: str | None) -> str:
        """The value `text` stands for; `unknown` ("other") when the table does not know it."""
        if text is None:
            return self.unknown
        text = text.strip()
        found = self._folded.get(text.casefold())
        if found is not None:
            return found
        for pattern, family in self.patterns:
            if pattern.fullmatch(text):
                return family
        return self.unknown


MODEL_FAMILIES: Final = Vocabulary(
    names=MappingProxyType(
        {
            **_WITHINGS_NAMES,
            **_WITHINGS_MODEL_IDS,
            **_PHD_MODELS,
            **{family: family for family in (*_FAMILIES, UNKNOWN_FAMILY)},
        }
    ),
    patterns=_PATTERNS,
)

APPLE: Final = "Apple"
WITHINGS: Final = "Withings"
GOOGLE: Final = "Google"
SAMSUNG: Final = "Samsung"
NONIN: Final = "Nonin"
OMRON: Final = "Omron"
DEXCOM: Final = "Dexcom"

# Manufacturer names as payloads spell them -> maker, matched case-insensitively.
_MAKER_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # HKDevice.manufacturer of Apple hardware, as Apple Health exports show it
        # (tests/fixtures/healthkit/*.xml: "manufacturer:Apple Inc.").
        "apple inc.": APPLE,
        "apple": APPLE,
        # The maker of every Withings device (Withings API reference; the withings adapter
        # sets it for Withings payloads).
        "withings": WITHINGS,
        # Health Connect Device.manufacturer is Android's Build.MANUFACTURER
        # (developer.android.com/reference/androidx/health/connect/client/records/metadata/Device:
        # 'The manufacturer of the device, e.g. "Google"'); Samsung devices report "samsung".
        "google": GOOGLE,
        "samsung": SAMSUNG,
        # HL7 PHD IG examples (tests/fixtures/phd/): Device.manufacturer of the Nonin and Omron
        # devices named in _PHD_MODELS.
        "nonin medical, inc.": NONIN,
        "nonin_medical_inc.": NONIN,
        "omronhealthcare": OMRON,
        # HKDevice.manufacturer of Dexcom sensors as iOS CGM apps write it to HealthKit
        # (LoopKit/CGMBLEKit, CGMBLEKit/TransmitterManager.swift: HKDevice(manufacturer: "Dexcom",
        # model: "G5 Mobile" / "G6" / "G7", ...)).
        "dexcom": DEXCOM,
        "dexcom, inc.": DEXCOM,
    }
)
_MAKERS: Final = (APPLE, WITHINGS, GOOGLE, SAMSUNG, NONIN, OMRON, DEXCOM)

# Makers every one of whose devices is a continuous glucose monitor: a glucose reading from one of
# them was measured in interstitial fluid. Dexcom, Inc. makes CGM systems only (G4-G7, ONE,
# Stelo; its annual reports (Form 10-K, Item 1 "Business") describe the company as focused on
# continuous glucose monitoring systems). Makers of both meters and sensors (Abbott: FreeStyle
# meters and FreeStyle Libre) are no such signal and are not listed.
CGM_MAKERS: Final = frozenset({DEXCOM})

MAKERS: Final = Vocabulary(
    names=MappingProxyType(
        {**_MAKER_NAMES, **{maker: maker for maker in (*_MAKERS, UNKNOWN_FAMILY)}}
    )
)


def model_family(model: str | None, table: Vocabulary = MODEL_FAMILIES) -> str:
    """The model family stored, served and exported instead of the device model."""
    return table.family(model)


def is_cgm(device: DeviceInfo) -> bool:
    """Whether the closed tables say `device` is a continuous glucose monitor (its maker makes
    nothing else). Free text outside the tables never makes a device a CGM."""
    return MAKERS.family(device.manufacturer) in CGM_MAKERS


def describe(device: DeviceInfo) -> DeviceInfo:
    """`device` with its model and manufacturer replaced by their family and maker; absent stays
    absent. The id is left as it is: it only ever leaves as a keyed pseudonym."""
    model = None if device.model is None else MODEL_FAMILIES.family(device.model)
    maker = None if device.manufacturer is None else MAKERS.family(device.manufacturer)
    if model == device.model and maker == device.manufacturer:
        return device
    return DeviceInfo(device.id, model=model, manufacturer=maker)
