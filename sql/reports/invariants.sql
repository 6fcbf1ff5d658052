-- Every broken ledger invariant (SPEC 10); no rows means healthy.
-- Run as festpay_report: .venv/bin/festpay db psql -U festpay_report -- -f sql/reports/invariants.sql
SELECT * FROM api.check_invariants();
