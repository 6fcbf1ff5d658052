SET LOCAL ROLE festpay_owner;

-- Invariants of SPEC 10, checkable at any time.

CREATE OR REPLACE FUNCTION api.check_invariants()
RETURNS TABLE (invariant text, event_id bigint, subject text, detail text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Checks every invariant of the ledger: balances sum to 0 per event, running balances match the lines, no customer
-- below zero without an overdraft flag, held amounts match open reserves, lines exist exactly for committed transactions
-- and match their amounts, every reference that has no foreign key (hot parents, the purchase path) exists within
-- the event, payout runs match their lines (totals; each line's transactions in the state its run's state asks, with
-- its amounts) and no customer is in two open payout runs.
-- Returns one row per broken invariant; no rows means healthy.
    WITH line_sums AS (
        SELECT account_id, sum(amount)::bigint AS balance
          FROM (SELECT debit_account_id AS account_id, amount FROM ledger.booking
                UNION ALL
                SELECT credit_account_id, -amount FROM ledger.booking) x
         GROUP BY account_id)
    SELECT 'event-balances-sum-to-zero', a.event_id, 'event ' || a.event_id, 'balances sum to ' || sum(s.balance)
      FROM line_sums s JOIN ledger.account a ON a.id = s.account_id
     GROUP BY a.event_id HAVING sum(s.balance) <> 0
    UNION ALL
    SELECT 'customer-balance-matches-lines', a.event_id, 'account ' || a.id,
           format('running balance %s, lines say %s', a.balance, coalesce(s.balance, 0))
      FROM ledger.account a LEFT JOIN line_sums s ON s.account_id = a.id
     WHERE a.kind = 'customer' AND a.balance <> coalesce(s.balance, 0)
    UNION ALL
    SELECT 'customer-not-negative-unless-flagged', a.event_id, 'account ' || a.id, format('balance %s', a.balance)
      FROM ledger.account a
     WHERE a.kind = 'customer' AND a.balance < 0
       AND NOT EXISTS (SELECT FROM ledger.overdraft o WHERE o.account_id = a.id)
    UNION ALL
    SELECT 'held-matches-open-reserves', a.event_id, 'account ' || a.id,
           format('held %s, open reserves hold %s', a.held, coalesce(h.held, 0))
      FROM ledger.account a
      LEFT JOIN (SELECT t.account_id, sum(t.held)::bigint AS held FROM ledger.transaction t
                  WHERE t.held > 0 GROUP BY t.account_id) h ON h.account_id = a.id
     WHERE a.held <> coalesce(h.held, 0)
    UNION ALL
    SELECT 'booked-iff-committed', t.event_id, 'transaction ' || t.id,
           format('%s with %s booking lines', t.state, count(b.line_no))
      FROM ledger.transaction t LEFT JOIN ledger.booking b ON b.transaction_id = t.id
     GROUP BY t.id
    HAVING (t.state = 'Committed') <> (count(b.line_no) > 0)
    UNION ALL
    SELECT 'lines-match-amount', t.event_id, 'transaction ' || t.id,
           format('customer side of the lines is %s, the transaction says %s', s.customer_side,
                  CASE WHEN t.type IN ('topup', 'chargeback', 'deposit_return') THEN t.amount - t.fee ELSE -t.amount END)
      FROM ledger.transaction t
      JOIN LATERAL (SELECT sum(CASE WHEN b.debit_account_id = t.account_id THEN b.amount
                                    WHEN b.credit_account_id = t.account_id THEN -b.amount ELSE 0 END)::bigint AS customer_side
                      FROM ledger.booking b WHERE b.transaction_id = t.id) s ON true
     WHERE t.state = 'Committed'
       AND s.customer_side <> CASE WHEN t.type IN ('topup', 'chargeback', 'deposit_return') THEN t.amount - t.fee ELSE -t.amount END
    UNION ALL
    SELECT 'receipt-signed-or-queued', t.event_id, 'transaction ' || t.id, 'a committed receipt is neither signed nor in the outbox'
      FROM ledger.transaction t
     WHERE t.state = 'Committed' AND ledger.is_receipt(t.type)
       AND NOT EXISTS (SELECT FROM ledger.outbox o WHERE o.topic = 'tse' AND o.transaction_id = t.id)
       AND NOT EXISTS (SELECT FROM ledger.tse_signature s WHERE s.transaction_id = t.id)
    UNION ALL
    SELECT 'lines-within-one-event', t.event_id, 'transaction ' || t.id, 'a line touches a missing account or one of another event'
      FROM ledger.transaction t
     WHERE EXISTS (SELECT FROM ledger.booking b
                     LEFT JOIN ledger.account d ON d.id = b.debit_account_id
                     LEFT JOIN ledger.account c ON c.id = b.credit_account_id
                    WHERE b.transaction_id = t.id
                      AND (d.event_id IS DISTINCT FROM t.event_id OR c.event_id IS DISTINCT FROM t.event_id))
    UNION ALL
    SELECT 'references-exist', t.event_id, 'transaction ' || t.id,
           'event, customer or counterparty account, assignment or tag missing, or of another event'
      FROM ledger.transaction t
      LEFT JOIN ledger.account c ON c.id = t.account_id
      LEFT JOIN ledger.account o ON o.id = t.other_account_id
      LEFT JOIN ledger.assignment a ON a.id = t.assignment_id
      LEFT JOIN ledger.tag g ON g.id = t.tag_id
     WHERE NOT EXISTS (SELECT FROM ledger.event e WHERE e.id = t.event_id)
        OR c.event_id IS DISTINCT FROM t.event_id
        OR o.event_id IS DISTINCT FROM t.event_id
        OR (t.assignment_id IS NOT NULL AND a.event_id IS DISTINCT FROM t.event_id)
        OR (t.tag_id IS NOT NULL AND g.event_id IS DISTINCT FROM t.event_id)
    UNION ALL
    SELECT 'references-exist', NULL, format('%s of transaction %s', x.what, x.transaction_id), 'no such transaction'
      FROM (SELECT DISTINCT 'booking line' AS what, b.transaction_id FROM ledger.booking b
            UNION SELECT 'item', i.transaction_id FROM ledger.item i
            UNION SELECT 'outbox row', o.transaction_id FROM ledger.outbox o) x
     WHERE NOT EXISTS (SELECT FROM ledger.transaction t WHERE t.id = x.transaction_id)
    UNION ALL
    SELECT 'references-exist', t.event_id, 'transaction ' || t.id, format('item %s sells product %s of no such event', i.line_no, i.product_id)
      FROM ledger.item i JOIN ledger.transaction t ON t.id = i.transaction_id
     WHERE NOT EXISTS (SELECT FROM ledger.product p WHERE p.id = i.product_id AND p.event_id = t.event_id)
    UNION ALL
    SELECT 'payout-run-matches-lines', r.event_id, 'payout run ' || r.id,
           format('the run says %s customers, transfers %s, fees %s, donations %s; its lines %s, %s, %s, %s',
                  r.count, r.transfers, r.fees, r.donations, l.n, l.transfers, l.fees, l.donations)
      FROM ledger.payout_run r
      CROSS JOIN LATERAL (SELECT count(*)::integer AS n, coalesce(sum(x.amount), 0)::bigint AS transfers,
                                 coalesce(sum(x.fee), 0)::bigint AS fees, coalesce(sum(x.donation), 0)::bigint AS donations
                            FROM ledger.payout_line x WHERE x.run_id = r.id) l
     WHERE (r.count, r.transfers, r.fees, r.donations) <> (l.n, l.transfers, l.fees, l.donations)
    UNION ALL
    SELECT 'payout-run-matches-lines', r.event_id, format('line %s of payout run %s', l.line_no, r.id),
           format('the %s run''s line (revoked %s) has transfer %s, fee %s, donation %s; payout %s, donation %s', r.state,
                  l.revoked, l.amount, l.fee, l.donation,
                  coalesce(format('%s %s amount %s fee %s held %s', p.type, p.state, p.amount, p.fee, p.held), 'none'),
                  coalesce(format('%s %s amount %s held %s', d.type, d.state, d.amount, d.held), 'none'))
      FROM ledger.payout_run r
      JOIN ledger.payout_line l ON l.run_id = r.id
      JOIN ledger.tag g ON g.id = l.tag_id
      LEFT JOIN ledger.transaction p ON p.id = l.payout_transaction_id
      LEFT JOIN ledger.transaction d ON d.id = l.donation_transaction_id
      CROSS JOIN LATERAL (SELECT CASE r.state WHEN 'open' THEN 'ExternalPending' WHEN 'done' THEN 'Committed'
                                              ELSE 'Aborted' END::ledger.tx_state AS state) s
     WHERE l.revoked <> (r.state = 'revoked')
        OR g.event_id <> r.event_id
        OR (l.payout_transaction_id IS NOT NULL
            AND (p.id IS NULL OR p.type <> 'payout' OR p.account_id <> g.account_id OR p.amount <> l.amount + l.fee
                 OR p.fee <> l.fee OR p.state <> s.state OR p.held <> CASE WHEN r.state = 'open' THEN p.amount ELSE 0 END))
        OR (l.donation_transaction_id IS NOT NULL
            AND (d.id IS NULL OR d.type <> 'donation' OR d.account_id <> g.account_id OR d.amount <> l.donation
                 OR d.state <> s.state OR d.held <> CASE WHEN r.state = 'open' THEN d.amount ELSE 0 END))
    UNION ALL
    SELECT 'customer-in-one-open-run', g.event_id, 'tag ' || g.uid,
           'in the open payout runs ' || string_agg(r.id::text, ', ' ORDER BY r.id)
      FROM ledger.payout_line l
      JOIN ledger.payout_run r ON r.id = l.run_id AND r.state = 'open'
      JOIN ledger.tag g ON g.id = l.tag_id
     GROUP BY g.event_id, g.uid
    HAVING count(*) > 1;
$$;
COMMENT ON FUNCTION api.check_invariants IS 'One row per broken ledger invariant (SPEC 10); no rows means healthy.';
