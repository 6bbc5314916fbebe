"""Erasure of a subject (GDPR art. 17, PIPL art. 47), by crypto-shredding and deletion.

The steps, each one transaction (or one audit append), and why this order is safe:

1. **Intent** (`start`): an `erase` audit record, phase `started`, is committed first (write-ahead:
   nothing is ever changed without the log saying so, and it keeps the subject's site, which is
   how a later re-run still recognises the enrolling clinic once the subject row is gone). Then
   the subject is marked `erasure_started_at` and its blind-index entries are deleted, together:
   from here on no reading resolves to it, its consent cannot change, FHIR reads and exports skip
   it. A crash before the mark leaves an intent record and an untouched subject: a re-run starts
   again (one more `started` record; the log shows the repeat).
2. **Crypto-shredding** (`shred`): the wrapped data key (`subject_keys`) is deleted and the
   identity ciphertext blanked. The identity in any older copy of the identity table (`subjects`)
   is now undecryptable: the key never lived in that table. Idempotent: deleting a deleted key
   deletes nothing.
3. **Deletion** (`delete_rows`): observations, their versions, devices, Withings notifications,
   consent history, blind index, key and finally the subject row, in ONE transaction: a crash
   leaves all of them or none. Idempotent.
4. **Completion**: an `erase` record, phase `completed`, with the rows deleted per table.

A re-run after a crash at any point resumes: while the subject row exists it runs steps 1-4 again
(each is idempotent); once the row is gone, the latest `erase` record of the pseudonym (kept in
the append-only audit log, which is never erased) says whether step 4 was reached: if not, the
re-run sweeps (step 3 again, deleting nothing or stragglers) and completes; if so, it answers
"already erased", sweeps, and records phase `repeat`.

Limits (README "Erasure"): a reading that resolved the subject before step 1 in another process
(whose lookup cache keeps a blind index for up to its TTL, 5 s by default) may still be written
after step 3; the residency report counts such orphan rows and a repeated erasure removes them.
Research extracts already produced are de-identified (no pseudonym) and are not altered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gateway.errors import NotFound
from gateway.models import ZoneSubject
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.audit import AuditAction, AuditOutcome, record


class ErasureReason(StrEnum):
    """Why a subject is erased: a closed list, so the audit log holds a code, never free text."""

    SUBJECT_REQUEST = "subject-request"  # GDPR art. 17(1), PIPL art. 47(1)(4)
    WITHDRAWN = "withdrawn"  # consent withdrawn, no other legal ground (GDPR art. 17(1)(b))
    LEGAL_OBLIGATION = "legal-obligation"  # GDPR art. 17(1)(e)
    ERROR = "error"  # enrolled by mistake


@dataclass(frozen=True, slots=True)
class Erasure:
    pseudonym: str
    already_erased: bool
    removed: dict[str, int] = field(default_factory=dict)  # rows deleted per table


async def erase(
    zones: ZoneDirectory,
    *,
    zone: str,
    site: str | None,
    actor: str,
    pseudonym: str,
    reason: ErasureReason,
) -> Erasure:
    """Erase `pseudonym` from `zone`. `site`: the acting clinic's site (another site's subject is
    not found, like a missing one); None for an operator."""
    target = zones.require(zone)
    reason = ErasureReason(reason)
    subject = await target.db.subjects.erasure_target(pseudonym)
    if subject is None:
        return await _after_row_gone(
            target, site=site, actor=actor, pseudonym=pseudonym, reason=reason
        )
    if site is not None and subject.site != site:
        raise NotFound("no such subject")
    await start(target, actor=actor, subject=subject.subject, site=subject.site, reason=reason)
    await shred(target, pseudonym)
    removed = await delete_rows(target, pseudonym)
    await complete(
        target,
        actor=actor,
        subject=subject.subject,
        site=subject.site,
        reason=reason,
        removed=removed,
    )
    return Erasure(pseudonym, already_erased=False, removed=removed)


async def start(
    zone: Zone, *, actor: str, subject: ZoneSubject, site: str, reason: ErasureReason
) -> None:
    """Step 1: the intent record, then the mark (and blind index gone)."""
    await _audit(zone, actor, subject, {"site": site, "reason": str(reason), "phase": "started"})
    await zone.db.subjects.mark_erasing(subject.pseudonym)
    # This process stops resolving the subject at once. The cache is keyed by blind index, which
    # the pseudonym does not give back: clear it whole (one database read per subject to refill).
    zone.lookups.subjects.clear()


async def shred(zone: Zone, pseudonym: str) -> None:
    """Step 2: crypto-shredding."""
    await zone.db.subjects.destroy_data_key(pseudonym)


async def delete_rows(zone: Zone, pseudonym: str) -> dict[str, int]:
    """Step 3: every row of the subject, the subject row last, in one transaction."""
    removed = await zone.db.subjects.delete_subject_rows(pseudonym)
    zone.lookups.subjects.clear()
    return {table: count for table, count in removed.items() if count}


async def complete(
    zone: Zone,
    *,
    actor: str,
    subject: ZoneSubject,
    site: str,
    reason: ErasureReason,
    removed: dict[str, int],
    phase: str = "completed",
) -> None:
    """Step 4: the completion record (rows deleted per table: counts only)."""
    await _audit(
        zone,
        actor,
        subject,
        {"site": site, "reason": str(reason), "phase": phase, "removed": removed},
    )


async def _after_row_gone(
    zone: Zone, *, site: str | None, actor: str, pseudonym: str, reason: ErasureReason
) -> Erasure:
    earlier = await zone.db.subjects.last_erasure_record(pseudonym)
    if earlier is None:
        raise NotFound("no such subject")
    subject, erased_site, phase = earlier
    if erased_site is None or (site is not None and erased_site != site):
        raise NotFound("no such subject")
    # Sweep: deletes nothing, unless a late reading left rows behind (module docstring).
    removed = await delete_rows(zone, pseudonym)
    finished = phase in ("completed", "repeat")
    await complete(
        zone,
        actor=actor,
        subject=subject,
        site=erased_site,
        reason=reason,
        removed=removed,
        phase="repeat" if finished else "completed",
    )
    return Erasure(pseudonym, already_erased=finished, removed=removed)


async def _audit(zone: Zone, actor: str, subject: ZoneSubject, detail: dict[str, object]) -> None:
    # The pseudonym (subject field), the site and codes: no identity, which no longer exists.
    await record(
        zone,
        action=AuditAction.ERASE,
        actor=actor,
        subject=subject,
        outcome=AuditOutcome.SUCCESS,
        detail=detail,
    )
