-- Reports after a mixed scenario touching every kind of account: trial balance, balances by kind, the customer
-- statement with its running balance, open reservations and duplicate tag transaction numbers.
BEGIN;
SELECT plan(24);

-- Scratch: ids in test.ctx (read with test.v); rolled back at the end.

-- Runs a one-value query as another role; returns its value as text, or 'ERROR <sqlstate>'.
CREATE FUNCTION pg_temp.as_role(p_role text, p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE p_sql INTO v;
    RESET ROLE;
    RETURN v;
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE;   -- the subtransaction's rollback restores the role
END
$$;

INSERT INTO test.ctx SELECT 'e', test.event('Report Fest');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.v('e'), 'Top-up');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.v('e'), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.v('e'), 'Food');

-- The scenario (tag A = AA00AA00, tag B = BB00BB00):
--   cash top-up 10000; card top-up 5000 (fee 50); Bar sale 2 Beer + 1 Cup = 1100; Cup returned 200;
--   chargeback 450; cash refund 1000; transfer 2000 to B; B pays out all (fee 100); A reserves a Pretzel (350).
DO $$
DECLARE
    e bigint := test.v('e');
    top bigint := test.v('top');
    bar bigint := test.v('bar');
    p bigint;
BEGIN
    PERFORM api.topup(top, 1, 'AA00AA00', 10000, 'cash');
    PERFORM api.topup(top, 2, 'AA00AA00', 5000, 'card');
    SELECT transaction_id INTO p FROM api.replicate(bar, jsonb_build_array(jsonb_build_object(
        'terminal_tx_number', 1, 'type', 'purchase', 'state', 'Committed', 'uid', 'AA00AA00', 'tag_tx_number', 1,
        'amount', 1100, 'items', test.items(e, 'Beer:2', 'Cup:1'))));
    INSERT INTO test.ctx VALUES ('purchase', p);
    PERFORM api.deposit_return(bar, 2, 'AA00AA00', test.items(e, 'Cup:1'));
    PERFORM api.chargeback(p, 450);
    PERFORM api.refund(top, 3, 'AA00AA00', 1000);
    PERFORM api.transfer(e, 'AA00AA00', 'BB00BB00', 2000);
    PERFORM api.payout(e, 'BB00BB00');
    INSERT INTO test.ctx SELECT 'reserve', transaction_id
      FROM api.reserve(bar, 3, 'AA00AA00', 7, 350, test.items(e, 'Pretzel:1'));
END
$$;

SELECT is(test.balance(test.v('e'), 'AA00AA00'), 11500::bigint,
          'A: 10000 + 4950 - 1100 + 200 + 450 - 1000 - 2000 = 11500');
SELECT is(test.balance(test.v('e'), 'BB00BB00'), 0::bigint, 'B: 2000 in, all paid out');

-- Trial balance: every balance of the event sums to 0.
SELECT results_eq($$SELECT debit_balances, credit_balances, total FROM report.trial_balance WHERE event_id = test.v('e')$$,
                  $$VALUES (14000::bigint, -14000::bigint, 0::bigint)$$,
                  'trial balance: 11500 + 450 + 150 + 1900 against -5000 - 9000, total 0');

-- Balances by kind.
SELECT results_eq($$SELECT kind::text, accounts, balance, held FROM report.balance_by_kind
                     WHERE event_id = test.v('e') ORDER BY kind::text$$,
                  $$VALUES ('cash', 3::bigint, -9000::bigint, 0::bigint),
                           ('customer', 2::bigint, 11500::bigint, 350::bigint),
                           ('deposit', 1::bigint, 0::bigint, 0::bigint),
                           ('donation', 1::bigint, 0::bigint, 0::bigint),
                           ('fee', 1::bigint, 150::bigint, 0::bigint),
                           ('merchant', 2::bigint, 450::bigint, 0::bigint),
                           ('payout', 1::bigint, 1900::bigint, 0::bigint),
                           ('topup', 3::bigint, -5000::bigint, 0::bigint)$$,
                  'balances by kind: customers 11500 (350 held), merchants 450, top-up -5000, drawers -9000, '
                  'fees 150, payout 1900, deposit 0, donation 0');
SELECT results_eq($$SELECT name, balance::bigint FROM report.account_balance
                     WHERE event_id = test.v('e') AND kind IN ('merchant', 'topup', 'cash') ORDER BY kind, account_id$$,
                  $$VALUES ('Bar', 450::bigint), ('Food', 0::bigint),
                           ('cash', 0::bigint), ('card', -5000::bigint), ('online', 0::bigint),
                           ('drawer ' || test.v('top'), -9000::bigint),
                           ('drawer ' || test.v('bar'), 0::bigint),
                           ('drawer ' || test.v('food'), 0::bigint)$$,
                  'account balances: Bar 450, topup/card -5000, the top-up drawer -10000 + 1000');
SELECT is((SELECT sum(balance)::bigint FROM report.account_balance WHERE event_id = test.v('e')), 0::bigint,
          'all account balances of the event sum to 0');

-- The customer statement: every line of A, signed from A's side, with the running balance.
SELECT results_eq($$SELECT type, counterparty, amount, balance_after
                      FROM api.customer_statement(test.v('e'), 'aa00aa00')$$,
                  $$VALUES ('topup', 'cash:drawer ' || test.v('top'), 10000::bigint, 10000::bigint),
                           ('topup', 'topup:card', 5000::bigint, 15000::bigint),
                           ('topup', 'fee:fees', -50::bigint, 14950::bigint),
                           ('purchase', 'merchant:Bar', -900::bigint, 14050::bigint),
                           ('purchase', 'deposit:deposit', -200::bigint, 13850::bigint),
                           ('deposit_return', 'deposit:deposit', 200::bigint, 14050::bigint),
                           ('chargeback', 'merchant:Bar', 450::bigint, 14500::bigint),
                           ('refund', 'cash:drawer ' || test.v('top'), -1000::bigint, 13500::bigint),
                           ('transfer', 'customer:BB00BB00', -2000::bigint, 11500::bigint)$$,
                  'statement of A: 9 lines, running balance 10000 ... 11500');
SELECT is((SELECT balance_after FROM api.customer_statement(test.v('e'), 'AA00AA00') WITH ORDINALITY
            ORDER BY ordinality DESC LIMIT 1),
          test.balance(test.v('e'), 'AA00AA00'), 'the statement of A ends at the account balance');
SELECT results_eq($$SELECT counterparty, amount, balance_after FROM api.customer_statement(test.v('e'), 'BB00BB00')$$,
                  $$VALUES ('customer:AA00AA00', 2000::bigint, 2000::bigint),
                           ('payout:payout', -1900::bigint, 100::bigint),
                           ('fee:fees', -100::bigint, 0::bigint)$$,
                  'statement of B: 2000 from A, 1900 paid out, 100 fee, ends at 0');
SELECT throws_ok($$SELECT * FROM api.customer_statement(test.v('e'), 'CC00CC00')$$, 'FP010', NULL,
                 'statement of an unknown tag: not-found');

-- An open-loop purchase books its top-up first: the statement never shows the customer below 0.
INSERT INTO test.ctx SELECT 'new tag', api.create_tag(test.v('e'), 'DD00DD00');
SELECT is((SELECT balance FROM api.open_loop_purchase(test.v('bar'), 4, 'DD00DD00', 0, 350,
                                                       test.items(test.v('e'), 'Pretzel:1'), 500)),
          100::bigint, 'an open-loop purchase on an empty tag: 500 - 50 - 350 = 100');
SELECT is((SELECT balance_after FROM api.customer_statement(test.v('e'), 'DD00DD00') WITH ORDINALITY
            ORDER BY ordinality DESC LIMIT 1), 100::bigint, 'its statement ends at 100');
SELECT is_empty($$SELECT * FROM api.customer_statement(test.v('e'), 'DD00DD00') WHERE balance_after < 0$$,
                'its statement shows no negative running balance (the tag never went below 0)');

-- Open reservations.
SELECT results_eq($$SELECT transaction_id, state::text, uid, amount, held FROM report.open_reservation
                     WHERE event_id = test.v('e')$$,
                  $$VALUES (test.v('reserve'), 'ReservePending', 'AA00AA00', 350::bigint, 350::bigint)$$,
                  'open reservations: the Pretzel reserve of A, 350 held');

-- Duplicate tag transaction numbers: a second live transaction of A with tag number 7 is reported.
SELECT is_empty($$SELECT * FROM report.tag_number_duplicate WHERE event_id = test.v('e')$$,
                'no duplicate tag numbers yet');
INSERT INTO test.ctx SELECT 'dup', transaction_id
  FROM api.reserve(test.v('food'), 1, 'AA00AA00', 7, 350, test.items(test.v('e'), 'Pretzel:1'));
SELECT results_eq($$SELECT uid, tag_tx_number, transactions, transaction_ids FROM report.tag_number_duplicate
                     WHERE event_id = test.v('e')$$,
                  $$VALUES ('AA00AA00', 7, 2::bigint, ARRAY[test.v('reserve'), test.v('dup')])$$,
                  'tag_number_duplicate: A''s number 7 used by both reserves');
SELECT is((SELECT outcome FROM api.replicate(test.v('food'), jsonb_build_array(jsonb_build_object(
               'terminal_tx_number', 1, 'state', 'Aborted', 'uid', 'AA00AA00', 'amount', 350)))),
          'booked', 'the second one is aborted');
SELECT is_empty($$SELECT * FROM report.tag_number_duplicate WHERE event_id = test.v('e')$$,
                'an aborted transaction no longer counts as a duplicate');
SELECT results_eq($$SELECT held FROM report.balance_by_kind WHERE event_id = test.v('e') AND kind = 'customer'$$,
                  $$VALUES (350::bigint)$$, 'the abort released its hold: 350 held');

-- The report role reads reports but no private table.
SELECT is(pg_temp.as_role('festpay_report', $$SELECT total FROM report.trial_balance WHERE event = 'Report Fest'$$), '0',
          'festpay_report reads the trial balance');
SELECT is(pg_temp.as_role('festpay_report', $$SELECT balance_after FROM api.customer_statement(
                              (SELECT event_id FROM report.trial_balance WHERE event = 'Report Fest'), 'BB00BB00') WITH ORDINALITY
                           ORDER BY ordinality DESC LIMIT 1$$), '0',
          'festpay_report runs the customer statement');
SELECT is(pg_temp.as_role('festpay_report', $$SELECT count(*) FROM ledger.booking$$), 'ERROR 42501',
          'festpay_report cannot read ledger.booking');
SELECT is(pg_temp.as_role('festpay_terminal', $$SELECT count(*) FROM report.trial_balance$$), 'ERROR 42501',
          'festpay_terminal cannot read reports');

SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'reports scenario: every invariant holds');

SELECT * FROM finish();
ROLLBACK;
