"""The zone's audit log: record an event, verify the chain, export it as FHIR.

Every record is sealed into the zone's keyed hash chain (gateway/privacy/audit_chain.py) and
appended to the zone's own `audit_events` table; it never leaves the zone. `detail` holds ids,
codes, counts and query shapes (parameter names, not values): never identifiers or measured
values.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

import orjson

from gateway.models import ZoneSubject
from gateway.privacy.audit_chain import GENESIS_MAC, AuditEntry, check_detail
from gateway.runtime.zones import Zone
from gateway.storage.audit import AuditDraft, ChainLink, StoredAuditEvent


class AuditAction(StrEnum):
    ENROL = "enrol"
    CONSENT = "consent"
    READ = "read"
    SEARCH = "search"
    EXPORT = "export"
    RELEASE = "release"  # a cross-border release decision for a research extract
    ERASE = "erase"
    KEY_ROTATE = "key-rotate"
    KEY_INIT = "key-init"
    CREDENTIAL_ISSUE = "credential-issue"
    CREDENTIAL_REVOKE = "credential-revoke"


class AuditOutcome(StrEnum):
    """FHIR R4 AuditEvent.outcome (http://hl7.org/fhir/audit-event-outcome)."""

    SUCCESS = "success"  # 0
    REFUSED = "refused"  # 4 minor failure: the request was refused (e.g. forbidden, not found)
    FAILED = "failed"  # 8 serious failure: the action was attempted and failed


Problem = Literal["changed", "deleted", "reordered", "gap"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """`checked` records verified before the first problem (all of them when `ok`). `head_seq`
    and `head_mac` name the last verified record: keep them elsewhere to detect later removal
    of records from the end, which no chain can show by itself."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: Problem | None = None
    head_seq: int = 0
    head_mac: bytes = GENESIS_MAC


async def record(
    zone: Zone,
    *,
    action: AuditAction,
    actor: str,
    subject: ZoneSubject | None,
    outcome: str,
    detail: Mapping[str, object],
) -> None:
    """Append one event to the zone's audit log; returns once it is committed. `subject` is a
    pseudonym the zone's database returned, never a value from a request."""
    if subject is not None and not isinstance(subject, ZoneSubject):
        raise TypeError("an audit subject is a ZoneSubject from this zone's storage")
    action = AuditAction(action)
    outcome = AuditOutcome(outcome)
    check_detail(detail)
    frozen_detail = dict(detail)
    # One chain for the draft and its seal: the zone's ring may be reloaded meanwhile.
    chain = zone.audit
    draft = AuditDraft(
        action=action,
        actor=actor,
        subject=None if subject is None else subject.pseudonym,
        outcome=outcome,
        detail=orjson.dumps(frozen_detail, option=orjson.OPT_SORT_KEYS),
        key_version=chain.key_version,
    )

    def seal(link: ChainLink) -> bytes:
        return chain.seal(
            link.prev_mac,
            AuditEntry(
                zone=zone.name,
                recorded_at=link.recorded_at,
                action=draft.action,
                actor=draft.actor,
                subject=draft.subject,
                outcome=draft.outcome,
                detail=frozen_detail,
                key_version=draft.key_version,
            ),
        )

    await zone.db.audit.append(draft, seal)


def _entry(zone: Zone, event: StoredAuditEvent) -> AuditEntry | None:
    try:
        detail = orjson.loads(event.detail)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(detail, dict):
        return None
    return AuditEntry(
        zone=zone.name,
        recorded_at=event.recorded_at,
        action=event.action,
        actor=event.actor,
        subject=event.subject,
        outcome=event.outcome,
        detail=detail,
        key_version=event.key_version,
    )


async def verify(zone: Zone) -> VerifyReport:
    """Walk the zone's chain in seq order and report the first record that is not where an
    untouched log would have it:

    - `changed`: its MAC does not cover its content (edited, or re-sealed without the key);
    - `reordered`: authentic, but it follows another record than the one before it, and the
      record that should be here is stored elsewhere;
    - `deleted`: authentic, but the record it follows is no longer stored (`first_bad_seq` is
      the first missing seq);
    - `gap`: the chain is intact but its seq numbers skip (renumbered).
    """
    checked = 0
    expected_seq = 1
    expected_prev = GENESIS_MAC

    def bad(seq: int, problem: Problem) -> VerifyReport:
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=seq,
            problem=problem,
            head_seq=expected_seq - 1,
            head_mac=expected_prev,
        )

    async with aclosing(zone.db.audit.stream()) as events:
        async for event in events:
            entry = _entry(zone, event)
            if entry is None or not zone.audit.authentic(event.prev_mac, entry, event.mac):
                return bad(event.seq, "changed")
            if event.prev_mac != expected_prev:
                # The record that should follow `expected_prev`, if it still exists, was moved.
                moved = await zone.db.audit.successor_seq(expected_prev)
                if moved is not None:
                    return bad(event.seq, "reordered")
                return bad(expected_seq, "deleted")
            if event.seq != expected_seq:
                return bad(expected_seq, "gap")
            checked += 1
            expected_seq = event.seq + 1
            expected_prev = event.mac
    return VerifyReport(ok=True, checked=checked, head_seq=expected_seq - 1, head_mac=expected_prev)


# --- FHIR R4 AuditEvent -------------------------------------------------------------------------

_DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
_AUDIT_EVENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_RESTFUL: Final = "http://hl7.org/fhir/restful-interaction"
ACTION_SYSTEM: Final = "urn:wearable-gateway:audit-action"
ACTOR_SYSTEM: Final = "urn:wearable-gateway:actor"
RECORD_SYSTEM: Final = "urn:wearable-gateway:audit-record"

_Coding = dict[str, str]

# (type, subtype beside our own action code, AuditEvent.action C/R/U/D/E). Type codes: FHIR R4
# audit-event-type "rest", and DICOM PS3.16 CID 400 "Audit Event ID" (110106 Export, 110110
# Patient Record, 110113 Security Alert) with CID 403 "Security Alert Type" subtypes (110129
# Security Configuration, 110137 User Security Attributes Changed). Subtypes of RESTful events
# are FHIR restful-interaction codes; FHIR R4 AuditEvent notes search is action "E".
_FHIR_CODES: Final[dict[AuditAction, tuple[_Coding, _Coding | None, str]]] = {
    AuditAction.ENROL: (
        {"system": _DCM, "code": "110110", "display": "Patient Record"},
        {"system": _RESTFUL, "code": "create", "display": "create"},
        "C",
    ),
    AuditAction.CONSENT: (
        {"system": _DCM, "code": "110110", "display": "Patient Record"},
        {"system": _RESTFUL, "code": "update", "display": "update"},
        "U",
    ),
    AuditAction.READ: (
        {"system": _AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        {"system": _RESTFUL, "code": "read", "display": "read"},
        "R",
    ),
    AuditAction.SEARCH: (
        {"system": _AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        {"system": _RESTFUL, "code": "search-type", "display": "search type"},
        "E",
    ),
    AuditAction.EXPORT: (
        {"system": _DCM, "code": "110106", "display": "Export"},
        None,
        "R",
    ),
    AuditAction.RELEASE: (
        {"system": _DCM, "code": "110106", "display": "Export"},
        None,
        "E",
    ),
    AuditAction.ERASE: (
        {"system": _DCM, "code": "110110", "display": "Patient Record"},
        {"system": _RESTFUL, "code": "delete", "display": "delete"},
        "D",
    ),
    AuditAction.KEY_ROTATE: (
        {"system": _DCM, "code": "110113", "display": "Security Alert"},
        {"system": _DCM, "code": "110129", "display": "Security Configuration"},
        "U",
    ),
    AuditAction.KEY_INIT: (
        {"system": _DCM, "code": "110113", "display": "Security Alert"},
        {"system": _DCM, "code": "110129", "display": "Security Configuration"},
        "C",
    ),
    AuditAction.CREDENTIAL_ISSUE: (
        {"system": _DCM, "code": "110113", "display": "Security Alert"},
        {"system": _DCM, "code": "110137", "display": "User Security Attributes Changed"},
        "C",
    ),
    AuditAction.CREDENTIAL_REVOKE: (
        {"system": _DCM, "code": "110113", "display": "Security Alert"},
        {"system": _DCM, "code": "110137", "display": "User Security Attributes Changed"},
        "D",
    ),
}

_ACTIONS: Final = frozenset(str(a) for a in AuditAction)
# DICOM 110100 "Application Activity"
_UNKNOWN_ACTION: Final[tuple[_Coding, _Coding | None, str]] = (
    {"system": _DCM, "code": "110100", "display": "Application Activity"},
    None,
    "E",
)

# http://hl7.org/fhir/R4/valueset-audit-event-outcome.html
_OUTCOME_CODES: Final[dict[str, str]] = {
    AuditOutcome.SUCCESS: "0",
    AuditOutcome.REFUSED: "4",
    AuditOutcome.FAILED: "8",
}


def _detail_value(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def audit_event_resource(zone: str, event: StoredAuditEvent) -> dict[str, object]:
    """One stored record as a FHIR R4 AuditEvent (JSON-ready dict)."""
    # A tampered record may hold any text; it is still exported (as application activity) so
    # the export shows what is stored. `verify` is what judges it.
    codes = _FHIR_CODES[AuditAction(event.action)] if event.action in _ACTIONS else None
    type_coding, fhir_subtype, fhir_action = codes or _UNKNOWN_ACTION
    subtype = [{"system": ACTION_SYSTEM, "code": event.action}]
    if fhir_subtype is not None:
        subtype.insert(0, fhir_subtype)
    detail = orjson.loads(event.detail)
    record_entity: dict[str, object] = {
        "what": {"identifier": {"system": RECORD_SYSTEM, "value": f"{zone}/{event.seq}"}},
        # audit-entity-type 2 "System Object"
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "2",
            "display": "System Object",
        },
    }
    if detail:
        record_entity["detail"] = [
            {"type": key, "valueString": _detail_value(value)}
            for key, value in sorted(detail.items())
        ]
    entities: list[dict[str, object]] = [record_entity]
    if event.subject is not None:
        entities.insert(
            0,
            {
                "what": {"reference": f"Patient/{event.subject}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            },
        )
    return {
        "resourceType": "AuditEvent",
        "id": f"{zone}-{event.seq}",
        "type": type_coding,
        "subtype": subtype,
        "action": fhir_action,
        "recorded": event.recorded_at.isoformat(timespec="microseconds"),
        "outcome": _OUTCOME_CODES.get(event.outcome, "8"),
        "agent": [
            {
                "who": {"identifier": {"system": ACTOR_SYSTEM, "value": event.actor}},
                "requestor": True,
            }
        ],
        "source": {
            "site": zone,
            "observer": {"display": f"wearable-gateway zone {zone}"},
            # security-source-type 4 "Application Server"
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities,
    }


async def export_fhir(zone: Zone) -> AsyncGenerator[bytes, None]:
    """The zone's audit log as FHIR R4 AuditEvent NDJSON lines (each ending in a newline), in
    seq order, streamed in bounded memory. Does not verify the chain: run `verify` for that."""
    async with aclosing(zone.db.audit.stream()) as events:
        async for event in events:
            yield orjson.dumps(
                audit_event_resource(zone.name, event), option=orjson.OPT_APPEND_NEWLINE
            )
