from __future__ import annotations

from collections.abc import Sequence

from gateway.models import DeadLetter
from gateway.storage.pool import ZonePool


class DeadLetterStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def add_many(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        await self._pool.execute(
            "dead_letters.add_many",
            """
            INSERT INTO dead_letters (request_id, vendor, source_format, item_index, code, reason)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                                 $6::text[])
            """,
            [letter.request_id for letter in letters],
            [letter.vendor for letter in letters],
            [letter.source_format for letter in letters],
            [letter.item_index for letter in letters],
            [str(letter.code) for letter in letters],
            [letter.reason for letter in letters],
        )
