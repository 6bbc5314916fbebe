"""The closed device vocabulary: what of a device's description may be kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.devices import MAKERS, MODEL_FAMILIES, describe
from gateway.models import DeviceInfo


@pytest.mark.parametrize(
    ("manufacturer", "maker"),
    [
        ("Apple Inc.", "Apple"),
        ("withings", "Withings"),
        ("samsung", "Samsung"),
        ("Nonin Medical, Inc.", "Nonin"),
        ("OMRONHEALTHCARE", "Omron"),
        ("Acme", "other"),
        ("CANARY-MAKER-51aa", "other"),
    ],
)
def test_manufacturers_become_their_maker_or_other(manufacturer: str, maker: str) -> None:
    assert MAKERS.family(manufacturer) == maker


def test_a_device_keeps_its_id_and_only_table_values_of_its_description() -> None:
    described = describe(DeviceInfo("SN-1", model="Zhang Wei's Watch6,2", manufacturer="Apple"))
    assert described == DeviceInfo("SN-1", model="other", manufacturer="Apple")


def test_an_absent_description_stays_absent() -> None:
    assert describe(DeviceInfo("SN-1")) == DeviceInfo("SN-1")


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_text_describes_to_a_table_value_that_describes_to_itself(
    model: str, manufacturer: str
) -> None:
    once = describe(DeviceInfo("x", model=model, manufacturer=manufacturer))
    assert once.model in MODEL_FAMILIES.names.values() or once.model == MODEL_FAMILIES.unknown
    assert once.manufacturer in MAKERS.names.values()
    assert describe(once) == once
