-- Every broken ledger invariant (SPEC 10); no rows means healthy.
-- Run: psql "$URL" -f sql/reports/invariants.sql
SELECT * FROM api.check_invariants();
