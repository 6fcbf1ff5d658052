-- Roles and the callable surface: one login role per audience (terminal, relay, web, report), each may execute
-- exactly the api functions that the grant list (ledger.api_grants(), procedures/99_grants.sql) names for it and is
-- refused everything else; no audience role touches a table; PUBLIC may call nothing; every api function is a
-- documented SECURITY DEFINER function with a fixed search_path, owned by festpay_owner.
BEGIN;
SELECT plan(76);

-- ---------------------------------------------------------------- fixtures (as the superuser)
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP roles');
INSERT INTO test.ctx SELECT 'funded', test.funded_tag(test.e(), 'CAFE0001', 10000);
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'desk', test.terminal(test.e(), 'Top-up');
INSERT INTO test.ctx SELECT 'problems', count(*) FROM ledger.problem;
GRANT SELECT, INSERT ON test.ctx TO festpay_terminal, festpay_relay, festpay_web, festpay_report;

CREATE TEMP TABLE audience (role name PRIMARY KEY, audience text NOT NULL);
INSERT INTO audience VALUES ('festpay_terminal', 'terminal'), ('festpay_relay', 'relay'), ('festpay_web', 'web'),
                            ('festpay_report', 'report');
GRANT SELECT ON audience TO festpay_terminal, festpay_relay, festpay_web, festpay_report;
CREATE TEMP TABLE beer AS SELECT test.items(test.e(), 'Beer:1') AS items;     -- read here: the roles cannot
GRANT SELECT ON beer TO festpay_terminal;

-- Calls every api function as p_role, with NULL arguments, each in a subtransaction that is rolled back whatever
-- happens. Returns one row per function: whether the call was refused for lack of privilege (42501) or got through.
CREATE FUNCTION pg_temp.call_all_as(p_role name)
RETURNS TABLE (fn text, refused boolean) LANGUAGE plpgsql AS $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure::text AS sig, p.proname::text AS name,
                    (SELECT string_agg(format('NULL::%s', format_type(t, NULL)), ', ' ORDER BY n)
                       FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n)) AS args
               FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace ORDER BY 1 LOOP
        fn := f.sig;
        BEGIN
            EXECUTE format('SET LOCAL ROLE %I', p_role);
            EXECUTE format('SELECT api.%I(%s)', f.name, coalesce(f.args, ''));
            RAISE EXCEPTION USING ERRCODE = 'P0099', MESSAGE = 'ran; rolled back';
        EXCEPTION
            WHEN insufficient_privilege THEN refused := true;
            WHEN OTHERS THEN refused := false;       -- it ran (and failed on its NULL arguments, or was rolled back)
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------- the grant list covers the api exactly
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                   AND NOT EXISTS (SELECT FROM ledger.api_grants() g WHERE g.function_name = p.proname)$$,
                'every api function has a row in the grant list (ledger.api_grants)');
SELECT is_empty($$SELECT g.function_name FROM ledger.api_grants() g
                   WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND p.proname = g.function_name)$$,
                'every row of the grant list names an api function');
SELECT is_empty($$SELECT g.function_name, a FROM ledger.api_grants() g, unnest(g.audiences) a
                   WHERE a NOT IN (SELECT audience FROM audience)$$,
                'the grant list names only the four audiences');
SELECT is((SELECT count(*) FROM ledger.api_grants()), (SELECT count(DISTINCT function_name) FROM ledger.api_grants()),
          'the grant list has one row per function name');

-- ---------------------------------------------------------------- each role may execute exactly its rows ...
SELECT set_eq(format($$SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                        AND has_function_privilege(%L, p.oid, 'EXECUTE')$$, r.role),
              format($$SELECT p.oid::regprocedure::text FROM pg_proc p JOIN ledger.api_grants() g ON g.function_name = p.proname
                        WHERE p.pronamespace = 'api'::regnamespace AND %L = ANY (g.audiences)$$, r.audience),
              format('%s may execute exactly the api functions listed for %s', r.role, r.audience))
  FROM audience r ORDER BY r.role;

-- ---------------------------------------------------------------- ... and, calling every api function with SET ROLE, is refused all others
SELECT set_eq(format($$SELECT fn FROM pg_temp.call_all_as(%L) WHERE refused$$, r.role),
              format($$SELECT p.oid::regprocedure::text FROM pg_proc p LEFT JOIN ledger.api_grants() g ON g.function_name = p.proname
                        WHERE p.pronamespace = 'api'::regnamespace AND NOT (%L = ANY (coalesce(g.audiences, '{}')))$$, r.audience),
              format('as %s, every api function not listed for %s is refused (42501) and every listed one runs', r.role, r.audience))
  FROM audience r ORDER BY r.role;
SELECT is((SELECT count(*)::integer FROM pg_temp.call_all_as('festpay_terminal') WHERE NOT refused),
          (SELECT count(*)::integer FROM ledger.api_grants() WHERE 'terminal' = ANY (audiences)),
          'the walk reaches every function granted to the terminal role');
SELECT ok((SELECT count(*) FROM pg_temp.call_all_as('festpay_web') WHERE refused) >= 40,
          'the web role is refused the admin functions until they check a session');

-- A fresh role that may see the api schema still cannot call anything in it.
CREATE ROLE fp_pgtap_nobody NOLOGIN;
GRANT USAGE ON SCHEMA api TO fp_pgtap_nobody;
SELECT is_empty($$SELECT fn FROM pg_temp.call_all_as('fp_pgtap_nobody') WHERE NOT refused$$,
                'a fresh role (PUBLIC) is refused every api function');

-- ---------------------------------------------------------------- refusals named, one by one
SET ROLE festpay_terminal;
SELECT throws_ok($$SELECT api.create_event('x', 'EUR', 50000, 500, 25000)$$, '42501', NULL, 'terminal: api.create_event refused');
SELECT throws_ok($$SELECT * FROM api.payout(test.e(), 'CAFE0001')$$, '42501', NULL, 'terminal: api.payout refused');
SELECT throws_ok($$SELECT * FROM api.transfer(test.e(), 'CAFE0001', 'CAFE0002', 100)$$, '42501', NULL, 'terminal: api.transfer refused');
SELECT throws_ok($$SELECT * FROM api.resolve_transaction(1, 'Aborted', 'x')$$, '42501', NULL, 'terminal: api.resolve_transaction refused');
SELECT throws_ok($$SELECT api.set_seller(test.e(), 'x', 'y', '1', 'z')$$, '42501', NULL, 'terminal: api.set_seller refused');
SELECT throws_ok($$SELECT api.tse_store(1, '{}')$$, '42501', NULL, 'terminal: api.tse_store refused');
SELECT throws_ok($$SELECT * FROM api.close_cashpoint(test.e())$$, '42501', NULL, 'terminal: api.close_cashpoint refused');
SELECT throws_ok($$SELECT api.receipt(1)$$, '42501', NULL, 'terminal: api.receipt of any transaction refused (api.terminal_receipt reads its own)');
SELECT throws_ok($$SELECT * FROM api.outbox_claim('tse')$$, '42501', NULL, 'terminal: api.outbox_claim refused');
SELECT throws_ok($$SELECT api.expire_reservations()$$, '42501', NULL, 'terminal: api.expire_reservations refused');
RESET ROLE;
SET ROLE festpay_relay;
SELECT throws_ok($$SELECT * FROM api.reserve(test.bar(), 1, 'CAFE0001', 1, 450, '[]')$$, '42501', NULL, 'relay: api.reserve refused');
SELECT throws_ok($$SELECT * FROM api.topup(test.v('desk'), 1, 'CAFE0001', 1000, 'cash')$$, '42501', NULL, 'relay: api.topup refused');
SELECT throws_ok($$SELECT * FROM api.payout(test.e(), 'CAFE0001')$$, '42501', NULL, 'relay: api.payout refused');
SELECT throws_ok($$SELECT api.create_registration_code(test.e(), 'Bar')$$, '42501', NULL, 'relay: api.create_registration_code refused');
SELECT lives_ok($$SELECT api.expire_reservations()$$, 'relay: api.expire_reservations allowed');
SELECT lives_ok($$SELECT * FROM api.outbox_lag('tse')$$, 'relay: api.outbox_lag allowed');
RESET ROLE;
SET ROLE festpay_web;
SELECT throws_ok($$SELECT api.create_event('x', 'EUR', 50000, 500, 25000)$$, '42501', NULL, 'web: api.create_event refused');
SELECT throws_ok($$SELECT * FROM api.reserve(test.bar(), 1, 'CAFE0001', 1, 450, '[]')$$, '42501', NULL, 'web: api.reserve refused');
SELECT throws_ok($$SELECT * FROM api.customer_statement(test.e(), 'CAFE0001')$$, '42501', NULL, 'web: api.customer_statement refused');
RESET ROLE;
SET ROLE festpay_report;
SELECT throws_ok($$SELECT * FROM api.reserve(test.bar(), 1, 'CAFE0001', 1, 450, '[]')$$, '42501', NULL, 'report: api.reserve refused');
SELECT throws_ok($$SELECT * FROM api.replicate(test.bar(), '[]')$$, '42501', NULL, 'report: api.replicate refused');
SELECT throws_ok($$SELECT * FROM api.resolve_transaction(1, 'Aborted', 'x')$$, '42501', NULL, 'report: api.resolve_transaction refused');
SELECT throws_ok($$SELECT api.create_event('x', 'EUR', 50000, 500, 25000)$$, '42501', NULL, 'report: api.create_event refused');
RESET ROLE;

-- ---------------------------------------------------------------- no audience role touches a table
SET ROLE festpay_terminal;
SELECT throws_ok($$SELECT * FROM ledger.account$$, '42501', NULL, 'terminal: SELECT on ledger.account refused');
SELECT throws_ok($$INSERT INTO ledger.booking (transaction_id, line_no, debit_account_id, credit_account_id, amount) VALUES (1, 1, 1, 2, 100)$$,
                 '42501', NULL, 'terminal: INSERT into ledger.booking refused');
SELECT throws_ok($$UPDATE ledger.account SET balance = balance + 100000$$, '42501', NULL, 'terminal: UPDATE of ledger.account refused');
SELECT throws_ok($$DELETE FROM ledger.violation$$, '42501', NULL, 'terminal: DELETE from ledger.violation refused');
SELECT throws_ok($$SELECT * FROM report.account_balance$$, '42501', NULL, 'terminal: report.account_balance refused');
SELECT throws_ok($$SELECT ledger.book(1, true)$$, '42501', NULL, 'terminal: the booking engine ledger.book is not callable directly');
SELECT throws_ok($$SELECT ledger.set_state(1, 'Committed', 'me')$$, '42501', NULL, 'terminal: ledger.set_state is not callable directly');
RESET ROLE;
SET ROLE festpay_relay;
SELECT throws_ok($$UPDATE ledger.outbox SET done_at = now()$$, '42501', NULL, 'relay: UPDATE of ledger.outbox refused');
SELECT throws_ok($$SELECT * FROM ledger.transaction$$, '42501', NULL, 'relay: SELECT on ledger.transaction refused');
RESET ROLE;
SELECT is_empty($$SELECT c.oid::regclass, r.role, p FROM pg_class c, audience r,
                          unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
                   WHERE c.relnamespace = 'ledger'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                     AND (has_table_privilege(r.role, c.oid, p) OR has_table_privilege('public', c.oid, p))$$,
                'no ledger table, view or sequence grants anything to an audience role or PUBLIC');
SELECT is_empty($$SELECT r.role FROM audience r WHERE has_schema_privilege(r.role, 'ledger', 'USAGE')$$,
                'no audience role has USAGE on schema ledger');
SELECT ok(NOT has_schema_privilege('public', 'ledger', 'USAGE'), 'PUBLIC has no USAGE on schema ledger');
SELECT is_empty($$SELECT r.role FROM audience r WHERE r.role <> 'festpay_report' AND has_schema_privilege(r.role, 'report', 'USAGE')$$,
                'only festpay_report has USAGE on schema report');
-- ledger.holds, the one list of states that hold money, filters report.open_reservation: its readers call it.
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p, audience r WHERE p.pronamespace = 'ledger'::regnamespace
                   AND has_function_privilege(r.role, p.oid, 'EXECUTE')
                   AND NOT (p.oid = 'ledger.holds(ledger.tx_state)'::regprocedure AND r.role = 'festpay_report')$$,
                'no ledger function is executable by an audience role (but ledger.holds by festpay_report)');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace IN ('api'::regnamespace, 'ledger'::regnamespace)
                   AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
                'PUBLIC has no EXECUTE on any api or ledger function');
SELECT ok((SELECT bool_and(rolcanlogin AND NOT rolsuper AND NOT rolcreaterole AND NOT rolcreatedb AND NOT rolbypassrls)
             FROM pg_roles WHERE rolname IN (SELECT role FROM audience)),
          'the four audience roles can log in and are nothing more');
SELECT is_empty($$SELECT r.role, m.roleid::regrole FROM audience r JOIN pg_auth_members m ON m.member = r.role::regrole$$,
                'no audience role is a member of another role (festpay_owner least of all)');

-- ---------------------------------------------------------------- the terminal role does a terminal's work
SET ROLE festpay_terminal;
SELECT is((SELECT count(*)::integer FROM api.problem_types()), test.v('problems')::integer,
          'terminal: api.problem_types() lists every named problem');
SELECT results_eq($$SELECT state, balance FROM api.topup(test.v('desk'), 1, 'CAFE0002', 2000, 'cash')$$,
                  $$VALUES ('Committed'::text, 2000::bigint)$$, 'terminal: a cash top-up');
SELECT results_eq($$SELECT state, available FROM api.reserve(test.bar(), 1, 'CAFE0002', 1, 450, (SELECT items FROM beer))$$,
                  $$VALUES ('ReservePending'::text, 1550::bigint)$$, 'terminal: a reserve');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(jsonb_build_object(
                        'terminal_tx_number', 1, 'type', 'purchase', 'state', 'Committed', 'uid', 'CAFE0002', 'tag_tx_number', 1,
                        'amount', 450, 'items', (SELECT items FROM beer))))$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'terminal: the replication books it');
SELECT is((api.terminal_receipt(test.bar(), 1) -> 'total')::bigint, 450::bigint, 'terminal: api.terminal_receipt prints its own receipt');
SELECT throws_ok($$SELECT api.terminal_receipt(test.v('desk'), 7)$$, 'FP010', NULL,
                 'terminal: api.terminal_receipt of a number it never used is not-found');
RESET ROLE;
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after the terminal role''s bookings');

-- ---------------------------------------------------------------- festpay_report: report views only
SET ROLE festpay_report;
SELECT results_eq($$SELECT balance::bigint, held FROM report.account_balance WHERE event_id = test.e() AND kind = 'customer' AND name = 'CAFE0001'$$,
                  $$VALUES (10000::bigint, 0::bigint)$$, 'report: report.account_balance readable');
SELECT results_eq($$SELECT name FROM report.event WHERE event_id = test.e()$$, $$VALUES ('pgTAP roles'::text)$$,
                  'report: report.event names the events');
SELECT lives_ok($$SELECT * FROM report.violation$$, 'report: report.violation readable');
SELECT throws_ok($$SELECT * FROM ledger.event$$, '42501', NULL, 'report: ledger.event refused');
SELECT throws_ok($$DELETE FROM report.violation$$, '42501', NULL, 'report: DELETE through report.violation refused');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'report: api.check_invariants allowed (and healthy)');
SELECT results_eq($$SELECT type, amount, balance_after FROM api.customer_statement(test.e(), 'CAFE0001')$$,
                  $$VALUES ('topup'::text, 10000::bigint, 10000::bigint)$$, 'report: api.customer_statement allowed');
RESET ROLE;
SELECT is_empty($$SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'report'::regnamespace AND c.relkind = 'v'
                   AND NOT (has_table_privilege('festpay_report', c.oid, 'SELECT')
                            AND NOT has_table_privilege('festpay_report', c.oid, 'INSERT')
                            AND NOT has_table_privilege('festpay_report', c.oid, 'UPDATE')
                            AND NOT has_table_privilege('festpay_report', c.oid, 'DELETE'))$$,
                'every report view is readable, and only readable, by festpay_report');

-- ---------------------------------------------------------------- how api functions are defined
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND NOT p.prosecdef$$,
                'every api function is SECURITY DEFINER');
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
SELECT ok(CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = 'festpay_gateway')
               THEN NOT has_schema_privilege('festpay_gateway', 'api', 'USAGE') ELSE true END,
          'the old all-powerful festpay_gateway role is gone, or can do nothing here');

SELECT * FROM finish();
ROLLBACK;
