"""Whether a study's research extract may be released, and to which subjects (pure: no I/O).

ARCHITECTURE §2: only de-identified research extracts may leave a zone, and only when the
study's transfer mechanism, the subject's cross-border consent and the policy allow it.

- Every subject in an extract gave research consent.
- A recipient outside the zone's jurisdiction (cn: mainland China, "CN"; eu: the EU/EEA member
  states) is a cross-border transfer. It needs, in addition, each subject's cross-border consent
  (PIPL art. 39: separate consent to provision abroad; GDPR art. 49(1)(a) where no other ground),
  an unexpired transfer mechanism of a kind the zone's law recognises (PIPL art. 38(1): CAC
  security assessment, (2) certification, (3) the CAC standard contract; GDPR art. 46(2)(c):
  the Commission's standard contractual clauses (Decision (EU) 2021/914, modules 1-4), with a
  transfer impact assessment as required by CJEU C-311/18 "Schrems II"), and the export may only
  carry the study's own measures.

`POLICY_VERSION` names these rules in every audit record and manifest, so an auditor can tell
which rules a past release was judged by.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Final

POLICY_VERSION: Final = "export-policy/1"

# EU member states (TEU art. 52) and the EEA EFTA states (EEA Agreement art. 126): Iceland,
# Liechtenstein, Norway. ISO 3166-1 alpha-2, except that the EU writes Greece "EL": both accepted.
EU_EEA: Final = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "EL", "HU",
        "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        "IS", "LI", "NO",
    }
)  # fmt: skip

# Zone -> the countries inside its jurisdiction. "CN" is mainland China: for PIPL, Hong Kong
# (HK), Macao (MO) and Taiwan (TW) are outside it (they are separate ISO codes here as well).
JURISDICTIONS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {"cn": frozenset({"CN"}), "eu": EU_EEA}
)

# Zone -> the transfer mechanism kinds its law recognises.
MECHANISMS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "cn": frozenset({"standard-contract", "certification", "security-assessment"}),
        "eu": frozenset({"scc"}),
    }
)
SCC_MODULES: Final = frozenset({"module-1", "module-2", "module-3", "module-4"})


class Refusal(StrEnum):
    """Why a kick-off is refused; each is an error code clients see in the OperationOutcome."""

    STUDY_EXPIRED = "study-expired"
    MEASURE_NOT_IN_STUDY = "measure-not-in-study"
    TRANSFER_MECHANISM_MISSING = "transfer-mechanism-missing"
    TRANSFER_MECHANISM_EXPIRED = "transfer-mechanism-expired"
    NO_RESEARCH_CONSENT = "no-research-consent"
    NO_CROSS_BORDER_CONSENT = "no-cross-border-consent"


@dataclass(frozen=True, slots=True)
class TransferMechanism:
    kind: str
    reference: str
    tia: str | None = None  # eu: the transfer impact assessment id
    expires_on: date | None = None


@dataclass(frozen=True, slots=True)
class StudyTerms:
    """What the policy needs to know of a study."""

    zone: str
    recipient_country: str
    measures: frozenset[str]
    expires_on: date
    transfer: TransferMechanism | None


@dataclass(frozen=True, slots=True)
class Consent:
    research: bool
    cross_border: bool


@dataclass(frozen=True, slots=True)
class ExportDecision:
    """`refusal` None: allowed, for the subjects `member` accepts."""

    cross_border: bool
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None

    def member(self, consent: Consent) -> bool:
        """Whether a subject with `consent` may be in this extract."""
        return consent.research and (consent.cross_border or not self.cross_border)


def is_cross_border(zone: str, recipient_country: str) -> bool:
    """A recipient outside the zone's jurisdiction. A zone without a listed jurisdiction treats
    every recipient as abroad (fail closed)."""
    return recipient_country.upper() not in JURISDICTIONS.get(zone, frozenset())


def mechanism_problem(zone: str, mechanism: TransferMechanism | None) -> str | None:
    """Why `mechanism` cannot be recorded for a study of `zone` (None: it can)."""
    if mechanism is None:
        return None
    kinds = MECHANISMS.get(zone, frozenset())
    if mechanism.kind not in kinds:
        return f"zone {zone} accepts transfer mechanisms {', '.join(sorted(kinds)) or '(none)'}"
    if not mechanism.reference:
        return "the transfer mechanism needs a reference"
    if mechanism.kind == "scc":
        if mechanism.reference not in SCC_MODULES:
            return f"an SCC mechanism names its module: {', '.join(sorted(SCC_MODULES))}"
        if not mechanism.tia:
            return "an SCC mechanism needs its transfer impact assessment id (--tia)"
    return None


def decide_export(  # noqa: PLR0911 - one return per rule, in the order they apply
    terms: StudyTerms,
    *,
    today: date,
    requested_codes: Collection[str] | None,
    consents: Collection[Consent],
) -> ExportDecision:
    """The kick-off decision for one export of a study.

    `requested_codes`: the measure codes the request narrows to (None: the study's measures);
    `consents`: the consent flags of the zone's subjects at kick-off."""
    cross_border = is_cross_border(terms.zone, terms.recipient_country)

    def refuse(reason: Refusal) -> ExportDecision:
        return ExportDecision(cross_border=cross_border, refusal=reason)

    if terms.expires_on < today:
        return refuse(Refusal.STUDY_EXPIRED)
    if requested_codes is not None and not set(requested_codes) <= terms.measures:
        return refuse(Refusal.MEASURE_NOT_IN_STUDY)
    if cross_border:
        mechanism = terms.transfer
        if mechanism is None or mechanism_problem(terms.zone, mechanism) is not None:
            return refuse(Refusal.TRANSFER_MECHANISM_MISSING)
        if mechanism.expires_on is not None and mechanism.expires_on < today:
            return refuse(Refusal.TRANSFER_MECHANISM_EXPIRED)
    if not any(c.research for c in consents):
        return refuse(Refusal.NO_RESEARCH_CONSENT)
    decision = ExportDecision(cross_border=cross_border)
    if not any(decision.member(c) for c in consents):
        return refuse(Refusal.NO_CROSS_BORDER_CONSENT)
    return decision
