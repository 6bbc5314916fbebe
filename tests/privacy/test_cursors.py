"""FHIR paging cursors: signed for one search in one zone; any change is refused."""

from __future__ import annotations

import pytest

from gateway.privacy import KeyPurpose, ZoneKeyRing
from gateway.privacy.cursors import CursorRejected, CursorSigner

RING = ZoneKeyRing.generate("cn")
SIGNER = CursorSigner(RING)


def test_a_cursor_opens_to_its_position_for_its_search() -> None:
    cursor = SIGNER.sign("Observation?patient=s1-x", ["2024-01-01T00:00:00+00:00", "o1-y"])
    assert SIGNER.open("Observation?patient=s1-x", cursor) == ["2024-01-01T00:00:00+00:00", "o1-y"]


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # tag
        lambda c: c.replace(".", ".e", 1),  # payload
        lambda c: "c9" + c[2:],  # key version
        lambda c: c + "=",
        lambda c: "",
    ],
)
def test_an_altered_cursor_is_refused(change: object) -> None:
    cursor = SIGNER.sign("Observation?", ["2024-01-01T00:00:00+00:00", "o1-y"])
    with pytest.raises(CursorRejected):
        SIGNER.open("Observation?", change(cursor))  # type: ignore[operator]


def test_a_cursor_of_another_search_or_zone_is_refused() -> None:
    cursor = SIGNER.sign("Observation?patient=s1-x", ["t", "o1-y"])
    with pytest.raises(CursorRejected):
        SIGNER.open("Observation?patient=s1-z", cursor)
    with pytest.raises(CursorRejected):
        CursorSigner(ZoneKeyRing.generate("cn")).open("Observation?patient=s1-x", cursor)


def test_cursors_signed_before_a_key_rotation_still_open() -> None:
    cursor = SIGNER.sign("Patient?", ["s1-a"])
    rotated = CursorSigner(RING.with_new_version(KeyPurpose.CURSOR))
    assert rotated.open("Patient?", cursor) == ["s1-a"]


@pytest.mark.parametrize(
    "replacement", list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
)
def test_every_other_spelling_of_the_tag_is_refused(replacement: str) -> None:
    cursor = SIGNER.sign("Observation?", ["2024-01-01T00:00:00+00:00", "o1-y"])
    if cursor[-1] == replacement:
        return
    with pytest.raises(CursorRejected):
        SIGNER.open("Observation?", cursor[:-1] + replacement)
