"""The k-anonymity gate on the person-level quasi-identifiers of an extract.

An extract is k-anonymous when every combination of quasi-identifiers it releases (age band, sex,
site) is shared by at least k subjects (Sweeney, "k-anonymity: a model for protecting privacy",
2002). The gate first generalises the site of subjects in too-small groups to "*" (one step up a
two-level hierarchy: site -> any site) and regroups them; subjects still in groups smaller than k
are suppressed: none of their data is released.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final, Generic, TypeVar

ANY_SITE: Final = "*"

S = TypeVar("S", bound=Hashable)


@dataclass(frozen=True, slots=True, order=True)
class QuasiIdentifiers:
    """What an extract says about a person: age band at enrolment, sex, enrolling site ("*" once
    generalised)."""

    age_band: str
    sex: str
    site: str


@dataclass(frozen=True, slots=True)
class KResult(Generic[S]):
    """The gate's decision for each subject, and the counts a manifest reports.

    `kept`: subjects released (their quasi-identifiers as in `released`); `generalised`: the kept
    subjects whose site was replaced by "*"; `suppressed`: subjects left out entirely;
    `groups`: the size of every released group, each at least k."""

    k: int
    kept: frozenset[S]
    generalised: frozenset[S]
    suppressed: frozenset[S]
    released: Mapping[S, QuasiIdentifiers]
    groups: Mapping[QuasiIdentifiers, int]


def k_anonymity(
    subjects: Mapping[S, QuasiIdentifiers], k: int, *, generalise_site: bool = True
) -> KResult[S]:
    """Apply the gate to `subjects` (subject -> its quasi-identifiers).

    With `generalise_site`, subjects in groups smaller than k first lose their site; the ones
    still in groups smaller than k are suppressed. Without it they are suppressed at once."""
    if k < 1:
        raise ValueError("k must be at least 1")
    released: dict[S, QuasiIdentifiers] = {}
    generalised: set[S] = set()
    suppressed: set[S] = set()

    small: list[S] = []
    for members in _grouped(subjects).values():
        if len(members) >= k:
            released.update((subject, subjects[subject]) for subject in members)
        else:
            small.extend(members)

    if generalise_site:
        coarser = {s: replace(subjects[s], site=ANY_SITE) for s in small}
        for qi, members in _grouped(coarser).items():
            if len(members) >= k:
                released.update((subject, qi) for subject in members)
                generalised.update(s for s in members if subjects[s].site != ANY_SITE)
            else:
                suppressed.update(members)
    else:
        suppressed.update(small)

    return KResult(
        k=k,
        kept=frozenset(released),
        generalised=frozenset(generalised),
        suppressed=frozenset(suppressed),
        released=MappingProxyType(released),
        groups=MappingProxyType(dict(sorted(Counter(released.values()).items()))),
    )


def _grouped(subjects: Mapping[S, QuasiIdentifiers]) -> dict[QuasiIdentifiers, list[S]]:
    groups: defaultdict[QuasiIdentifiers, list[S]] = defaultdict(list)
    for subject, qi in subjects.items():
        groups[qi].append(subject)
    return groups
