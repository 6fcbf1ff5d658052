-- Append-only records: booking lines, sold items and the violation log refuse UPDATE, DELETE and TRUNCATE (FP050),
-- even for the superuser and for festpay_owner, the owner of the tables; transactions and tags are never deleted
-- (items, booking lines and outbox rows refer to their transaction without a foreign key), and a reference that
-- dangles all the same is reported by api.check_invariants().
BEGIN;
SELECT plan(36);

-- ---------------------------------------------------------------- fixtures: one purchase with lines and items, one violation
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP append-only');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
CREATE FUNCTION pg_temp.entry(p_state text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('terminal_tx_number', 1, 'state', p_state, 'uid', 'BEEF0001', 'tag_tx_number', 1,
                              'amount', 650, 'items', test.items(test.e(), 'Beer:1', 'Cup:1')) $$;
-- What the three append-only tables hold for the purchase, as text.
CREATE FUNCTION pg_temp.records() RETURNS text LANGUAGE sql AS $$
    SELECT format('bookings %s; items %s; violations %s',
        (SELECT string_agg(format('%s:%s<-%s=%s', line_no, debit_account_id, credit_account_id, amount), ' ' ORDER BY line_no)
           FROM ledger.booking WHERE transaction_id = test.v('purchase')),
        (SELECT string_agg(format('%s:%s x%s @%s', line_no, name, quantity, unit_price), ' ' ORDER BY line_no)
           FROM ledger.item WHERE transaction_id = test.v('purchase')),
        (SELECT string_agg(format('%s->%s by %s', from_state, to_state, actor), ' ' ORDER BY id)
           FROM ledger.violation WHERE transaction_id = test.v('purchase'))) $$;

SELECT is(test.funded_tag(test.e(), 'BEEF0001', 5000), 5000::bigint, 'tag funded with 5000');
INSERT INTO test.ctx SELECT 'purchase', transaction_id FROM api.replicate(test.v('bar'), jsonb_build_array(pg_temp.entry('Committed')));
SELECT results_eq($$SELECT state, outcome, problem FROM api.replicate(test.v('bar'), jsonb_build_array(pg_temp.entry('Aborted')))$$,
                  $$VALUES ('Committed'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'setup: a refused Committed -> Aborted writes a violation');
SELECT is(test.balance(test.e(), 'BEEF0001'), 4350::bigint, 'setup: the purchase of 650 (beer 450 + cup deposit 200) is booked');
CREATE TEMP TABLE before AS SELECT pg_temp.records() AS r;
GRANT SELECT ON test.ctx TO festpay_owner;
SELECT is((SELECT r FROM before) ~ '^bookings 1:\d+<-\d+=450 2:\d+<-\d+=200; items 1:Beer x1 @450 2:Cup x1 @200; violations Committed->Aborted by assignment:\d+$',
          true, 'setup: two booking lines, two items and one violation exist');

-- ---------------------------------------------------------------- as the superuser
SELECT throws_ok($$UPDATE ledger.booking SET amount = amount + 1 WHERE transaction_id = test.v('purchase')$$,
                 'FP050', NULL, 'superuser: UPDATE of ledger.booking refused');
SELECT throws_ok($$DELETE FROM ledger.booking WHERE transaction_id = test.v('purchase')$$,
                 'FP050', NULL, 'superuser: DELETE from ledger.booking refused');
SELECT throws_ok($$TRUNCATE ledger.booking$$, 'FP050', NULL, 'superuser: TRUNCATE of ledger.booking refused');
SELECT throws_ok($$UPDATE ledger.item SET unit_price = 0 WHERE transaction_id = test.v('purchase')$$,
                 'FP050', NULL, 'superuser: UPDATE of ledger.item refused');
SELECT throws_ok($$DELETE FROM ledger.item WHERE transaction_id = test.v('purchase')$$,
                 'FP050', NULL, 'superuser: DELETE from ledger.item refused');
SELECT throws_ok($$TRUNCATE ledger.item$$, 'FP050', NULL, 'superuser: TRUNCATE of ledger.item refused');
SELECT throws_ok($$UPDATE ledger.violation SET reason = 'nothing to see' WHERE transaction_id = test.v('purchase')$$,
                 'FP050', NULL, 'superuser: UPDATE of ledger.violation refused');
SELECT throws_ok($$DELETE FROM ledger.violation WHERE transaction_id = test.v('purchase')$$,
                 'FP050', NULL, 'superuser: DELETE from ledger.violation refused');
SELECT throws_ok($$TRUNCATE ledger.violation$$, 'FP050', NULL, 'superuser: TRUNCATE of ledger.violation refused');
SELECT throws_ok($$TRUNCATE ledger.booking, ledger.item, ledger.violation$$, 'FP050', NULL,
                 'superuser: TRUNCATE of all three at once refused');

-- ---------------------------------------------------------------- as the owner of the tables
SET ROLE festpay_owner;
SELECT throws_ok($$UPDATE ledger.booking SET amount = amount + 1 WHERE transaction_id = (SELECT v FROM test.ctx WHERE k = 'purchase')$$,
                 'FP050', NULL, 'festpay_owner: UPDATE of ledger.booking refused');
SELECT throws_ok($$DELETE FROM ledger.booking WHERE transaction_id = (SELECT v FROM test.ctx WHERE k = 'purchase')$$,
                 'FP050', NULL, 'festpay_owner: DELETE from ledger.booking refused');
SELECT throws_ok($$TRUNCATE ledger.booking$$, 'FP050', NULL, 'festpay_owner: TRUNCATE of ledger.booking refused');
SELECT throws_ok($$UPDATE ledger.item SET quantity = 2 WHERE transaction_id = (SELECT v FROM test.ctx WHERE k = 'purchase')$$,
                 'FP050', NULL, 'festpay_owner: UPDATE of ledger.item refused');
SELECT throws_ok($$DELETE FROM ledger.item WHERE transaction_id = (SELECT v FROM test.ctx WHERE k = 'purchase')$$,
                 'FP050', NULL, 'festpay_owner: DELETE from ledger.item refused');
SELECT throws_ok($$TRUNCATE ledger.item$$, 'FP050', NULL, 'festpay_owner: TRUNCATE of ledger.item refused');
SELECT throws_ok($$UPDATE ledger.violation SET payload = '{}' WHERE transaction_id = (SELECT v FROM test.ctx WHERE k = 'purchase')$$,
                 'FP050', NULL, 'festpay_owner: UPDATE of ledger.violation refused');
SELECT throws_ok($$DELETE FROM ledger.violation WHERE transaction_id = (SELECT v FROM test.ctx WHERE k = 'purchase')$$,
                 'FP050', NULL, 'festpay_owner: DELETE from ledger.violation refused');
SELECT throws_ok($$TRUNCATE ledger.violation$$, 'FP050', NULL, 'festpay_owner: TRUNCATE of ledger.violation refused');
RESET ROLE;

-- ---------------------------------------------------------------- nothing changed; the error names the problem
SELECT is(pg_temp.records(), (SELECT r FROM before), 'the booking lines, items and violation are unchanged');
SELECT throws_ok($$DELETE FROM ledger.booking WHERE transaction_id = test.v('purchase')$$,
                 'FP050', 'booking is append-only: DELETE refused', 'the error message names the table and the operation');
SELECT results_eq($$SELECT slug, http_status FROM api.problem_types() WHERE sqlstate = 'FP050'$$,
                  $$VALUES ('append-only'::text, 409)$$, 'FP050 is the append-only problem (HTTP 409)');
SELECT lives_ok($$INSERT INTO ledger.violation (actor, reason) VALUES ('pgTAP', 'appending is allowed')$$,
                'appending to the violation log still works');
SELECT is(test.balance(test.e(), 'BEEF0001'), 4350::bigint, 'the customer balance is unchanged');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold');

-- ---------------------------------------------------------------- transactions and tags are never deleted
SELECT throws_ok($$DELETE FROM ledger.transaction WHERE id = test.v('purchase')$$,
                 'FP050', 'transaction is append-only: DELETE refused', 'superuser: DELETE of a transaction refused');
SELECT throws_ok($$TRUNCATE ledger.transaction CASCADE$$, 'FP050', NULL, 'superuser: TRUNCATE of ledger.transaction refused');
SELECT throws_ok($$DELETE FROM ledger.tag WHERE uid = 'BEEF0001'$$,
                 'FP050', 'tag is append-only: DELETE refused', 'superuser: DELETE of a tag refused');
SELECT throws_ok($$TRUNCATE ledger.tag CASCADE$$, 'FP050', NULL, 'superuser: TRUNCATE of ledger.tag refused');

-- ---------------------------------------------------------------- a dangling reference is reported
SAVEPOINT dangling;
ALTER TABLE ledger.transaction DISABLE TRIGGER transaction_no_delete;
DELETE FROM ledger.tse_signature WHERE transaction_id = test.v('purchase');
DELETE FROM ledger.overdraft WHERE transaction_id = test.v('purchase');
DELETE FROM ledger.transaction WHERE id = test.v('purchase');
SELECT results_eq(
    $$SELECT invariant, subject, detail FROM api.check_invariants() WHERE invariant = 'references-exist' ORDER BY subject$$,
    format($$VALUES ('references-exist'::text, 'booking line of transaction %1$s'::text, 'no such transaction'::text),
                    ('references-exist', 'item of transaction %1$s', 'no such transaction'),
                    ('references-exist', 'outbox row of transaction %1$s', 'no such transaction')$$, test.v('purchase')),
    'a transaction removed behind the triggers'' back: its booking lines, items and outbox row are reported');
ROLLBACK TO SAVEPOINT dangling;
SAVEPOINT dangling;
ALTER TABLE ledger.tag DISABLE TRIGGER tag_no_delete;
UPDATE ledger.transaction SET tag_id = -1 WHERE id = test.v('purchase');
SELECT results_eq(
    $$SELECT invariant, subject FROM api.check_invariants()$$,
    format($$VALUES ('references-exist'::text, 'transaction %s'::text)$$, test.v('purchase')),
    'a transaction whose tag does not exist is reported');
ROLLBACK TO SAVEPOINT dangling;
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold again');

SELECT * FROM finish();
ROLLBACK;
