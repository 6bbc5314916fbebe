"""Consent changes (issue 6): a clinic (or an operator) changes a subject's research or
cross-border consent. Exports read `subjects.research_consent` / `cross_border_consent` at export
time, so a withdrawal takes effect on the next export; readings keep being accepted for clinical
use until the subject is erased."""

from __future__ import annotations

from gateway.errors import BadRequest, NotFound
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.services.zones import ZoneDirectory
from gateway.storage.subjects import ConsentChange


async def change_consent(
    zones: ZoneDirectory,
    *,
    zone: str,
    site: str | None,
    actor: str,
    pseudonym: str,
    research: bool | None,
    cross_border: bool | None,
) -> ConsentChange:
    """`site`: the acting clinic's site (another site's subject is not found, exactly like a
    missing one); None for an operator. The change and its history row commit together; the
    audit record follows (who, when, the resulting flags)."""
    if research is None and cross_border is None:
        raise BadRequest("give research and/or cross_border")
    target = zones.require(zone)
    changed = await target.db.subjects.change_consent(
        pseudonym, site=site, research=research, cross_border=cross_border, actor=actor
    )
    if changed is None:
        raise NotFound("no such subject")
    await record(
        target,
        action=AuditAction.CONSENT,
        actor=actor,
        subject=changed.subject,
        outcome=AuditOutcome.SUCCESS,
        detail={
            "site": changed.site,
            "consent": {"research": changed.research, "cross_border": changed.cross_border},
            "changed": sorted(
                name
                for name, value in (("research", research), ("cross_border", cross_border))
                if value is not None
            ),
        },
    )
    return changed
