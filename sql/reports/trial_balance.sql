-- Trial balance per event: positive and negative balances and their total, which must be 0.
-- Run as festpay_report: .venv/bin/festpay db psql -U festpay_report -- -f sql/reports/trial_balance.sql
SELECT event, debit_balances, credit_balances, total,
       CASE WHEN total = 0 THEN 'balanced' ELSE 'BROKEN' END AS check
  FROM report.trial_balance
 ORDER BY event;
