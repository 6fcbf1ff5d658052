-- Balances per event and account kind (cents), derived from the booking lines.
-- Run: psql "$URL" -f sql/reports/balances_by_kind.sql
SELECT e.name AS event, b.kind, b.accounts, b.balance, b.held
  FROM report.balance_by_kind b JOIN ledger.event e ON e.id = b.event_id
 ORDER BY e.name, b.kind;
