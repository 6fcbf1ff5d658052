-- Deposit return (customer <- deposit) and chargeback (customer <- merchant, referencing the purchase, never more
-- than what is left of its merchant share; the deposit part is not the merchant's to return) (SPEC 3).
BEGIN;
SELECT plan(42);

-- Scratch: ids in test.ctx (read with test.v) and api answers in test.res (read with test.res); rolled back at the end.

-- Books an offline sale replicated Committed at a terminal; returns its transaction id.
CREATE FUNCTION pg_temp.sale(p_assignment bigint, p_number bigint, p_uid text, p_amount bigint, p_items jsonb)
RETURNS bigint LANGUAGE sql AS $$
    SELECT transaction_id FROM api.replicate(p_assignment, jsonb_build_array(jsonb_build_object(
        'terminal_tx_number', p_number, 'type', 'purchase', 'state', 'Committed', 'uid', p_uid,
        'amount', p_amount, 'items', p_items))) $$;

INSERT INTO test.ctx SELECT 'e', test.event('Deposit Fest');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.v('e'), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.v('e'), 'Food');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.v('e'), 'Top-up');
INSERT INTO test.ctx SELECT 'funded', test.funded_tag(test.v('e'), 'D0D0D0D0', 10000);
-- A Bar sale: 2 Beer 900 + 2 Cup 400 (deposit) + 1 Pretzel 350 = 1650, of which 1250 is the merchant's.
INSERT INTO test.ctx SELECT 'p1', pg_temp.sale(test.v('bar'), 1, 'D0D0D0D0', 1650,
                                          test.items(test.v('e'), 'Beer:2', 'Cup:2', 'Pretzel:1'));

SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('p1'))$$,
                  $$VALUES ('merchant:Bar', 'customer:D0D0D0D0', 900::bigint),
                           ('deposit:deposit', 'customer:D0D0D0D0', 400::bigint),
                           ('merchant:Bar', 'customer:D0D0D0D0', 350::bigint)$$,
                  'the sale: Bar <- customer 900, deposit <- customer 400, Bar <- customer 350');
SELECT is(test.balance(test.v('e'), 'D0D0D0D0'), 8350::bigint, 'after the sale: 8350');
SELECT is(test.account_balance(test.v('e'), 'deposit', 'deposit'), 400::bigint, 'the deposit account holds 400');

-- Deposit return: one Cup back, customer <- deposit 200.
INSERT INTO test.res SELECT 'dr', to_jsonb(x)
  FROM api.deposit_return(test.v('bar'), 2, 'D0D0D0D0', test.items(test.v('e'), 'Cup:1')) x;
INSERT INTO test.ctx SELECT 'dr', test.res('dr', 'transaction_id')::bigint;
SELECT is(test.res('dr', 'state'), 'Committed', 'deposit return: Committed');
SELECT is(test.res('dr', 'balance')::bigint, 8550::bigint, 'deposit return: answered balance 8350 + 200');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('dr'))$$,
                  $$VALUES ('customer:D0D0D0D0', 'deposit:deposit', 200::bigint)$$,
                  'deposit return: exactly one line, customer <- deposit 200');
SELECT results_eq($$SELECT type::text, amount::bigint FROM ledger.transaction WHERE id = test.v('dr')$$,
                  $$VALUES ('deposit_return', 200::bigint)$$, 'deposit return: type deposit_return, amount 200');
SELECT results_eq($$SELECT name, quantity::integer, unit_price::bigint, returnable FROM ledger.item WHERE transaction_id = test.v('dr')$$,
                  $$VALUES ('Cup', 1, 200::bigint, true)$$, 'deposit return: the returned item is stored');
SELECT is(test.account_balance(test.v('e'), 'deposit', 'deposit'), 200::bigint, 'the deposit account holds 200');
SELECT is((SELECT transaction_id FROM api.deposit_return(test.v('bar'), 2, 'D0D0D0D0', test.items(test.v('e'), 'Cup:1'))),
          test.v('dr'), 'deposit return repeated: the same transaction');
SELECT is(test.balance(test.v('e'), 'D0D0D0D0'), 8550::bigint, 'deposit return repeated: nothing booked twice');
SELECT throws_ok($$SELECT api.deposit_return(test.v('bar'), 2, 'D0D0D0D0', test.items(test.v('e'), 'Cup:2'))$$,
                 'FP031', NULL, 'the same number returning 2 Cups: idempotency-conflict');

-- Only returnable products have a deposit to return.
SELECT throws_ok($$SELECT api.deposit_return(test.v('bar'), 3, 'D0D0D0D0', test.items(test.v('e'), 'Beer:1'))$$,
                 'FP001', NULL, 'returning a Beer (not returnable): validation');
SELECT throws_ok($$SELECT api.deposit_return(test.v('bar'), 3, 'D0D0D0D0', test.items(test.v('e'), 'Cup:1', 'Beer:1'))$$,
                 'FP001', NULL, 'a Cup with a Beer: validation, nothing returned');
SELECT throws_ok($$SELECT api.deposit_return(test.v('bar'), 3, 'D0D0D0D0', test.items(test.v('e'), 'Tip:1:100'))$$,
                 'FP001', NULL, 'returning a Tip: validation');
SELECT throws_ok($$SELECT api.deposit_return(test.v('bar'), 3, 'D0D0D0D0', '[]'::jsonb)$$,
                 'FP001', NULL, 'returning nothing: validation');
SELECT is(test.balance(test.v('e'), 'D0D0D0D0'), 8550::bigint, 'refused returns change nothing: 8550');
SELECT is(test.account_balance(test.v('e'), 'deposit', 'deposit'), 200::bigint, 'refused returns change nothing: deposit 200');
SELECT is((SELECT count(*) FROM ledger.transaction WHERE assignment_id = test.v('bar') AND terminal_tx_number = 3),
          0::bigint, 'refused returns leave no transaction');

-- Chargeback of part of the sale: customer <- Bar, linked to the purchase.
INSERT INTO test.res SELECT 'cb1', to_jsonb(x) FROM api.chargeback(test.v('p1'), 500) x;
INSERT INTO test.ctx SELECT 'cb1', test.res('cb1', 'transaction_id')::bigint;
SELECT is(test.res('cb1', 'state'), 'Committed', 'chargeback 500: Committed');
SELECT is(test.res('cb1', 'balance')::bigint, 9050::bigint, 'chargeback 500: answered balance 8550 + 500');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('cb1'))$$,
                  $$VALUES ('customer:D0D0D0D0', 'merchant:Bar', 500::bigint)$$,
                  'chargeback: exactly one line, customer <- Bar 500');
SELECT results_eq($$SELECT type::text, linked_id, amount::bigint FROM ledger.transaction WHERE id = test.v('cb1')$$,
                  $$VALUES ('chargeback', test.v('p1'), 500::bigint)$$, 'chargeback: references the purchase');
SELECT is(test.account_balance(test.v('e'), 'merchant', 'Bar'), 750::bigint, 'Bar: 1250 - 500');

-- What is left is 750 of the merchant share; the deposit part (400, of which 200 still held) is not included.
SELECT throws_ok($$SELECT api.chargeback(test.v('p1'), 751)$$, 'FP023', NULL,
                 '751 with 750 left: chargeback-exceeds-purchase');
SELECT is(test.error_detail($$SELECT api.chargeback(test.v('p1'), 751)$$), '{"left": 750}'::jsonb,
          'chargeback-exceeds-purchase DETAIL: {"left": 750}');
SELECT is((SELECT balance FROM api.chargeback(test.v('p1'), 750)), 9800::bigint, 'the remaining 750: balance 9800');
SELECT throws_ok($$SELECT api.chargeback(test.v('p1'), 1)$$, 'FP023', NULL,
                 'the merchant share is used up: 1 more is refused although 200 of deposit remain');
SELECT is(test.account_balance(test.v('e'), 'merchant', 'Bar'), 0::bigint, 'Bar is back to 0');
SELECT is(test.balance(test.v('e'), 'D0D0D0D0'), 9800::bigint, 'customer: 9800');
SELECT is((SELECT count(*) FROM ledger.transaction WHERE linked_id = test.v('p1') AND type = 'chargeback'), 2::bigint,
          'two chargebacks reference the purchase');

-- Each purchase has its own share; a deposit-only sale has nothing to charge back.
INSERT INTO test.ctx SELECT 'p2', pg_temp.sale(test.v('bar'), 4, 'D0D0D0D0', 450, test.items(test.v('e'), 'Beer:1'));
SELECT is((SELECT balance FROM api.chargeback(test.v('p2'), 450)), 9800::bigint, 'a second sale of 450 charged back in full');
INSERT INTO test.ctx SELECT 'p3', pg_temp.sale(test.v('food'), 1, 'D0D0D0D0', 200, test.items(test.v('e'), 'Cup:1'));
SELECT is(test.error_detail($$SELECT api.chargeback(test.v('p3'), 1)$$), '{"left": 0}'::jsonb,
          'a Cup-only sale: chargeback-exceeds-purchase, left 0');

-- Only committed purchases can be charged back.
INSERT INTO test.ctx SELECT 'pending', transaction_id
  FROM api.reserve(test.v('bar'), 5, 'D0D0D0D0', 1, 350, test.items(test.v('e'), 'Pretzel:1'));
SELECT throws_ok($$SELECT api.chargeback(test.v('pending'), 100)$$, 'FP010', NULL,
                 'chargeback of a ReservePending purchase: not-found');
SELECT is((SELECT outcome FROM api.replicate(test.v('bar'), jsonb_build_array(jsonb_build_object(
               'terminal_tx_number', 5, 'state', 'Aborted', 'uid', 'D0D0D0D0', 'amount', 350)))),
          'booked', 'that purchase is aborted');
SELECT throws_ok($$SELECT api.chargeback(test.v('pending'), 100)$$, 'FP010', NULL,
                 'chargeback of an Aborted purchase: not-found');
SELECT throws_ok($$SELECT api.chargeback(test.v('dr'), 100)$$, 'FP010', NULL,
                 'chargeback of a deposit return (not a purchase): not-found');
SELECT throws_ok($$SELECT api.chargeback(-1, 100)$$, 'FP010', NULL, 'chargeback of no transaction: not-found');
SELECT throws_ok($$SELECT api.chargeback(test.v('p2'), 0)$$, 'FP001', NULL, 'chargeback of 0: validation');
SELECT is(test.balance(test.v('e'), 'D0D0D0D0'), 9600::bigint, 'customer: 9800 - 200 (Cup sale)');
SELECT is(test.held(test.v('e'), 'D0D0D0D0'), 0::bigint, 'nothing held');

SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'deposit returns and chargebacks: every invariant holds');

SELECT * FROM finish();
ROLLBACK;
