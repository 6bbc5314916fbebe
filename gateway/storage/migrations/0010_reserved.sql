-- Placeholder: number 0010 belongs to the key-governance branch (wt-keys), which lands its own
-- 0010. It exists here only because migrations must be numbered 1..N without gaps and this
-- branch's migration is 0012. Delete this file when merging that branch's 0010.
SELECT 1;
