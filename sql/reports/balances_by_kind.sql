-- Balances per event and account kind (cents), derived from the booking lines.
-- Run as festpay_report: .venv/bin/festpay db psql -U festpay_report -- -f sql/reports/balances_by_kind.sql
SELECT e.name AS event, b.kind, b.accounts, b.balance, b.held
  FROM report.balance_by_kind b JOIN report.event e ON e.event_id = b.event_id
 ORDER BY e.name, b.kind;
