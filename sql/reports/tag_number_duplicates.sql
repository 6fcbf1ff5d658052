-- Tag transaction numbers used by more than one live transaction of the same tag: a sign of corrupt tag data.
-- Run as festpay_report: .venv/bin/festpay db psql -U festpay_report -- -f sql/reports/tag_number_duplicates.sql
SELECT event_id, uid, tag_tx_number, transactions, transaction_ids
  FROM report.tag_number_duplicate
 ORDER BY event_id, uid, tag_tx_number;
