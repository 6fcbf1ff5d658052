-- Transactions that hold (or may hold) customer money, oldest first, with how long they have been open.
-- Run as festpay_report: .venv/bin/festpay db psql -U festpay_report -- -f sql/reports/open_reservations.sql
SELECT transaction_id, state, uid, amount, held, assignment_id, terminal_tx_number,
       date_trunc('second', now() - created_at) AS open_for, expires_at
  FROM report.open_reservation
 ORDER BY created_at;
