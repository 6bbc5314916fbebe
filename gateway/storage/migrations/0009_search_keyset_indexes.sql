-- FHIR search at scale (issue 4, bench/search.py). Every Observation search orders by
-- (sort column, id) — id breaks ties so the keyset cursor never skips or repeats a row — but the
-- per-subject indexes ended at the sort column. PostgreSQL could then not take the order from
-- the index: it fetched every row of the patient (and code) from every partition and sorted them
-- before applying LIMIT, so a page cost grew with the patient's history (measured at 1 million
-- rows: Append + Sort over 24 partitions, ~57 heap rows read for a 51-row page, ~10x that at
-- 10 million). With id as the last key column, each partition's index yields rows already in
-- (sort column, id) order, a Merge Append stops after one page, and the cursor's row comparison
-- `(effective_start, id) < ($a, $b)` becomes an index condition instead of a filter.
-- INCLUDE (effective_last): the `date` search compares the upper end of effective[x]
-- (storage/search.py), so counts and filters on it are answered from the index alone
-- (index-only scans once the visibility map is set), without visiting the heap.
-- The new indexes replace the old ones (same leading columns), so writes maintain as many
-- indexes as before. On a partitioned table each CREATE INDEX builds every partition's index.
CREATE INDEX observations_subject_code_time_id
    ON observations (subject, code, effective_start DESC, id DESC) INCLUDE (effective_last);
DROP INDEX observations_subject_code_time;

CREATE INDEX observations_subject_time_id
    ON observations (subject, effective_start DESC, id DESC) INCLUDE (effective_last);
DROP INDEX observations_subject_time;

CREATE INDEX observations_subject_issued_id ON observations (subject, issued DESC, id DESC);
DROP INDEX observations_subject_issued;
