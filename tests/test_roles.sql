-- Roles and the callable surface: the gateway may only execute api functions, the report role may only read the
-- report views and call the read-only api functions, PUBLIC may call nothing; every api function is a documented
-- SECURITY DEFINER function with a fixed search_path, owned by festpay_owner.
BEGIN;
SELECT plan(64);

-- ---------------------------------------------------------------- fixtures (as the superuser)
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP roles');
INSERT INTO test.ctx SELECT 'funded', test.funded_tag(test.e(), 'CAFE0001', 10000);
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
GRANT SELECT, INSERT ON test.ctx TO festpay_gateway, festpay_report;

-- ---------------------------------------------------------------- festpay_gateway: no table access at all
SET ROLE festpay_gateway;
SELECT throws_ok($$SELECT * FROM ledger.account$$, '42501', NULL, 'gateway: SELECT on ledger.account refused');
SELECT throws_ok($$SELECT count(*) FROM ledger.booking$$, '42501', NULL, 'gateway: SELECT on ledger.booking refused');
SELECT throws_ok($$INSERT INTO ledger.booking (transaction_id, line_no, debit_account_id, credit_account_id, amount) VALUES (1, 1, 1, 2, 100)$$,
                 '42501', NULL, 'gateway: INSERT into ledger.booking refused');
SELECT throws_ok($$INSERT INTO ledger.event (name, currency, time_zone, max_balance, min_topup, max_topup, tag_key)
                   VALUES ('x', 'EUR', 'UTC', 1, 1, 1, '\x00')$$, '42501', NULL, 'gateway: INSERT into ledger.event refused');
SELECT throws_ok($$UPDATE ledger.account SET balance = balance + 100000$$, '42501', NULL, 'gateway: UPDATE of ledger.account refused');
SELECT throws_ok($$UPDATE ledger.transaction SET state = 'Committed'$$, '42501', NULL, 'gateway: UPDATE of ledger.transaction refused');
SELECT throws_ok($$DELETE FROM ledger.violation$$, '42501', NULL, 'gateway: DELETE from ledger.violation refused');
SELECT throws_ok($$DELETE FROM ledger.tag$$, '42501', NULL, 'gateway: DELETE from ledger.tag refused');
SELECT throws_ok($$SELECT * FROM report.account_balance$$, '42501', NULL, 'gateway: report.account_balance refused');
SELECT throws_ok($$SELECT * FROM report.violation$$, '42501', NULL, 'gateway: report.violation refused');
SELECT throws_ok($$SELECT ledger.book(1, true)$$, '42501', NULL, 'gateway: the booking engine ledger.book is not callable directly');
SELECT throws_ok($$SELECT ledger.set_state(1, 'Committed', 'me')$$, '42501', NULL, 'gateway: ledger.set_state is not callable directly');

-- ---------------------------------------------------------------- festpay_gateway: the api works
SELECT is((SELECT count(*)::integer FROM api.problem_types()), 16, 'gateway: api.problem_types() lists the 16 problems');
INSERT INTO test.ctx SELECT 'gw_event', api.create_event('pgTAP roles, made by the gateway', 'EUR', 50000, 500, 25000, p_topup_fee_card => 50);
SELECT isnt(test.v('gw_event'), NULL, 'gateway: api.create_event works');
INSERT INTO test.ctx SELECT 'gw_merchant', api.create_merchant(test.v('gw_event'), 'Stage bar');
INSERT INTO test.ctx SELECT 'gw_sale', api.create_position(test.v('gw_event'), 'Stage bar', 'sale', test.v('gw_merchant'));
INSERT INTO test.ctx SELECT 'gw_topup', api.create_position(test.v('gw_event'), 'Cashier', 'topup');
INSERT INTO test.ctx SELECT 'gw_beer', api.create_product(test.v('gw_event'), 'Beer', 500, 19);
INSERT INTO test.ctx SELECT 'gw_bar', assignment_id
  FROM api.register_terminal(api.create_registration_code(test.v('gw_event'), 'Stage bar'), 'pgTAP bar');
INSERT INTO test.ctx SELECT 'gw_cashier', assignment_id
  FROM api.register_terminal(api.create_registration_code(test.v('gw_event'), 'Cashier'), 'pgTAP cashier');
SELECT is((SELECT count(*)::integer FROM test.ctx WHERE k LIKE 'gw\_%' AND v IS NOT NULL), 7,
          'gateway: merchant, positions, product and two terminal registrations made through the api');
SELECT results_eq($$SELECT state, balance FROM api.topup(test.v('gw_cashier'), 1, 'CAFE0002', 2000, 'card')$$,
                  $$VALUES ('Committed'::text, 1950::bigint)$$, 'gateway: a card top-up of 2000 less the fee of 50');
SELECT results_eq($$SELECT state, available FROM api.reserve(test.v('gw_bar'), 1, 'CAFE0002', 1, 500,
                        jsonb_build_array(jsonb_build_object('product_id', test.v('gw_beer'), 'quantity', 1)))$$,
                  $$VALUES ('ReservePending'::text, 1450::bigint)$$, 'gateway: a reserve');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.v('gw_bar'), jsonb_build_array(jsonb_build_object(
                        'terminal_tx_number', 1, 'state', 'Committed', 'uid', 'CAFE0002', 'tag_tx_number', 1, 'amount', 500,
                        'items', jsonb_build_array(jsonb_build_object('product_id', test.v('gw_beer'), 'quantity', 1)))))$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'gateway: the replication books it');
SELECT results_eq($$SELECT amount, balance_after FROM api.customer_statement(test.v('gw_event'), 'CAFE0002')$$,
                  $$VALUES (2000::bigint, 2000::bigint), (-50, 1950), (-500, 1450)$$,
                  'gateway: the customer statement shows top-up, fee and purchase');
SELECT is(api.block_tag(test.v('gw_event'), 'CAFE0002'), 'blocked', 'gateway: api.block_tag works');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'gateway: invariants hold after its bookings');
RESET ROLE;

-- ---------------------------------------------------------------- festpay_report: report views only
SET ROLE festpay_report;
SELECT results_eq($$SELECT balance::bigint, held FROM report.account_balance WHERE event_id = test.e() AND kind = 'customer' AND name = 'CAFE0001'$$,
                  $$VALUES (10000::bigint, 0::bigint)$$, 'report: report.account_balance readable');
SELECT results_eq($$SELECT accounts, balance FROM report.balance_by_kind WHERE event_id = test.e() AND kind = 'customer'$$,
                  $$VALUES (1::bigint, 10000::bigint)$$, 'report: report.balance_by_kind readable');
SELECT results_eq($$SELECT debit_balances, credit_balances, total FROM report.trial_balance WHERE event_id = test.e()$$,
                  $$VALUES (10000::bigint, -10000::bigint, 0::bigint)$$, 'report: report.trial_balance readable');
SELECT lives_ok($$SELECT * FROM report.open_reservation$$, 'report: report.open_reservation readable');
SELECT lives_ok($$SELECT * FROM report.violation$$, 'report: report.violation readable');
SELECT lives_ok($$SELECT * FROM report.tag_number_duplicate$$, 'report: report.tag_number_duplicate readable');
SELECT lives_ok($$SELECT * FROM report.overdraft$$, 'report: report.overdraft readable');
SELECT throws_ok($$SELECT * FROM ledger.account$$, '42501', NULL, 'report: ledger.account refused');
SELECT throws_ok($$SELECT * FROM ledger.transaction$$, '42501', NULL, 'report: ledger.transaction refused');
SELECT throws_ok($$UPDATE ledger.account SET held = 0$$, '42501', NULL, 'report: UPDATE of ledger.account refused');
SELECT throws_ok($$DELETE FROM report.violation$$, '42501', NULL, 'report: DELETE through report.violation refused');
SELECT throws_ok($$SELECT * FROM api.reserve(test.v('bar'), 1, 'CAFE0001', 1, 450, '[]')$$, '42501', NULL, 'report: api.reserve refused');
SELECT throws_ok($$SELECT * FROM api.replicate(test.v('bar'), '[]')$$, '42501', NULL, 'report: api.replicate refused');
SELECT throws_ok($$SELECT * FROM api.resolve_transaction(1, 'Aborted', 'x')$$, '42501', NULL, 'report: api.resolve_transaction refused');
SELECT throws_ok($$SELECT api.create_event('x', 'EUR', 50000, 500, 25000)$$, '42501', NULL, 'report: api.create_event refused');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'report: api.check_invariants allowed (and healthy)');
SELECT results_eq($$SELECT type, amount, balance_after FROM api.customer_statement(test.e(), 'CAFE0001')$$,
                  $$VALUES ('topup'::text, 10000::bigint, 10000::bigint)$$, 'report: api.customer_statement allowed');
SELECT is((SELECT count(*)::integer FROM api.problem_types()), 16, 'report: api.problem_types allowed');
RESET ROLE;

-- ---------------------------------------------------------------- privileges in the catalog
SELECT is_empty($$SELECT c.oid::regclass, p FROM pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
                   WHERE c.relnamespace = 'ledger'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                     AND (has_table_privilege('festpay_gateway', c.oid, p) OR has_table_privilege('festpay_report', c.oid, p)
                          OR has_table_privilege('public', c.oid, p))$$,
                'no ledger table, view or sequence grants anything to the gateway, report or PUBLIC');
SELECT ok(NOT has_schema_privilege('festpay_gateway', 'ledger', 'USAGE') AND NOT has_schema_privilege('festpay_report', 'ledger', 'USAGE')
          AND NOT has_schema_privilege('public', 'ledger', 'USAGE'), 'no USAGE on schema ledger for gateway, report or PUBLIC');
SELECT ok(NOT has_schema_privilege('festpay_gateway', 'report', 'USAGE'), 'the gateway has no USAGE on schema report');
SELECT table_privs_are('report', 'account_balance', 'festpay_report', ARRAY['SELECT'], 'report: only SELECT on report.account_balance');
SELECT table_privs_are('report', 'violation', 'festpay_report', ARRAY['SELECT'], 'report: only SELECT on report.violation');
SELECT table_privs_are('report', 'overdraft', 'festpay_gateway', ARRAY[]::text[], 'gateway: nothing on report.overdraft');
SELECT is_empty($$SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'report'::regnamespace AND c.relkind = 'v'
                   AND NOT (has_table_privilege('festpay_report', c.oid, 'SELECT')
                            AND NOT has_table_privilege('festpay_report', c.oid, 'INSERT')
                            AND NOT has_table_privilege('festpay_report', c.oid, 'UPDATE')
                            AND NOT has_table_privilege('festpay_report', c.oid, 'DELETE'))$$,
                'every report view is readable, and only readable, by festpay_report');
SELECT function_privs_are('api', 'reserve', ARRAY['bigint', 'bigint', 'text', 'integer', 'bigint', 'jsonb'], 'festpay_gateway',
                          ARRAY['EXECUTE'], 'gateway may execute api.reserve');
SELECT function_privs_are('api', 'reserve', ARRAY['bigint', 'bigint', 'text', 'integer', 'bigint', 'jsonb'], 'festpay_report',
                          ARRAY[]::text[], 'report may not execute api.reserve');
SELECT function_privs_are('api', 'check_invariants', ARRAY[]::text[], 'festpay_report', ARRAY['EXECUTE'],
                          'report may execute api.check_invariants');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                   AND NOT has_function_privilege('festpay_gateway', p.oid, 'EXECUTE')$$,
                'the gateway may execute every api function');
SELECT set_eq($$SELECT p.proname::text FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                 AND has_function_privilege('festpay_report', p.oid, 'EXECUTE')$$,
              ARRAY['check_invariants', 'customer_statement', 'problem_types'],
              'festpay_report may execute exactly check_invariants, customer_statement and problem_types');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'ledger'::regnamespace
                   AND (has_function_privilege('festpay_gateway', p.oid, 'EXECUTE') OR has_function_privilege('festpay_report', p.oid, 'EXECUTE'))$$,
                'no ledger function is executable by the gateway or report roles');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace IN ('api'::regnamespace, 'ledger'::regnamespace)
                   AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
                'PUBLIC has no EXECUTE on any api or ledger function');

-- A fresh role that may see the api schema still cannot call anything in it.
CREATE ROLE fp_pgtap_nobody NOLOGIN;
GRANT USAGE ON SCHEMA api TO fp_pgtap_nobody;
SET ROLE fp_pgtap_nobody;
SELECT throws_ok($$SELECT * FROM api.problem_types()$$, '42501', NULL, 'a fresh role cannot execute api.problem_types');
SELECT throws_ok($$SELECT * FROM api.check_invariants()$$, '42501', NULL, 'a fresh role cannot execute api.check_invariants');
SELECT throws_ok($$SELECT api.create_event('x', 'EUR', 50000, 500, 25000)$$, '42501', NULL, 'a fresh role cannot execute api.create_event');
RESET ROLE;

-- ---------------------------------------------------------------- how api functions are defined
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND NOT p.prosecdef$$,
                'every api function is SECURITY DEFINER');
SELECT is_empty($$SELECT p.oid::regprocedure, p.proconfig FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c
                                    WHERE c ~ '^search_path=' AND c ~ ',\s*pg_temp$' AND c !~ '(public|\$user)')$$,
                'every api function fixes its search_path (no public, no $user, pg_temp last)');
SELECT is_empty($$SELECT p.oid::regprocedure, p.proconfig FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                   AND NOT 'search_path=ledger, pg_temp' = ANY (p.proconfig)$$,
                'every api function uses search_path = ledger, pg_temp');
SELECT is_empty($$SELECT p.oid::regprocedure, p.proowner::regrole FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                   AND p.proowner <> 'festpay_owner'::regrole$$,
                'every api function is owned by festpay_owner (so SECURITY DEFINER runs as it)');
SELECT ok(NOT (SELECT rolsuper OR rolbypassrls OR rolcanlogin FROM pg_roles WHERE rolname = 'festpay_owner'),
          'festpay_owner is not a superuser, does not bypass RLS and cannot log in');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                   AND coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''$$,
                'every api function has a COMMENT');
SELECT isnt(obj_description('api.set_tag_blocked(bigint, text, boolean)'::regprocedure, 'pg_proc'), NULL,
            'api.set_tag_blocked has a COMMENT');
SELECT ok((SELECT count(*) FROM pg_proc WHERE pronamespace = 'api'::regnamespace) >= 31, 'the api has at least its 31 functions');

SELECT * FROM finish();
ROLLBACK;
