-- Row rules: what every transaction, account and item row satisfies, whoever writes it (the api functions, a DBA as
-- the superuser or as festpay_owner): the value domains (ledger.amount > 0, ledger.cents >= 0, ledger.quantity > 0,
-- ...) and the rules that relate two columns (CHECK transaction_rules and account_rules, one function call each).
-- Every refusal is a check_violation (23514) that names the rule, and changes nothing.
BEGIN;
SELECT plan(17);

-- ---------------------------------------------------------------- fixtures: a reserved purchase (ReservePending, 450 held)
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP row rules');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'merchant', id FROM ledger.account WHERE event_id = test.e() AND kind = 'merchant' AND name = 'Bar';
SELECT is(test.funded_tag(test.e(), 'C0DE0001', 5000), 5000::bigint, 'setup: tag funded with 5000');
INSERT INTO test.ctx SELECT 'p', transaction_id FROM api.reserve(test.v('bar'), 1, 'C0DE0001', 0, 450, test.items(test.e(), 'Beer:1'));

CREATE FUNCTION pg_temp.refusal(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
-- Runs a statement that must break a row rule; its effects are undone.
-- Returns '<SQLSTATE> <constraint>: <detail>' of the error it raised, or 'no error'.
DECLARE
    v_state text;
    v_constraint text;
    v_detail text;
BEGIN
    BEGIN
        EXECUTE p_sql;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_constraint = CONSTRAINT_NAME, v_detail = PG_EXCEPTION_DETAIL;
        RETURN format('%s %s: %s', v_state, v_constraint, v_detail);
    END;
    RETURN 'no error';
END
$$;
-- What the reserved purchase and the two accounts look like, as text.
CREATE FUNCTION pg_temp.rows() RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s %s %s %s %s; customer %s/%s; merchant %s/%s', t.state, t.held, t.committed_at IS NULL,
                  t.assignment_id IS NULL, t.terminal_tx_number, t.amount, c.balance, c.held, m.balance, m.held)
      FROM ledger.transaction t
      JOIN ledger.account c ON c.id = t.account_id
      JOIN ledger.account m ON m.id = t.other_account_id
     WHERE t.id = test.v('p') $$;
CREATE TEMP TABLE before AS SELECT pg_temp.rows() AS r;
SELECT is((SELECT r FROM before), 'ReservePending 450 t f 1 450; customer 5000/450; merchant 0/0',
          'setup: the purchase is ReservePending with 450 held on the customer');

-- ---------------------------------------------------------------- rules that relate two columns
SELECT is(pg_temp.refusal($$UPDATE ledger.transaction SET state = 'Committed', committed_at = now() WHERE id = test.v('p')$$),
          '23514 transaction_rules: held_only_while_reserved: a transaction in state Committed holds 450',
          'a Committed transaction cannot hold money');
SELECT is(pg_temp.refusal($$UPDATE ledger.transaction SET committed_at = now() WHERE id = test.v('p')$$),
          '23514 transaction_rules: committed_at_iff_committed: committed_at is set exactly when the state is Committed',
          'committed_at only with state Committed');
SELECT is(pg_temp.refusal($$UPDATE ledger.transaction SET held = 0, state = 'Committed' WHERE id = test.v('p')$$),
          '23514 transaction_rules: committed_at_iff_committed: committed_at is set exactly when the state is Committed',
          'state Committed only with committed_at');
SELECT is(pg_temp.refusal($$UPDATE ledger.transaction SET terminal_tx_number = NULL WHERE id = test.v('p')$$),
          '23514 transaction_rules: terminal_identity_complete: a terminal transaction has both an assignment and a terminal number',
          'a terminal transaction keeps both parts of its identity');
SELECT is(pg_temp.refusal($$UPDATE ledger.transaction SET other_account_id = account_id WHERE id = test.v('p')$$),
          '23514 transaction_rules: two_sides: account_id and other_account_id must differ',
          'a transaction has two different sides');
SELECT is(pg_temp.refusal($$UPDATE ledger.account SET balance = 100 WHERE id = test.v('merchant')$$),
          '23514 account_rules: only_customers_keep_a_running_balance: a merchant account has balance 100 and held 0',
          'a merchant account keeps no running balance in its row');
SELECT throws_ok($$UPDATE ledger.account SET held = 1 WHERE id = test.v('merchant')$$, '23514',
                 'new row for relation "account" violates check constraint "account_rules"',
                 'a merchant account holds nothing (the message names the constraint)');

-- ---------------------------------------------------------------- value domains
SELECT throws_ok($$UPDATE ledger.transaction SET amount = 0 WHERE id = test.v('p')$$, '23514',
                 'value for domain ledger.amount violates check constraint "positive"', 'an amount is more than 0');
SELECT throws_ok($$UPDATE ledger.transaction SET fee = -1 WHERE id = test.v('p')$$, '23514',
                 'value for domain ledger.cents violates check constraint "not_negative"', 'a fee is 0 or more');
SELECT throws_ok($$UPDATE ledger.account a SET held = -1 FROM ledger.transaction t WHERE t.id = test.v('p') AND a.id = t.account_id$$,
                 '23514', 'value for domain ledger.cents violates check constraint "not_negative"',
                 'a customer holds 0 or more');
SELECT throws_ok($$INSERT INTO ledger.item (transaction_id, line_no, product_id, name, quantity, unit_price, vat_rate, returnable)
                   VALUES (test.v('p'), 2, test.product(test.e(), 'Beer'), 'Beer', 0, 450, 19, false)$$,
                 '23514', 'value for domain ledger.quantity violates check constraint "positive"', 'a quantity is more than 0');

-- ---------------------------------------------------------------- the owner is bound too; nothing changed; the api path passes
GRANT SELECT ON test.ctx TO festpay_owner;
SET ROLE festpay_owner;
SELECT is(pg_temp.refusal($$UPDATE ledger.transaction SET state = 'Aborted' WHERE id = test.v('p')$$),
          '23514 transaction_rules: held_only_while_reserved: a transaction in state Aborted holds 450',
          'festpay_owner: the same rules');
RESET ROLE;
SELECT is(pg_temp.rows(), (SELECT r FROM before), 'every refusal left the rows as they were');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.v('bar'), jsonb_build_array(jsonb_build_object(
                      'terminal_tx_number', 1, 'state', 'Committed', 'uid', 'C0DE0001', 'amount', 450)))$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'the api commits the purchase through the same rules');
SELECT is_empty('SELECT * FROM api.check_invariants()', 'check_invariants() is empty');

SELECT * FROM finish();
ROLLBACK;
