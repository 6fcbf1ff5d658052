-- Deposit return (customer <- deposit) and chargeback (customer <- merchant, referencing the purchase, never more
-- than what is left of its merchant share; the deposit part is not the merchant's to return) (SPEC 3).
BEGIN;
SELECT plan(42);

-- Scratch: ids (ctx) and api answers (res) of this suite; rolled back at the end.
CREATE TEMP TABLE ctx (k text PRIMARY KEY, v bigint);
CREATE TEMP TABLE res (k text PRIMARY KEY, j jsonb);
CREATE FUNCTION pg_temp.v(p_k text) RETURNS bigint LANGUAGE sql AS $$ SELECT v FROM ctx WHERE k = p_k $$;
CREATE FUNCTION pg_temp.res(p_k text, p_field text) RETURNS text LANGUAGE sql AS $$ SELECT j ->> p_field FROM res WHERE k = p_k $$;
-- The booking lines of a transaction as (debit receives, credit pays, amount), accounts named kind:name.
CREATE FUNCTION pg_temp.lines(p_tx bigint) RETURNS TABLE (debit text, credit text, amount bigint) LANGUAGE sql AS $$
    SELECT d.kind || ':' || d.name, c.kind || ':' || c.name, b.amount
      FROM ledger.booking b
      JOIN ledger.account d ON d.id = b.debit_account_id
      JOIN ledger.account c ON c.id = b.credit_account_id
     WHERE b.transaction_id = p_tx ORDER BY b.line_no $$;
-- The DETAIL (JSON) of the error a statement raises, or NULL when it raises none (its effects are undone either way).
CREATE FUNCTION pg_temp.error_detail(p_sql text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_detail text;
BEGIN
    BEGIN
        EXECUTE p_sql;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN v_detail::jsonb;
    END;
    RAISE EXCEPTION 'no error' USING ERRCODE = 'P0001';
EXCEPTION WHEN raise_exception THEN
    RETURN NULL;
END
$$;
-- Books an offline sale replicated Committed at a terminal; returns its transaction id.
CREATE FUNCTION pg_temp.sale(p_assignment bigint, p_number bigint, p_uid text, p_amount bigint, p_items jsonb)
RETURNS bigint LANGUAGE sql AS $$
    SELECT transaction_id FROM api.replicate(p_assignment, jsonb_build_array(jsonb_build_object(
        'terminal_tx_number', p_number, 'type', 'purchase', 'state', 'Committed', 'uid', p_uid,
        'amount', p_amount, 'items', p_items))) $$;

INSERT INTO ctx SELECT 'e', test.event('Deposit Fest');
INSERT INTO ctx SELECT 'bar', test.terminal(pg_temp.v('e'), 'Bar');
INSERT INTO ctx SELECT 'food', test.terminal(pg_temp.v('e'), 'Food');
INSERT INTO ctx SELECT 'top', test.terminal(pg_temp.v('e'), 'Top-up');
INSERT INTO ctx SELECT 'funded', test.funded_tag(pg_temp.v('e'), 'D0D0D0D0', 10000);
-- A Bar sale: 2 Beer 900 + 2 Cup 400 (deposit) + 1 Pretzel 350 = 1650, of which 1250 is the merchant's.
INSERT INTO ctx SELECT 'p1', pg_temp.sale(pg_temp.v('bar'), 1, 'D0D0D0D0', 1650,
                                          test.items(pg_temp.v('e'), 'Beer:2', 'Cup:2', 'Pretzel:1'));

SELECT results_eq($$SELECT * FROM pg_temp.lines(pg_temp.v('p1'))$$,
                  $$VALUES ('merchant:Bar', 'customer:D0D0D0D0', 900::bigint),
                           ('deposit:deposit', 'customer:D0D0D0D0', 400::bigint),
                           ('merchant:Bar', 'customer:D0D0D0D0', 350::bigint)$$,
                  'the sale: Bar <- customer 900, deposit <- customer 400, Bar <- customer 350');
SELECT is(test.balance(pg_temp.v('e'), 'D0D0D0D0'), 8350::bigint, 'after the sale: 8350');
SELECT is(test.account_balance(pg_temp.v('e'), 'deposit', 'deposit'), 400::bigint, 'the deposit account holds 400');

-- Deposit return: one Cup back, customer <- deposit 200.
INSERT INTO res SELECT 'dr', to_jsonb(x)
  FROM api.deposit_return(pg_temp.v('bar'), 2, 'D0D0D0D0', test.items(pg_temp.v('e'), 'Cup:1')) x;
INSERT INTO ctx SELECT 'dr', pg_temp.res('dr', 'transaction_id')::bigint;
SELECT is(pg_temp.res('dr', 'state'), 'Committed', 'deposit return: Committed');
SELECT is(pg_temp.res('dr', 'balance')::bigint, 8550::bigint, 'deposit return: answered balance 8350 + 200');
SELECT results_eq($$SELECT * FROM pg_temp.lines(pg_temp.v('dr'))$$,
                  $$VALUES ('customer:D0D0D0D0', 'deposit:deposit', 200::bigint)$$,
                  'deposit return: exactly one line, customer <- deposit 200');
SELECT results_eq($$SELECT type::text, amount FROM ledger.transaction WHERE id = pg_temp.v('dr')$$,
                  $$VALUES ('deposit_return', 200::bigint)$$, 'deposit return: type deposit_return, amount 200');
SELECT results_eq($$SELECT name, quantity, unit_price, returnable FROM ledger.item WHERE transaction_id = pg_temp.v('dr')$$,
                  $$VALUES ('Cup', 1, 200::bigint, true)$$, 'deposit return: the returned item is stored');
SELECT is(test.account_balance(pg_temp.v('e'), 'deposit', 'deposit'), 200::bigint, 'the deposit account holds 200');
SELECT is((SELECT transaction_id FROM api.deposit_return(pg_temp.v('bar'), 2, 'D0D0D0D0', test.items(pg_temp.v('e'), 'Cup:1'))),
          pg_temp.v('dr'), 'deposit return repeated: the same transaction');
SELECT is(test.balance(pg_temp.v('e'), 'D0D0D0D0'), 8550::bigint, 'deposit return repeated: nothing booked twice');
SELECT throws_ok($$SELECT api.deposit_return(pg_temp.v('bar'), 2, 'D0D0D0D0', test.items(pg_temp.v('e'), 'Cup:2'))$$,
                 'FP031', NULL, 'the same number returning 2 Cups: idempotency-conflict');

-- Only returnable products have a deposit to return.
SELECT throws_ok($$SELECT api.deposit_return(pg_temp.v('bar'), 3, 'D0D0D0D0', test.items(pg_temp.v('e'), 'Beer:1'))$$,
                 'FP001', NULL, 'returning a Beer (not returnable): validation');
SELECT throws_ok($$SELECT api.deposit_return(pg_temp.v('bar'), 3, 'D0D0D0D0', test.items(pg_temp.v('e'), 'Cup:1', 'Beer:1'))$$,
                 'FP001', NULL, 'a Cup with a Beer: validation, nothing returned');
SELECT throws_ok($$SELECT api.deposit_return(pg_temp.v('bar'), 3, 'D0D0D0D0', test.items(pg_temp.v('e'), 'Tip:1:100'))$$,
                 'FP001', NULL, 'returning a Tip: validation');
SELECT throws_ok($$SELECT api.deposit_return(pg_temp.v('bar'), 3, 'D0D0D0D0', '[]'::jsonb)$$,
                 'FP001', NULL, 'returning nothing: validation');
SELECT is(test.balance(pg_temp.v('e'), 'D0D0D0D0'), 8550::bigint, 'refused returns change nothing: 8550');
SELECT is(test.account_balance(pg_temp.v('e'), 'deposit', 'deposit'), 200::bigint, 'refused returns change nothing: deposit 200');
SELECT is((SELECT count(*) FROM ledger.transaction WHERE assignment_id = pg_temp.v('bar') AND terminal_tx_number = 3),
          0::bigint, 'refused returns leave no transaction');

-- Chargeback of part of the sale: customer <- Bar, linked to the purchase.
INSERT INTO res SELECT 'cb1', to_jsonb(x) FROM api.chargeback(pg_temp.v('p1'), 500) x;
INSERT INTO ctx SELECT 'cb1', pg_temp.res('cb1', 'transaction_id')::bigint;
SELECT is(pg_temp.res('cb1', 'state'), 'Committed', 'chargeback 500: Committed');
SELECT is(pg_temp.res('cb1', 'balance')::bigint, 9050::bigint, 'chargeback 500: answered balance 8550 + 500');
SELECT results_eq($$SELECT * FROM pg_temp.lines(pg_temp.v('cb1'))$$,
                  $$VALUES ('customer:D0D0D0D0', 'merchant:Bar', 500::bigint)$$,
                  'chargeback: exactly one line, customer <- Bar 500');
SELECT results_eq($$SELECT type::text, linked_id, amount FROM ledger.transaction WHERE id = pg_temp.v('cb1')$$,
                  $$VALUES ('chargeback', pg_temp.v('p1'), 500::bigint)$$, 'chargeback: references the purchase');
SELECT is(test.account_balance(pg_temp.v('e'), 'merchant', 'Bar'), 750::bigint, 'Bar: 1250 - 500');

-- What is left is 750 of the merchant share; the deposit part (400, of which 200 still held) is not included.
SELECT throws_ok($$SELECT api.chargeback(pg_temp.v('p1'), 751)$$, 'FP023', NULL,
                 '751 with 750 left: chargeback-exceeds-purchase');
SELECT is(pg_temp.error_detail($$SELECT api.chargeback(pg_temp.v('p1'), 751)$$), '{"left": 750}'::jsonb,
          'chargeback-exceeds-purchase DETAIL: {"left": 750}');
SELECT is((SELECT balance FROM api.chargeback(pg_temp.v('p1'), 750)), 9800::bigint, 'the remaining 750: balance 9800');
SELECT throws_ok($$SELECT api.chargeback(pg_temp.v('p1'), 1)$$, 'FP023', NULL,
                 'the merchant share is used up: 1 more is refused although 200 of deposit remain');
SELECT is(test.account_balance(pg_temp.v('e'), 'merchant', 'Bar'), 0::bigint, 'Bar is back to 0');
SELECT is(test.balance(pg_temp.v('e'), 'D0D0D0D0'), 9800::bigint, 'customer: 9800');
SELECT is((SELECT count(*) FROM ledger.transaction WHERE linked_id = pg_temp.v('p1') AND type = 'chargeback'), 2::bigint,
          'two chargebacks reference the purchase');

-- Each purchase has its own share; a deposit-only sale has nothing to charge back.
INSERT INTO ctx SELECT 'p2', pg_temp.sale(pg_temp.v('bar'), 4, 'D0D0D0D0', 450, test.items(pg_temp.v('e'), 'Beer:1'));
SELECT is((SELECT balance FROM api.chargeback(pg_temp.v('p2'), 450)), 9800::bigint, 'a second sale of 450 charged back in full');
INSERT INTO ctx SELECT 'p3', pg_temp.sale(pg_temp.v('food'), 1, 'D0D0D0D0', 200, test.items(pg_temp.v('e'), 'Cup:1'));
SELECT is(pg_temp.error_detail($$SELECT api.chargeback(pg_temp.v('p3'), 1)$$), '{"left": 0}'::jsonb,
          'a Cup-only sale: chargeback-exceeds-purchase, left 0');

-- Only committed purchases can be charged back.
INSERT INTO ctx SELECT 'pending', transaction_id
  FROM api.reserve(pg_temp.v('bar'), 5, 'D0D0D0D0', 1, 350, test.items(pg_temp.v('e'), 'Pretzel:1'));
SELECT throws_ok($$SELECT api.chargeback(pg_temp.v('pending'), 100)$$, 'FP010', NULL,
                 'chargeback of a ReservePending purchase: not-found');
SELECT is((SELECT outcome FROM api.replicate(pg_temp.v('bar'), jsonb_build_array(jsonb_build_object(
               'terminal_tx_number', 5, 'state', 'Aborted', 'uid', 'D0D0D0D0', 'amount', 350)))),
          'booked', 'that purchase is aborted');
SELECT throws_ok($$SELECT api.chargeback(pg_temp.v('pending'), 100)$$, 'FP010', NULL,
                 'chargeback of an Aborted purchase: not-found');
SELECT throws_ok($$SELECT api.chargeback(pg_temp.v('dr'), 100)$$, 'FP010', NULL,
                 'chargeback of a deposit return (not a purchase): not-found');
SELECT throws_ok($$SELECT api.chargeback(-1, 100)$$, 'FP010', NULL, 'chargeback of no transaction: not-found');
SELECT throws_ok($$SELECT api.chargeback(pg_temp.v('p2'), 0)$$, 'FP001', NULL, 'chargeback of 0: validation');
SELECT is(test.balance(pg_temp.v('e'), 'D0D0D0D0'), 9600::bigint, 'customer: 9800 - 200 (Cup sale)');
SELECT is(test.held(pg_temp.v('e'), 'D0D0D0D0'), 0::bigint, 'nothing held');

SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'deposit returns and chargebacks: every invariant holds');

SELECT * FROM finish();
ROLLBACK;
