-- Placeholder: number 0011 belongs to the device-vocabulary branch (wt-devices), which lands its
-- own 0011. It exists here only because migrations must be numbered 1..N without gaps and this
-- branch's migration is 0012. Delete this file when merging that branch's 0011.
SELECT 1;
