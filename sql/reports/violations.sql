-- Refused state transitions and inconsistent reports, newest first (the last 200).
-- Run as festpay_report: .venv/bin/festpay db psql -U festpay_report -- -f sql/reports/violations.sql
SELECT id, occurred_at, actor, transaction_id, from_state, to_state, reason, payload
  FROM report.violation
 ORDER BY id DESC
 LIMIT 200;
