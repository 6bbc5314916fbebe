"""Bulk uploads (e.g. a whole Apple Health export): parsed items arrive in batches as the body
streams in; each batch goes through the ordinary ingest path and is committed before the next is
read, so memory is bounded by one batch and a failure part-way loses nothing already stored."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.models import IngestContext, Outcome, ParsedItem
from gateway.runtime.zones import ZoneDirectory
from gateway.services.ingest import ingest


@dataclass
class BulkTally:
    readings: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    batches: int = 0

    def summary(self) -> dict[str, int]:
        return {str(o): self.outcomes[str(o)] for o in Outcome}


async def ingest_batches(
    zones: ZoneDirectory,
    ctx: IngestContext,
    batches: AsyncIterator[Sequence[ParsedItem]],
    tally: BulkTally,
    *,
    max_future_skew: timedelta,
) -> None:
    """Store every batch in order, counting into `tally` as each one commits (so a caller that
    sees an error still knows what was stored before it)."""
    async for batch in batches:
        result = await ingest(
            zones, ctx, batch, max_future_skew=max_future_skew, first_index=tally.readings
        )
        tally.readings += len(batch)
        tally.batches += 1
        for outcome in result.outcomes:
            tally.outcomes[str(outcome.outcome)] += 1
            if outcome.rejection is not None:
                tally.rejections[str(outcome.rejection.code)] += 1
