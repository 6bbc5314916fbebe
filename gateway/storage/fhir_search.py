"""FHIR reads and searches of one zone database. Every query is scoped to one enrolling
site: rows of another site's subjects are never read, so they cannot leak into a page, a count or
an include.

Search clauses arrive typed (`gateway.fhir.search`) and become SQL here; values only ever travel
as bind parameters. Paging is keyset-based (sort value, id): no OFFSET, so a page costs the same
wherever it is, and rows stored while a client pages do not shift the pages it has yet to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg
import orjson

from gateway.fhir.dates import DateCondition, Prefix
from gateway.fhir.observation import IDENTIFIER_SYSTEM, OBSERVATION_CATEGORY, UCUM
from gateway.fhir.search import Clause, Quantity, SearchRequest, Token, Value
from gateway.measures.table import MEASURES
from gateway.models import ZoneSubject
from gateway.storage.pool import ZonePool

LOINC: Final = "http://loinc.org"
DEVICE_IDENTIFIER_SYSTEM: Final = "urn:wearable-gateway:device"

# _sort value -> (column, descending)
_SORT_COLUMNS: Final = {
    "date": ("o.effective_start", False),
    "-date": ("o.effective_start", True),
    "_lastUpdated": ("o.issued", False),
    "-_lastUpdated": ("o.issued", True),
}


@dataclass(frozen=True, slots=True)
class StoredObservation:
    subject: str
    id: str
    device: str
    version: int  # an unversioned reading counts as version 0, as the writer counts it
    issued: datetime
    sort_value: datetime
    resource: bytes

    @property
    def audit_subject(self) -> ZoneSubject:
        return ZoneSubject(self.subject)


@dataclass(frozen=True, slots=True)
class ObservationVersion:
    version: int
    resource: bytes
    current: bool
    issued: datetime | None  # of the current version; history rows keep their resource's meta


@dataclass(frozen=True, slots=True)
class SiteSubject:
    pseudonym: str
    enrolled_at: datetime
    kek_version: int
    wrapped_key: bytes
    identity: bytes

    @property
    def audit_subject(self) -> ZoneSubject:
        return ZoneSubject(self.pseudonym)


@dataclass(frozen=True, slots=True)
class StoredDevice:
    pseudonym: str
    subject: str  # the first subject (of the site) seen with it
    model: str | None
    manufacturer: str | None
    first_seen: datetime

    @property
    def audit_subject(self) -> ZoneSubject:
        return ZoneSubject(self.subject)


class _Binds:
    """Collects bind values; each `add` returns its placeholder."""

    def __init__(self, *initial: object) -> None:
        self.values: list[object] = list(initial)

    def add(self, value: object, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


def _any(binds: _Binds, column: str, values: Sequence[str]) -> str:
    return f"{column} = ANY({binds.add(list(values), 'text[]')})"


# gateway.fhir.dates' table as SQL over the resource range [{rl}, {rh}] and the search range
# [{low}, {high}). Conditions on {rl} (effective_start, the partition key) are repeated wherever
# they are implied, so PostgreSQL can prune partitions and use the time indexes.
_DATE_SQL: Final[Mapping[Prefix, str]] = {
    Prefix.EQ: "({rl} >= {low} AND {rl} < {high} AND {rh} < {high})",
    Prefix.NE: "NOT ({rl} >= {low} AND {rh} < {high})",
    Prefix.GT: "({rh} >= {high})",
    Prefix.LT: "({rl} < {low})",
    Prefix.GE: "({rh} >= {high} OR {rl} >= {low})",
    Prefix.LE: "({rl} < {low} OR {rh} < {high})",
    Prefix.SA: "({rl} >= {high})",
    Prefix.EB: "({rl} < {low} AND {rh} < {low})",
    Prefix.AP: "({rl} < {high} AND {rh} >= {low})",
}


def date_predicate(binds: _Binds, condition: DateCondition, low_col: str, high_col: str) -> str:
    template = _DATE_SQL[condition.prefix]
    # Only bounds the predicate uses are bound: PostgreSQL cannot type an unused parameter.
    low = binds.add(condition.range.low, "timestamptz") if "{low}" in template else ""
    high = binds.add(condition.range.high, "timestamptz") if "{high}" in template else ""
    return template.format(rl=low_col, rh=high_col, low=low, high=high)


def _quantity_predicate(binds: _Binds, q: Quantity) -> str:
    number = "" if q.prefix in (Prefix.EQ, Prefix.AP, Prefix.NE) else binds.add(q.number, "numeric")
    match q.prefix:
        case Prefix.EQ | Prefix.AP:
            low, high = binds.add(q.low, "numeric"), binds.add(q.high, "numeric")
            test = f"(o.value >= {low} AND o.value < {high})"
        case Prefix.NE:
            low, high = binds.add(q.low, "numeric"), binds.add(q.high, "numeric")
            test = f"NOT (o.value >= {low} AND o.value < {high})"
        case Prefix.GT | Prefix.SA:
            test = f"(o.value > {number})"
        case Prefix.LT | Prefix.EB:
            test = f"(o.value < {number})"
        case Prefix.GE:
            test = f"(o.value >= {number})"
        case Prefix.LE:
            test = f"(o.value <= {number})"
    parts = [test]
    if q.code is not None:
        parts.append(f"o.unit = {binds.add(q.code, 'text')}")
    if q.system is not None:
        parts.append(f"o.resource #>> '{{valueQuantity,system}}' = {binds.add(q.system, 'text')}")
    return "(" + " AND ".join(parts) + ")"


def _measures_by_coding() -> Mapping[tuple[str | None, str], frozenset[str]]:
    """(system, code) and (None, code) -> the `code` column values (each measure's LOINC code) of
    the measures whose Observation.code lists that coding."""
    found: dict[tuple[str | None, str], set[str]] = {}
    for measure in MEASURES.values():
        for coding in measure.codings:
            for key in ((coding.system, coding.code), (None, coding.code)):
                found.setdefault(key, set()).add(measure.loinc)
    return {key: frozenset(codes) for key, codes in found.items()}


# gateway/fhir/observation.py writes Observation.code.coding as the measure's codings (LOINC first,
# then others such as a second LOINC code or IEEE 11073 MDC) and the `code` column as the
# measure's LOINC code, so a token names exactly the rows of the measures that list its coding.
_MEASURES_BY_CODING: Final = _measures_by_coding()


def _code_predicate(binds: _Binds, token: Token) -> str:
    # R4 search.html §2.1.1.4.5 token: `[system]|[code]` matches when ANY coding of the
    # CodeableConcept has that system and code, not only the first one.
    if token.system == "":
        return "false"  # every coding the gateway writes has a system
    measures = _MEASURES_BY_CODING.get((token.system, token.code))
    if measures is not None:
        # The `code` column: the (subject, code, time) indexes serve it.
        return _any(binds, "o.code", sorted(measures))
    # A coding the measure table does not list (any more): compare the stored resource itself.
    coding: dict[str, str] = {"code": token.code}
    if token.system is not None:
        coding["system"] = token.system
    return f"o.resource -> 'code' -> 'coding' @> {binds.add(orjson.dumps([coding]), 'jsonb')}"


# Token parameters on a column, with the one system their codes belong to (None: any).
_TOKEN_COLUMNS: Final[Mapping[str, tuple[str, str | None]]] = {
    "_id": ("o.id", None),
    "identifier": ("o.id", IDENTIFIER_SYSTEM),
    "category": ("o.category", OBSERVATION_CATEGORY),
    "status": ("o.status", "http://hl7.org/fhir/observation-status"),
}
_REFERENCE_COLUMNS: Final = {"patient": "o.subject", "subject": "o.subject", "device": "o.device"}
_DATE_COLUMNS: Final = {
    "date": ("o.effective_start", "o.effective_last"),
    "_lastUpdated": ("o.issued", "o.issued"),
}


def _value_predicate(binds: _Binds, name: str, value: Value) -> str:
    if isinstance(value, str):
        return f"{_REFERENCE_COLUMNS[name]} = {binds.add(value, 'text')}"
    if isinstance(value, DateCondition):
        return date_predicate(binds, value, *_DATE_COLUMNS[name])
    if isinstance(value, Quantity):
        # Values are stored in UCUM units only.
        return "false" if value.system not in (None, UCUM) else _quantity_predicate(binds, value)
    if name == "code":
        return _code_predicate(binds, value)
    column, system = _TOKEN_COLUMNS[name]
    if system is not None and value.system is not None and value.system != system:
        return "false"
    return f"{column} = {binds.add(value.code, 'text')}"


def _observation_clause(binds: _Binds, clause: Clause) -> str:
    return "(" + " OR ".join(_value_predicate(binds, clause.name, v) for v in clause.values) + ")"


_OBSERVATION_COLUMNS: Final = """
o.subject, o.id, o.device, coalesce(o.version, 0) AS version, o.issued, o.resource
"""


def _observation(row: asyncpg.Record, sort_value: datetime | None = None) -> StoredObservation:
    return StoredObservation(
        subject=row["subject"],
        id=row["id"],
        device=row["device"],
        version=int(row["version"]),
        issued=row["issued"],
        sort_value=sort_value if sort_value is not None else row["sort_value"],
        resource=bytes(row["resource"]),
    )


class FhirSearchStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    # ------------------------------------------------------------------------ Observation

    async def observation(self, site: str, observation_id: str) -> StoredObservation | None:
        row = await self._pool.fetchrow(
            "fhir_search.observation",
            f"""
            SELECT {_OBSERVATION_COLUMNS}, o.effective_start AS sort_value
            FROM observations o JOIN subjects s ON s.pseudonym = o.subject AND s.site = $1
            WHERE o.id = $2
            """,  # noqa: S608  (fixed SQL text)
            site,
            observation_id,
        )
        return _observation(row) if row else None

    async def observation_versions(
        self, site: str, observation_id: str
    ) -> list[ObservationVersion]:
        """Every version of an Observation, newest first (the current one, then its history)."""
        rows = await self._pool.fetch(
            "fhir_search.observation_versions",
            """
            SELECT coalesce(o.version, 0) AS version, o.resource, true AS current, o.issued
            FROM observations o JOIN subjects s ON s.pseudonym = o.subject AND s.site = $1
            WHERE o.id = $2
            UNION ALL
            SELECT v.version, v.resource, false, NULL
            FROM observation_versions v JOIN subjects s ON s.pseudonym = v.subject AND s.site = $1
            WHERE v.id = $2
            ORDER BY version DESC, current DESC
            """,
            site,
            observation_id,
        )
        seen: set[int] = set()
        versions = []
        for row in rows:
            if int(row["version"]) in seen:
                continue  # a history row of the current version (cannot happen, but never twice)
            seen.add(int(row["version"]))
            versions.append(
                ObservationVersion(
                    int(row["version"]), bytes(row["resource"]), row["current"], row["issued"]
                )
            )
        return versions

    def _observation_where(self, site: str, request: SearchRequest) -> tuple[_Binds, list[str]]:
        binds = _Binds(site)
        where = [_observation_clause(binds, clause) for clause in request.clauses]
        return binds, where

    async def search_observations(
        self, site: str, request: SearchRequest, after: tuple[datetime, str] | None, limit: int
    ) -> list[StoredObservation]:
        binds, where = self._observation_where(site, request)
        column, descending = _SORT_COLUMNS[request.sort]
        direction = "DESC" if descending else "ASC"
        if after is not None:
            value = binds.add(after[0], "timestamptz")
            last_id = binds.add(after[1], "text")
            where.append(f"({column}, o.id) {'<' if descending else '>'} ({value}, {last_id})")
        limit_bind = binds.add(limit, "int8")
        rows = await self._pool.fetch(
            "fhir_search.search_observations",
            f"""
            SELECT {_OBSERVATION_COLUMNS}, {column} AS sort_value
            FROM observations o JOIN subjects s ON s.pseudonym = o.subject AND s.site = $1
            WHERE {" AND ".join(where) or "true"}
            ORDER BY {column} {direction}, o.id {direction}
            LIMIT {limit_bind}
            """,  # noqa: S608  (only fixed SQL text; every value is a bind parameter)
            *binds.values,
        )
        return [_observation(row) for row in rows]

    async def count_observations(self, site: str, request: SearchRequest) -> int:
        binds, where = self._observation_where(site, request)
        return int(
            await self._pool.fetchval(
                "fhir_search.count_observations",
                f"""
                SELECT count(*)
                FROM observations o JOIN subjects s ON s.pseudonym = o.subject AND s.site = $1
                WHERE {" AND ".join(where) or "true"}
                """,  # noqa: S608  (only fixed SQL text; every value is a bind parameter)
                *binds.values,
            )
        )

    async def last_n(
        self, site: str, subjects: Sequence[str], request: SearchRequest, max_per_code: int
    ) -> list[StoredObservation]:
        """Observation/$lastn: the `max_per_code` most recent Observations of each code of each
        subject, newest first within a code. One LATERAL query: for each (subject, code) pair,
        an index scan of (subject, code, effective_start DESC) that stops after `max_per_code`
        rows."""
        binds = _Binds(site, list(subjects))
        where = [_observation_clause(binds, clause) for clause in request.clauses]
        limit = binds.add(max_per_code, "int8")
        rows = await self._pool.fetch(
            "fhir_search.last_n",
            f"""
            WITH pairs AS (
                SELECT DISTINCT o.subject, o.code
                FROM observations o JOIN subjects s ON s.pseudonym = o.subject AND s.site = $1
                WHERE o.subject = ANY($2::text[])
            )
            SELECT {_OBSERVATION_COLUMNS}, o.effective_start AS sort_value
            FROM pairs p CROSS JOIN LATERAL (
                SELECT * FROM observations o
                WHERE o.subject = p.subject AND o.code = p.code
                  AND {" AND ".join(where) or "true"}
                ORDER BY o.effective_start DESC, o.id DESC
                LIMIT {limit}
            ) o
            ORDER BY o.subject, o.code, o.effective_start DESC, o.id DESC
            """,  # noqa: S608  (only fixed SQL text; every value is a bind parameter)
            *binds.values,
        )
        return [_observation(row) for row in rows]

    # ---------------------------------------------------------------------------- Patient

    async def subjects(
        self,
        site: str,
        pseudonyms: Sequence[str] | None,
        after: str | None,
        limit: int,
    ) -> list[SiteSubject]:
        """Subjects of `site`, by pseudonym; `pseudonyms` None: all of them."""
        rows = await self._pool.fetch(
            "fhir_search.subjects",
            """
            SELECT pseudonym, enrolled_at, k.kek_version, k.wrapped_key, identity
            -- Data keys live apart (migration 0008); a subject whose erasure has begun is gone.
            FROM subjects JOIN subject_keys k ON k.subject = pseudonym
            WHERE site = $1 AND erasure_started_at IS NULL
              AND ($2::text[] IS NULL OR pseudonym = ANY($2::text[]))
              AND ($3::text IS NULL OR pseudonym > $3::text)
            ORDER BY pseudonym
            LIMIT $4
            """,
            site,
            None if pseudonyms is None else list(pseudonyms),
            after,
            limit,
        )
        return [SiteSubject(**dict(row)) for row in rows]

    async def site_subjects(self, site: str, pseudonyms: Sequence[str]) -> list[ZoneSubject]:
        """Those of `pseudonyms` that name a subject of `site` in this zone (not being erased)."""
        rows = await self._pool.fetch(
            "fhir_search.site_subjects",
            """
            SELECT pseudonym FROM subjects
            WHERE site = $1 AND pseudonym = ANY($2::text[]) AND erasure_started_at IS NULL
            ORDER BY pseudonym
            """,
            site,
            list(pseudonyms),
        )
        return [ZoneSubject(row["pseudonym"]) for row in rows]

    async def count_subjects(self, site: str, pseudonyms: Sequence[str] | None) -> int:
        return int(
            await self._pool.fetchval(
                "fhir_search.count_subjects",
                """
                SELECT count(*) FROM subjects
                WHERE site = $1 AND ($2::text[] IS NULL OR pseudonym = ANY($2::text[]))
                  AND erasure_started_at IS NULL
                """,
                site,
                None if pseudonyms is None else list(pseudonyms),
            )
        )

    # ----------------------------------------------------------------------------- Device

    async def devices(
        self,
        site: str,
        *,
        pseudonyms: Sequence[str] | None,
        subjects: Sequence[str] | None,
        after: str | None,
        limit: int,
    ) -> list[StoredDevice]:
        """Devices used by subjects of `site` (restricted to `subjects` when given), one per
        pseudonym, with the first such subject seen using it."""
        rows = await self._pool.fetch(
            "fhir_search.devices",
            """
            SELECT DISTINCT ON (d.pseudonym)
                   d.pseudonym, d.subject, d.model, d.manufacturer, d.first_seen
            FROM devices d JOIN subjects s ON s.pseudonym = d.subject AND s.site = $1
            WHERE ($2::text[] IS NULL OR d.pseudonym = ANY($2::text[]))
              AND ($3::text[] IS NULL OR d.subject = ANY($3::text[]))
              AND ($4::text IS NULL OR d.pseudonym > $4::text)
            ORDER BY d.pseudonym, d.first_seen, d.subject
            LIMIT $5
            """,
            site,
            None if pseudonyms is None else list(pseudonyms),
            None if subjects is None else list(subjects),
            after,
            limit,
        )
        return [StoredDevice(**dict(row)) for row in rows]

    async def count_devices(
        self, site: str, *, pseudonyms: Sequence[str] | None, subjects: Sequence[str] | None
    ) -> int:
        return int(
            await self._pool.fetchval(
                "fhir_search.count_devices",
                """
                SELECT count(DISTINCT d.pseudonym)
                FROM devices d JOIN subjects s ON s.pseudonym = d.subject AND s.site = $1
                WHERE ($2::text[] IS NULL OR d.pseudonym = ANY($2::text[]))
                  AND ($3::text[] IS NULL OR d.subject = ANY($3::text[]))
                """,
                site,
                None if pseudonyms is None else list(pseudonyms),
                None if subjects is None else list(subjects),
            )
        )
