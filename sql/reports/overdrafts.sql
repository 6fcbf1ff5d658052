-- Bookings that took a customer below zero because the tag had already been charged, unreviewed first.
-- Run as festpay_report: .venv/bin/festpay db psql -U festpay_report -- -f sql/reports/overdrafts.sql
SELECT transaction_id, event_id, uid, balance_after, flagged_at, reviewed_at, reviewed_by
  FROM report.overdraft
 ORDER BY reviewed_at IS NOT NULL, flagged_at;
