-- Reporting views (schema report), readable by festpay_report. Balances here are derived from the booking lines.

SET ROLE festpay_owner;

CREATE VIEW report.event AS
SELECT e.id AS event_id, e.name, e.currency, e.time_zone, e.created_at
  FROM ledger.event e;
COMMENT ON VIEW report.event IS 'Every event by id and name, for reports that show names (no keys, limits or fees).';

CREATE VIEW report.account_balance AS
SELECT a.event_id, a.id AS account_id, a.kind, a.name,
       (coalesce(d.total, 0) - coalesce(c.total, 0))::bigint AS balance,
       a.held::bigint AS held
  FROM ledger.account a
  LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS total FROM ledger.booking GROUP BY 1) d ON d.id = a.id
  LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS total FROM ledger.booking GROUP BY 1) c ON c.id = a.id;
COMMENT ON VIEW report.account_balance IS 'Every account with its balance derived from the booking lines (received minus paid) and its held amount.';

CREATE VIEW report.balance_by_kind AS
SELECT event_id, kind, count(*) AS accounts, sum(balance)::bigint AS balance, sum(held)::bigint AS held
  FROM report.account_balance
 GROUP BY event_id, kind;
COMMENT ON VIEW report.balance_by_kind IS 'Balances summed per event and account kind.';

CREATE VIEW report.trial_balance AS
SELECT e.id AS event_id, e.name AS event,
       coalesce(sum(b.balance) FILTER (WHERE b.balance > 0), 0)::bigint AS debit_balances,
       coalesce(sum(b.balance) FILTER (WHERE b.balance < 0), 0)::bigint AS credit_balances,
       coalesce(sum(b.balance), 0)::bigint AS total
  FROM ledger.event e
  LEFT JOIN report.account_balance b ON b.event_id = e.id
 GROUP BY e.id, e.name;
COMMENT ON VIEW report.trial_balance IS 'Per event: the sum of positive and negative balances; total is always 0.';

CREATE VIEW report.open_reservation AS
SELECT t.event_id, t.id AS transaction_id, t.state, tg.uid, t.amount::bigint AS amount, t.held::bigint AS held,
       t.assignment_id, t.terminal_tx_number::bigint AS terminal_tx_number, t.created_at, t.expires_at
  FROM ledger.transaction t
  LEFT JOIN ledger.tag tg ON tg.id = t.tag_id
 WHERE ledger.holds(t.state);
COMMENT ON VIEW report.open_reservation IS 'Transactions that still hold (or may hold) customer money.';

CREATE VIEW report.violation AS
SELECT id, occurred_at, actor, event_id, transaction_id, from_state, to_state, reason, payload
  FROM ledger.violation;
COMMENT ON VIEW report.violation IS 'Refused state transitions, newest last.';

CREATE VIEW report.tag_number_duplicate AS
SELECT t.event_id, tg.uid, t.tag_tx_number::integer AS tag_tx_number, count(*) AS transactions,
       array_agg(t.id ORDER BY t.id) AS transaction_ids
  FROM ledger.transaction t
  JOIN ledger.tag tg ON tg.id = t.tag_id
 WHERE t.tag_tx_number IS NOT NULL AND t.state <> 'Aborted'
 GROUP BY t.event_id, tg.uid, t.tag_tx_number
HAVING count(*) > 1;
COMMENT ON VIEW report.tag_number_duplicate IS 'Tag transaction numbers used by more than one live transaction of a tag: a sign of corrupt tag data.';

CREATE VIEW report.overdraft AS
SELECT o.transaction_id, a.event_id, tg.uid, o.balance_after, o.flagged_at, o.reviewed_at, o.reviewed_by
  FROM ledger.overdraft o
  JOIN ledger.account a ON a.id = o.account_id
  LEFT JOIN ledger.tag tg ON tg.account_id = a.id;
COMMENT ON VIEW report.overdraft IS 'Bookings that took a customer below zero (tag already charged), with their review status.';

GRANT SELECT ON report.event, report.account_balance, report.balance_by_kind, report.trial_balance, report.open_reservation,
                report.violation, report.tag_number_duplicate, report.overdraft TO festpay_report;

RESET ROLE;
