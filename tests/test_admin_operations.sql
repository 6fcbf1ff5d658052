-- The admin site's operations (procedures/72_admin_operations.sql): customers (search, statement, block, move to a new
-- tag, chargeback never above what is left), transactions (filters, keyset pages, detail), the resolution queue
-- (decided with an outcome and a reason), reports on a known small data set (VAT per rate as the receipts have it,
-- a trial balance that sums to 0), fiscal status, closing a till and the dashboard. Every function refuses the roles
-- without its privilege with admin-forbidden and a missing session with admin-unauthenticated, changing nothing;
-- every change leaves one audit row.
BEGIN;
SELECT plan(140);

-- ---------------------------------------------------------------- helpers
-- Runs p_sql as festpay_web with the token of p_role, keeping what it does. Returns its one value as text.
CREATE FUNCTION pg_temp.web(p_sql text, p_role text DEFAULT 'admin') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_sql text := format(p_sql, quote_literal(test.admin_token(p_role)));
    v text;
BEGIN
    SET LOCAL ROLE festpay_web;
    EXECUTE v_sql INTO v;
    RESET ROLE;
    RETURN v;
END $$;
-- Everything the operations change, as one digest: the event's transactions, lines, accounts, tags, overdraft and
-- violation reviews, closings and the audit log.
CREATE FUNCTION pg_temp.footprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(format('%s %s %s %s', id, state, held, committed_at), ',' ORDER BY id) FROM ledger.transaction WHERE event_id = test.e()),
        (SELECT count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id WHERE t.event_id = test.e()),
        (SELECT string_agg(format('%s %s %s', id, balance, held), ',' ORDER BY id) FROM ledger.account WHERE event_id = test.e()),
        (SELECT string_agg(format('%s %s', uid, status), ',' ORDER BY id) FROM ledger.tag WHERE event_id = test.e()),
        (SELECT string_agg(format('%s %s', transaction_id, reviewed_at), ',') FROM ledger.overdraft),
        (SELECT count(*) FROM ledger.violation_review),
        (SELECT count(*) FROM ledger.cashpoint_closing WHERE event_id = test.e()),
        (SELECT count(*) || ' ' || max(id) FROM ledger.admin_audit))) $$;
-- Books an offline sale (or an unknown outcome) replicated at the suite's Bar terminal; returns the transaction id.
CREATE FUNCTION pg_temp.sale(p_number integer, p_uid text, p_amount bigint, p_state text, VARIADIC p_items text[])
RETURNS bigint LANGUAGE sql AS $$
    SELECT transaction_id FROM api.replicate(test.bar(), jsonb_build_array(
        test.entry(p_number, p_state, p_uid, p_number, p_amount, VARIADIC p_items))) $$;
-- Funds a new tag EE00EE02 with 450,00 and moves A's balance (88,85) to it: over the maximum balance of 500,00.
CREATE FUNCTION pg_temp.move_to_a_full_tag() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM test.funded_tag(test.e(), 'EE00EE02', 25000);
    PERFORM test.funded_tag(test.e(), 'EE00EE02', 20000);
    RETURN api.admin_customer_move(test.admin_token('support'), 'AA00AA01', 'EE00EE02', 'to a full tag');
END $$;
-- One report: its rows.
CREATE FUNCTION pg_temp.report(p_name text, p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT rows FROM api.admin_report(test.admin_token('viewer'), p_name, p_from, p_to) $$;

-- ---------------------------------------------------------------- fixtures
-- Tags: A AA00AA01 (10000, two sales, an unknown outcome), B BB00BB01 (3000, moved to D DD00DD01), C1/C2 CC00CC01/02
-- (1000 each, for the role checks), E EE00EE01 (500, an offline sale of 1350 overdraws it).
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP admin operations');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-05T21:30:00+02:00"}');
INSERT INTO test.ctx SELECT p, api.create_product(test.e(), p, 105, 19) FROM unnest(ARRAY['Snack A', 'Snack B', 'Snack C']) p;
INSERT INTO test.ctx SELECT 'funded ' || u, test.funded_tag(test.e(), u, a)
  FROM (VALUES ('AA00AA01', 10000), ('BB00BB01', 3000), ('CC00CC01', 1000), ('CC00CC02', 1000), ('EE00EE01', 500)) x(u, a);
-- Sale 1: three different items of 1,05 at 19 % (tax 0,50 rounded once per rate; 0,51 if rounded per line).
INSERT INTO test.ctx SELECT 's1', pg_temp.sale(1, 'AA00AA01', 315, 'Committed', 'Snack A:1', 'Snack B:1', 'Snack C:1');
-- Sale 2: a Beer (4,50 at 19 %) and a Pretzel (3,50 at 7 %).
INSERT INTO test.ctx SELECT 's2', pg_temp.sale(2, 'AA00AA01', 800, 'Committed', 'Beer:1', 'Pretzel:1');
-- An unknown outcome (TerminalConfirmUnknown) of a Beer.
INSERT INTO test.ctx SELECT 'tcu', pg_temp.sale(3, 'AA00AA01', 450, 'TerminalConfirmUnknown', 'Beer:1');
-- An offline sale that overdraws E (flagged), and one of an unknown tag (implausible: refused, logged).
INSERT INTO test.ctx SELECT 'over', pg_temp.sale(4, 'EE00EE01', 1350, 'Committed', 'Beer:3');
INSERT INTO test.ctx SELECT 'implausible', pg_temp.sale(5, 'FF00FF01', 450, 'Committed', 'Beer:1');
-- A tag log entry without its MAC: refused by the tag sync, logged.
INSERT INTO test.res SELECT 'sync', refused
  FROM api.tag_sync(test.bar(), 'EE00EE01', 9, 0, jsonb_build_array(test.logentry('EE00EE01', 9, 8, 450) - 'mac'));
INSERT INTO test.ctx SELECT 'user ' || role, user_id FROM test.admin_sessions('pgtap-ops-');

-- ---------------------------------------------------------------- who may call what
CREATE TEMP TABLE call (fn text PRIMARY KEY, privilege text NOT NULL, sql text NOT NULL);
INSERT INTO call VALUES
    ('admin_customers',       'view',    $$SELECT count(*) FROM api.admin_customers(%1$s, 'aa00')$$),
    ('admin_customer',        'view',    $$SELECT api.admin_customer(%1$s, 'AA00AA01')$$),
    ('admin_transactions',    'view',    $$SELECT count(*) FROM api.admin_transactions(%1$s, '{"state": "Committed"}')$$),
    ('admin_transaction',     'view',    format($$SELECT api.admin_transaction(%%1$s, %s)$$, test.v('s1'))),
    ('admin_receipt',         'view',    format($$SELECT api.admin_receipt(%%1$s, %s)$$, test.v('s1'))),
    ('admin_queue',           'view',    $$SELECT count(*) FROM api.admin_queue(%1$s)$$),
    ('admin_report',          'view',    $$SELECT count(*) FROM api.admin_report(%1$s, 'vat', NULL, NULL)$$),
    ('admin_fiscal',          'view',    $$SELECT api.admin_fiscal(%1$s)$$),
    ('admin_dashboard',       'view',    $$SELECT api.admin_dashboard(%1$s)$$),
    ('admin_customer_block',  'support', $$SELECT api.admin_customer_block(%1$s, 'CC00CC01', true, 'lost')$$),
    ('admin_customer_move',   'support', $$SELECT api.admin_customer_move(%1$s, 'CC00CC02', 'CC00CC03', 'lost wristband')$$),
    ('admin_chargeback',      'support', format($$SELECT api.admin_chargeback(%%1$s, %s, 100, 'cold beer')$$, test.v('s2'))),
    ('admin_queue_resolve',   'support', format($$SELECT api.admin_queue_resolve(%%1$s, %s, 'Aborted', 'not charged')$$, test.v('tcu'))),
    ('admin_close_cashpoint', 'finance', format($$SELECT api.admin_close_cashpoint(%%1$s, %s)$$, test.bar()));

SELECT is_empty($$SELECT c.fn FROM call c
                   WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND p.proname = c.fn
                                        AND p.prosrc ~ 'ledger.admin_authorize\(p_token, ')$$,
                'every function of the list is an api function that checks its token first');
INSERT INTO test.res SELECT 'fp0', to_jsonb(pg_temp.footprint());

SELECT results_eq(format($$SELECT r.role, test.as_web(%L, r.role) FROM unnest(ARRAY['admin', 'finance', 'support', 'viewer']) r(role) ORDER BY 1$$, c.sql),
                  format($$SELECT r.role, CASE WHEN EXISTS (SELECT FROM ledger.admin_role_privilege p WHERE p.role = r.role AND p.privilege = %L)
                                               THEN 'ok' ELSE 'FP071' END
                            FROM unnest(ARRAY['admin', 'finance', 'support', 'viewer']) r(role) ORDER BY 1$$, c.privilege),
                  format('api.%s: runs for the roles with privilege %s, admin-forbidden (FP071) for the others', c.fn, c.privilege))
  FROM call c ORDER BY c.fn;
SELECT is_empty($$SELECT c.fn, test.as_web(c.sql, 'nobody') FROM call c WHERE test.as_web(c.sql, 'nobody') <> 'FP070'$$,
                'every operations function refuses a token of no session with admin-unauthenticated (FP070)');
SELECT is_empty($$SELECT c.fn, x FROM call c, LATERAL (SELECT test.as_web(replace(c.sql, '%1$s', 'NULL'), 'admin')) y(x) WHERE x <> 'FP070'$$,
                'every operations function refuses a NULL token with admin-unauthenticated (FP070)');
-- A refused call changes nothing: as the viewer, every support and finance function, kept (not undone) if it ran.
CREATE FUNCTION pg_temp.refused_calls_keep_nothing() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_states text := '';
BEGIN
    FOR c IN SELECT * FROM call WHERE privilege <> 'view' ORDER BY fn LOOP
        BEGIN
            PERFORM pg_temp.web(c.sql, 'viewer');
            v_states := v_states || c.fn || ' ran; ';
        EXCEPTION WHEN OTHERS THEN
            v_states := v_states || c.fn || ' ' || SQLSTATE || '; ';
        END;
    END LOOP;
    RETURN v_states;
END $$;
SELECT is(pg_temp.refused_calls_keep_nothing(),
          'admin_chargeback FP071; admin_close_cashpoint FP071; admin_customer_block FP071; admin_customer_move FP071; admin_queue_resolve FP071; ',
          'as the viewer every change is refused (FP071) ...');
SELECT is(pg_temp.footprint(), (SELECT j #>> '{}' FROM test.res WHERE k = 'fp0'),
          '... and the ledger and the audit log are as before all the calls of this section');

-- ---------------------------------------------------------------- reports on the known data set
-- Receipts: top-ups 10000 + 3000 + 1000 + 1000 + 500 in cash (vouchers, 0 %); sale 1 315 at 19 %; sale 2 450 at 19 %
-- and 350 at 7 %; sale 4 1350 at 19 %. VAT per receipt and rate: 315 -> 50, 450 -> 72, 350 -> 23, 1350 -> 216.
SELECT is(pg_temp.report('vat'),
          '[[19.00, 1, 2115, 1777, 338], [7.00, 2, 350, 327, 23], [0, 5, 15500, 15500, 0]]'::jsonb,
          'vat: 19 % gross 21,15 net 17,77 tax 3,38 (0,50 + 0,72 + 2,16: each receipt rounds once per rate); 7 % 3,50 / 3,27 / 0,23; vouchers 155,00 at 0 %');
SELECT is(pg_temp.report('vat'),
          (SELECT jsonb_agg(jsonb_build_array(s.vat_rate, s.vat_key, s.gross, s.net, s.tax) ORDER BY s.vat_rate DESC)
             FROM (SELECT v.vat_rate, v.vat_key, sum(v.gross)::bigint AS gross, sum(v.net)::bigint AS net, sum(v.tax)::bigint AS tax
                     FROM ledger.transaction t, ledger.receipt_vat(t.id) v
                    WHERE t.event_id = test.e() AND t.state = 'Committed' AND t.type <> 'transfer'
                    GROUP BY 1, 2) s),
          'vat: the sum of every receipt''s own VAT (ledger.receipt_vat), to the cent');
SELECT is((SELECT tax FROM ledger.receipt_vat(test.v('s1'))), 50::bigint, 'vat: three items of 1,05 at 19 % are 0,50 tax on their receipt and in the report, not 0,51');
SELECT is(pg_temp.report('vat', now() - interval '1 hour', now()), '[]'::jsonb,
          'vat: a window that ends before the bookings (committed at now()) has no rows');
SELECT is(pg_temp.report('vat', now() - interval '1 hour', now() + interval '1 hour'), pg_temp.report('vat'),
          'vat: a window around them has all of them');
SELECT is((SELECT r -> -1 FROM jsonb_array_elements(pg_temp.report('trial-balance')) r WHERE r ->> 0 = 'total'),
          '0'::jsonb, 'trial balance: the total balance is 0');
SELECT is((SELECT sum((r ->> 4)::bigint)::bigint FROM jsonb_array_elements(pg_temp.report('trial-balance')) r WHERE r ->> 0 <> 'total'),
          0::bigint, 'trial balance: the balances of all rows sum to 0');
SELECT is(jsonb_array_length(pg_temp.report('trial-balance')), 8,
          'trial balance: a row for each of the five top-up drawers, one for all customers, the Bar, the total');
SELECT is((SELECT jsonb_agg(r) FROM jsonb_array_elements(pg_temp.report('trial-balance')) r WHERE r ->> 0 IN ('customer', 'merchant', 'total')),
          '[["customer", "all tags", 15500, 2465, 13035], ["merchant", "Bar", 2465, 0, 2465], ["total", null, 17965, 17965, 0]]'::jsonb,
          'trial balance: customers received 155,00 and paid 24,65 (three sales), the Bar received 24,65');
SELECT is(pg_temp.report('sales-per-merchant'), '[["Bar", 3, 2465, 0, 2465], ["Food", 0, 0, 0, 0]]'::jsonb,
          'sales per merchant: Bar 3 sales of 24,65, Food none');
SELECT is(pg_temp.report('settlement'), '[["Bar", 2465, 0, 2465], ["Food", 0, 0, 0]]'::jsonb,
          'settlement: the Bar is owed 24,65');
SELECT is(pg_temp.report('sales-per-product'),
          '[["Beer", 19.00, 4, 1800, 0], ["Pretzel", 7.00, 1, 350, 0], ["Snack A", 19.00, 1, 105, 0], ["Snack B", 19.00, 1, 105, 0], ["Snack C", 19.00, 1, 105, 0]]'::jsonb,
          'sales per product: 4 Beer, a Pretzel and one of each Snack (the unknown outcome is not a sale)');
SELECT is(pg_temp.report('topups'), '[["cash", 5, 15500, 0, 15500]]'::jsonb, 'top-ups: 5 in cash, 155,00, no fees');
SELECT is((SELECT jsonb_agg(r - 0) FROM jsonb_array_elements(pg_temp.report('sales-per-hour')) r),
          jsonb_build_array(jsonb_build_array(3, 2465)), 'sales per hour: one hour, 3 sales of 24,65');
SELECT is((SELECT columns FROM api.admin_report(test.admin_token('viewer'), 'sales-per-hour', NULL, NULL)),
          ARRAY['hour', 'sales', 'gross'], 'sales per hour: columns hour, sales, gross');
SELECT throws_ok($$SELECT * FROM api.admin_report(test.admin_token('viewer'), 'profits', NULL, NULL)$$, 'FP010', NULL,
                 'an unknown report is not-found');
SELECT is(test.error_detail($$SELECT * FROM api.admin_report(test.admin_token('viewer'), 'vat', now(), now() - interval '1 hour')$$),
          '{"field": "to"}'::jsonb, 'a window that ends before it starts: validation, field to');

-- ---------------------------------------------------------------- customers
SELECT results_eq($$SELECT uid, status, balance, held, available FROM api.admin_customers(test.admin_token('viewer'), 'aa00:aa')$$,
                  $$VALUES ('AA00AA01'::text, 'active'::text, 8885::bigint, 0::bigint, 8885::bigint)$$,
                  'search: the UID prefix aa00:aa finds A with balance 88,85 (100,00 - 3,15 - 8,00)');
SELECT is((SELECT count(*)::integer FROM api.admin_customers(test.admin_token('viewer'), 'CC00')), 2, 'search: CC00 finds C1 and C2');
SELECT is((SELECT count(*)::integer FROM api.admin_customers(test.admin_token('viewer'), $$'; DROP TABLE ledger.tag; --$$)), 0,
          'search: injection-looking input finds nothing and harms nothing');
SELECT ok((SELECT count(*) FROM api.admin_customers(test.admin_token('viewer'), '')) BETWEEN 5 AND 50, 'search: empty lists the first tags');
INSERT INTO test.res SELECT 'a', api.admin_customer(test.admin_token('viewer'), 'aa:00:aa:01');
SELECT is(test.res('a', 'available')::bigint, 8885::bigint, 'customer A: available 88,85');
SELECT is((SELECT jsonb_agg(jsonb_build_array(s ->> 'type', s ->> 'state', (s ->> 'amount')::bigint, (s ->> 'booked')::bigint, s ->> 'merchant'))
             FROM test.res, jsonb_array_elements(j -> 'statement') s WHERE k = 'a'),
          '[["purchase", "TerminalConfirmUnknown", 450, 0, "Bar"], ["purchase", "Committed", 800, -800, "Bar"],
            ["purchase", "Committed", 315, -315, "Bar"], ["topup", "Committed", 10000, 10000, null]]'::jsonb,
          'customer A: statement newest first, the unknown outcome too (booked 0), sales booked -8,00 and -3,15');
SELECT is((SELECT jsonb_agg(i ->> 'name') FROM test.res, jsonb_array_elements(j -> 'statement' -> 2 -> 'items') i WHERE k = 'a'),
          '["Snack A", "Snack B", "Snack C"]'::jsonb, 'customer A: sale 1 with its items as sold');
SELECT is(test.res('a', 'statement_total')::integer, 4, 'customer A: statement_total 4');
SELECT throws_ok($$SELECT api.admin_customer(test.admin_token('viewer'), 'AB00AB00')$$, 'FP010', NULL, 'an unknown tag: not-found');
SELECT is(test.error_detail($$SELECT api.admin_customer(test.admin_token('viewer'), 'xyz')$$), '{"field": "uid"}'::jsonb,
          'no UID: validation, field uid');
SELECT throws_ok($$SELECT api.admin_customer(test.admin_token('viewer'), 'xyz')$$, 'FP001',
                 'validation: ''xyz'' is no tag UID: a tag UID is 8 to 20 hex digits', '... in words');

-- Block and unblock.
SELECT is(pg_temp.web($$SELECT api.admin_customer_block(%1$s, 'CC00CC01', true, ' lost at the stage ')$$, 'support'), 'blocked',
          'block C1: blocked');
SELECT is(test.last_audit(), 'customer.block tag:CC00CC01 by pgtap-ops-support', 'block: audited as customer.block by the support user');
SELECT is(test.last_change(), '{"before": {"status": "active"}, "after": {"status": "blocked", "reason": "lost at the stage"}}'::jsonb,
          'block: before active, after blocked with the reason');
SELECT throws_ok($$SELECT * FROM api.transfer(test.e(), 'AA00AA01', 'CC00CC01', 100)$$, 'FP011', NULL,
                 'a blocked tag takes no money');
SELECT is(pg_temp.web($$SELECT api.admin_customer_block(%1$s, 'CC00CC01', false, 'found again')$$, 'support'), 'active',
          'unblock C1: active again');
SELECT is(test.last_audit(), 'customer.unblock tag:CC00CC01 by pgtap-ops-support', 'unblock: audited as customer.unblock');
SELECT is(test.error_detail($$SELECT api.admin_customer_block(test.admin_token('support'), 'CC00CC01', true, '  ')$$),
          '{"field": "reason"}'::jsonb, 'block without a reason: validation, field reason');
SELECT is(test.error_detail($$SELECT api.admin_customer_block(test.admin_token('support'), 'CC00CC01', NULL, 'why')$$),
          '{"field": "blocked"}'::jsonb, 'block neither true nor false: validation, field blocked');

-- Move the balance to a new tag.
SELECT throws_ok($$SELECT pg_temp.move_to_a_full_tag()$$, 'FP021',
                 'max-balance-exceeded: tag EE00EE02 would then hold 538.85 EUR, more than the maximum balance of 500.00 EUR',
                 'move to a tag that would hold more than the maximum: max-balance-exceeded, in EUR (and nothing kept)');
SELECT is(test.error_detail($$SELECT pg_temp.move_to_a_full_tag()$$),
          '{"field": "new_uid", "balance": 45000, "max_balance": 50000}'::jsonb, '... next to the field new_uid');
INSERT INTO test.ctx SELECT 'move', pg_temp.web($$SELECT api.admin_customer_move(%1$s, 'BB00BB01', 'dd:00:dd:01', 'lost wristband')$$, 'support')::bigint;
SELECT results_eq($$SELECT type::text, amount::bigint FROM ledger.transaction WHERE id = test.v('move')$$,
                  $$VALUES ('transfer'::text, 3000::bigint)$$, 'move B to D: one transfer of all of B''s 30,00');
SELECT results_eq($$SELECT uid, status, balance FROM api.admin_customers(test.admin_token('viewer'), '') WHERE uid IN ('BB00BB01', 'DD00DD01') ORDER BY uid$$,
                  $$VALUES ('BB00BB01'::text, 'blocked'::text, 0::bigint), ('DD00DD01', 'active', 3000)$$,
                  'move: B is blocked with 0, the new tag D is active with 30,00');
SELECT is(test.last_audit(), 'customer.move tag:BB00BB01 by pgtap-ops-support', 'move: audited as customer.move');
SELECT is(test.last_change() -> 'after' ->> 'new_uid', 'DD00DD01', 'move: the audit row names the new tag');
SELECT is(test.error_detail($$SELECT api.admin_customer_move(test.admin_token('support'), 'BB00BB01', 'DD00DD02', 'again')$$),
          '{"field": "new_uid"}'::jsonb, 'move a tag with nothing available: validation, field new_uid');
SELECT is(test.error_detail($$SELECT api.admin_customer_move(test.admin_token('support'), 'DD00DD01', 'nonsense', 'x')$$),
          '{"field": "new_uid"}'::jsonb, 'move to no UID: validation, field new_uid');
SELECT throws_ok($$SELECT api.admin_customer_move(test.admin_token('support'), 'DD00DD01', 'nonsense', 'x')$$, 'FP001',
                 'validation: ''nonsense'' is no tag UID: a tag UID is 8 to 20 hex digits', '... in words');
SELECT is(test.error_detail($$SELECT api.admin_customer_move(test.admin_token('support'), 'DD00DD01', 'DD:00:DD:01', 'x')$$),
          '{"field": "new_uid"}'::jsonb, 'move to the same tag: validation, field new_uid');
SELECT throws_ok($$SELECT api.admin_customer_move(test.admin_token('support'), 'DD00DD01', 'BB00BB01', 'x')$$, 'FP011', NULL,
                 'move to a blocked tag: tag-blocked');

-- Chargeback, never more than what is left of the sale.
INSERT INTO test.ctx SELECT 'cb1', pg_temp.web(format($$SELECT api.admin_chargeback(%%1$s, %s, 500, 'beer was warm')$$, test.v('s2')), 'support')::bigint;
SELECT results_eq($$SELECT type::text, state::text, amount::bigint, linked_id FROM ledger.transaction WHERE id = test.v('cb1')$$,
                  $$VALUES ('chargeback'::text, 'Committed'::text, 500::bigint, test.v('s2'))$$,
                  'chargeback of 5,00 of sale 2 (8,00): booked, linked to the sale');
SELECT is(test.last_audit(), format('transaction.chargeback transaction:%s by pgtap-ops-support', test.v('s2')),
          'chargeback: audited as transaction.chargeback of the sale');
SELECT is(test.error_detail(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 301, 'more')$$, test.v('s2'))),
          '{"field": "amount", "left": 300}'::jsonb, 'a second one of 3,01: validation, field amount, 3,00 left');
SELECT throws_ok(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 301, 'more')$$, test.v('s2')), 'FP001',
                 format('validation: only 3.00 EUR of purchase %s is left to charge back', test.v('s2')), '... said in EUR, not cents');
SELECT is(pg_temp.web(format($$SELECT api.admin_chargeback(%%1$s, %s, 300, 'the rest')$$, test.v('s2')), 'support')::bigint IS NOT NULL,
          true, 'the rest, 3,00: booked');
SELECT is(test.error_detail(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 1, 'more')$$, test.v('s2'))),
          '{"field": "amount", "left": 0}'::jsonb, 'nothing is left: validation, field amount');
SELECT is(test.balance(test.e(), 'AA00AA01'), 9685::bigint, 'A got 8,00 back: 96,85');
SELECT is(test.error_detail(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 0, 'zero')$$, test.v('s1'))),
          '{"field": "amount"}'::jsonb, 'a chargeback of 0: validation, field amount');
SELECT is(test.error_detail(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 100, 'x')$$, test.v('tcu'))),
          '{"field": "transaction_id"}'::jsonb, 'a chargeback of a sale that is not committed: validation, field transaction_id');
SELECT throws_ok(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 100, 'x')$$, test.v('tcu')), 'FP001',
                 format('validation: purchase %s is TerminalConfirmUnknown, not committed: only a committed purchase can be charged back',
                        test.v('tcu')), '... saying why');
SELECT is(test.error_detail(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 100, 'x')$$,
                                   (SELECT id FROM ledger.transaction WHERE event_id = test.e() AND type = 'topup' LIMIT 1))),
          '{"field": "transaction_id"}'::jsonb, 'a chargeback of a top-up: validation, field transaction_id');
SELECT is(test.error_detail(format($$SELECT api.admin_chargeback(test.admin_token('support'), %s, 100, 'x')$$, test.v('move'))),
          '{"field": "transaction_id"}'::jsonb, 'a chargeback of a transfer: validation, field transaction_id');
SELECT is(test.error_detail($$SELECT api.admin_chargeback(test.admin_token('support'), -1, 100, 'x')$$),
          '{"field": "transaction_id"}'::jsonb, 'a chargeback of no transaction of the event: validation, field transaction_id');
SELECT is(pg_temp.report('settlement'), '[["Bar", 2465, 800, 1665], ["Food", 0, 0, 0]]'::jsonb,
          'settlement after the chargebacks: the Bar is owed 16,65');

-- ---------------------------------------------------------------- transactions
SELECT results_eq($$SELECT id FROM api.admin_transactions(test.admin_token('viewer'), '{"uid": "AA00AA01", "type": "purchase"}')$$,
                  $$VALUES (test.v('tcu')), (test.v('s2')), (test.v('s1'))$$,
                  'filter uid and type: A''s three purchases, newest first');
SELECT results_eq($$SELECT id FROM api.admin_transactions(test.admin_token('viewer'), '{"uid": "DD00DD01"}')$$,
                  $$VALUES (test.v('move'))$$, 'filter uid: D''s only transaction is the transfer it received');
SELECT results_eq($$SELECT id, state, uid, merchant, "position", assignment_id, terminal_tx_number
                      FROM api.admin_transactions(test.admin_token('viewer'), '{"state": "TerminalConfirmUnknown"}')$$,
                  $$VALUES (test.v('tcu'), 'TerminalConfirmUnknown'::text, 'AA00AA01'::text, 'Bar'::text, 'Bar'::text, test.bar(), 3::bigint)$$,
                  'filter state: the unknown outcome, with tag, merchant, position and terminal');
SELECT is((SELECT count(*)::integer FROM api.admin_transactions(test.admin_token('viewer'),
              jsonb_build_object('merchant_id', (SELECT id::text FROM ledger.merchant WHERE event_id = test.e() AND name = 'Bar'),
                                 'amount_min', '400', 'amount_max', 900))),
          3, 'filter merchant (as a string), amount 4,00 to 9,00: sale 2, the unknown outcome and a chargeback');
SELECT is((SELECT count(*)::integer FROM api.admin_transactions(test.admin_token('viewer'),
              jsonb_build_object('assignment_id', test.bar(), 'position_id', (SELECT position_id FROM ledger.assignment WHERE id = test.bar())))),
          4, 'filter terminal and position: the Bar terminal''s four transactions');
SELECT is((SELECT count(*)::integer FROM api.admin_transactions(test.admin_token('viewer'),
              jsonb_build_object('from', to_char(now() AT TIME ZONE 'Europe/Berlin' - interval '1 minute', 'YYYY-MM-DD"T"HH24:MI'),
                                 'to', to_char((now() + interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'state', '', 'uid', null))),
          (SELECT count(*)::integer FROM ledger.transaction WHERE event_id = test.e()),
          'filter from (datetime-local in the event''s time zone) and to (RFC 3339); empty and null keys ignored: all of them');
SELECT is((SELECT count(*)::integer FROM api.admin_transactions(test.admin_token('viewer'),
              jsonb_build_object('to', to_char(now() AT TIME ZONE 'Europe/Berlin' - interval '1 minute', 'YYYY-MM-DD"T"HH24:MI')))),
          0, 'filter to before they were made: none');
INSERT INTO test.res SELECT 'page1', jsonb_agg(id) FROM api.admin_transactions(test.admin_token('viewer'), '{}', NULL, 4);
SELECT is(jsonb_array_length(j), 4, 'a page of 4') FROM test.res WHERE k = 'page1';
SELECT results_eq(format($$SELECT id FROM api.admin_transactions(test.admin_token('viewer'), '{}', %s, 3)$$, j ->> 3),
                  format($$SELECT id FROM ledger.transaction WHERE event_id = test.e() AND id < %s ORDER BY id DESC LIMIT 3$$, j ->> 3),
                  'the next page: the 3 below the last id of the first')
  FROM test.res WHERE k = 'page1';
SELECT is(test.error_detail($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"colour": "red"}')$$),
          '{"field": "filter"}'::jsonb, 'an unknown filter key: validation, field filter');
SELECT is(test.error_detail($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"state": "Paid"}')$$),
          '{"field": "state"}'::jsonb, 'no such state: validation, field state');
SELECT is(test.error_detail($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"from": "2025-02-30T10:00"}')$$),
          '{"field": "from"}'::jsonb, 'an impossible time: validation, field from');
SELECT throws_ok($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"from": "2025-02-30T10:00"}')$$, 'FP001',
                 'validation: the start 2025-02-30T10:00 is not a possible time', '... in words');
SELECT throws_ok($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"to": "yesterday"}')$$, 'FP001',
                 'validation: the end must be a time like 2026-07-04 21:30', 'no time: an example of one, not "RFC 3339"');
SELECT is((SELECT count(*)::integer FROM api.admin_transactions(test.admin_token('viewer'),
              jsonb_build_object('to', to_char(now() AT TIME ZONE 'Europe/Berlin' + interval '1 minute', 'YYYY-MM-DD HH24:MI')))),
          (SELECT count(*)::integer FROM ledger.transaction WHERE event_id = test.e()),
          'a time as the example writes it (a space for the T) is read in the event''s time zone');
SELECT throws_ok($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"amount_min": -1}')$$, 'FP001',
                 'validation: the smallest amount must be 0.00 EUR or more', 'a negative amount: in EUR');
SELECT is(test.error_detail($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"merchant_id": "bar"}')$$),
          '{"field": "merchant_id"}'::jsonb, 'a merchant that is no id: validation, field merchant_id');
SELECT is(test.error_detail($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"uid": "zz"}')$$),
          '{"field": "uid"}'::jsonb, 'a tag filter that is no UID: validation, field uid');
SELECT is(test.error_detail($$SELECT * FROM api.admin_transactions(test.admin_token('viewer'), '{"amount_min": "1; DROP TABLE x"}')$$),
          '{"field": "amount_min"}'::jsonb, 'an amount that is no number: validation, field amount_min');
SELECT is((SELECT count(*)::integer FROM api.admin_transactions(test.admin_token('viewer'), '{"uid": "0BADC0DE"}')), 0,
          'filter by an unknown tag: none');

INSERT INTO test.res SELECT 's1', api.admin_transaction(test.admin_token('viewer'), test.v('s1'));
SELECT is((SELECT jsonb_build_array(j -> 'transaction' ->> 'uid', j -> 'transaction' ->> 'merchant', jsonb_array_length(j -> 'items'),
                                    jsonb_array_length(j -> 'lines'), j -> 'lines' -> 0 ->> 'debit', j ->> 'receipt_url')
             FROM test.res WHERE k = 's1'),
          jsonb_build_array('AA00AA01', 'Bar', 3, 3, 'merchant:Bar', '/admin/transactions/' || test.v('s1') || '/receipt'),
          'detail of sale 1: tag, merchant, 3 items, 3 booking lines to the Bar, the receipt link');
SELECT is((SELECT j -> 'states' FROM test.res WHERE k = 's1'),
          jsonb_build_array(jsonb_build_object('at', (SELECT created_at FROM ledger.transaction WHERE id = test.v('s1')),
                                               'state', 'Committed', 'from', NULL, 'by', NULL)),
          'detail of sale 1: replicated as committed, one state');
SELECT is((SELECT j -> 'signature' FROM test.res WHERE k = 's1'), 'null'::jsonb, 'detail of sale 1: not signed yet');
SELECT is((api.admin_receipt(test.admin_token('viewer'), test.v('s1')) ->> 'total')::bigint, 315::bigint,
          'the receipt behind the link: api.receipt of sale 1');
SELECT throws_ok(format($$SELECT api.admin_receipt(test.admin_token('viewer'), %s)$$, test.v('tcu')), 'FP010', NULL,
                 'no receipt of a transaction that is not committed: not-found');
SELECT is((SELECT jsonb_array_length(api.admin_transaction(test.admin_token('viewer'), test.v('s2')) -> 'linked')), 2,
          'detail of sale 2: its two chargebacks are linked');

-- ---------------------------------------------------------------- the resolution queue
SELECT results_eq($$SELECT kind, transaction_id, uid, amount FROM api.admin_queue(test.admin_token('viewer'))$$,
                  $$VALUES ('terminal-confirm-unknown'::text, test.v('tcu'), 'AA00AA01'::text, 450::bigint),
                           ('overdraft', test.v('over'), 'EE00EE01', 1350),
                           ('refused-log-entry', NULL, NULL, 450),
                           ('implausible-offline-charge', NULL, 'FF00FF01', 450)$$,
                  'queue: the unknown outcome, the overdraft, the refused log entry, the implausible offline sale');
SELECT is((SELECT api.admin_dashboard(test.admin_token('viewer')) -> 'queue_counts'),
          '{"terminal-confirm-unknown": 1, "external-unknown": 0, "provider-refund": 0, "overdraft": 1, "refused-log-entry": 1,
            "implausible-offline-charge": 1, "violation": 0}'::jsonb, 'dashboard: the queue counts per kind');
SELECT is(test.error_detail(format($$SELECT api.admin_queue_resolve(test.admin_token('support'), %s, 'Maybe', 'x')$$, test.v('tcu'))),
          '{"field": "outcome"}'::jsonb, 'resolve with another outcome: validation, field outcome');
SELECT is(test.error_detail(format($$SELECT api.admin_queue_resolve(test.admin_token('support'), %s, 'Committed', '')$$, test.v('tcu'))),
          '{"field": "reason"}'::jsonb, 'resolve without a reason: validation, field reason');
SELECT is(pg_temp.web(format($$SELECT api.admin_queue_resolve(%%1$s, %s, 'Committed', 'the tag shows the charge')$$, test.v('tcu')), 'support'),
          'Committed', 'resolve the unknown outcome as Committed: booked');
SELECT is(test.balance(test.e(), 'AA00AA01'), 9235::bigint, 'A paid the Beer: 92,35');
SELECT is(test.last_audit(), format('queue.resolve transaction:%s by pgtap-ops-support', test.v('tcu')), 'resolve: audited as queue.resolve');
SELECT is(test.last_change(), '{"before": {"state": "TerminalConfirmUnknown"},
                                       "after": {"state": "Committed", "outcome": "booked", "reason": "the tag shows the charge"}}'::jsonb,
          'resolve: before TerminalConfirmUnknown, after Committed, with the reason');
SELECT is((SELECT jsonb_agg(jsonb_build_array(s ->> 'from', s ->> 'state', s ->> 'by'))
             FROM jsonb_array_elements(api.admin_transaction(test.admin_token('viewer'), test.v('tcu')) -> 'states') s),
          '[[null, "TerminalConfirmUnknown", null], ["TerminalConfirmUnknown", "Committed", "admin:pgtap-ops-support"]]'::jsonb,
          'detail of the decided transaction: replicated as an unknown outcome, then the admin''s decision and who made it');
SELECT throws_ok(format($$SELECT api.admin_queue_resolve(test.admin_token('support'), %s, 'Aborted', 'changed my mind')$$, test.v('tcu')),
                 'FP030', NULL, 'deciding a Committed transaction again as Aborted: invalid-transition');
SELECT throws_ok(format($$SELECT api.admin_queue_resolve(test.admin_token('support'), %s, 'Aborted', 'x')$$, test.v('s1')),
                 'FP030', NULL, 'deciding a sale that never waited: invalid-transition');
SELECT is(pg_temp.web(format($$SELECT api.admin_queue_resolve(%%1$s, %s, 'reviewed', 'tag was charged offline, fine')$$, test.v('over')), 'support'),
          'reviewed', 'review the overdraft');
SELECT is((SELECT reviewed_by FROM ledger.overdraft WHERE transaction_id = test.v('over')), 'pgtap-ops-support',
          'the overdraft is marked reviewed by the support user');
SELECT is(test.last_audit(), format('queue.review transaction:%s by pgtap-ops-support', test.v('over')), 'review: audited as queue.review');
INSERT INTO test.ctx SELECT 'viol', (detail ->> 'violation_id')::bigint FROM api.admin_queue(test.admin_token('viewer')) WHERE kind = 'refused-log-entry';
SELECT is(pg_temp.web(format($$SELECT api.admin_queue_resolve(%%1$s, NULL, 'reviewed', 'a broken terminal', %s)$$, test.v('viol')), 'support'),
          'reviewed', 'review the refused log entry by its violation id');
SELECT is(test.last_audit(), format('queue.review violation:%s by pgtap-ops-support', test.v('viol')), 'review of a violation: audited');
SELECT throws_ok(format($$SELECT api.admin_queue_resolve(test.admin_token('support'), NULL, 'reviewed', 'again', %s)$$, test.v('viol')),
                 'FP010', NULL, 'reviewing it again: not-found (nothing waits)');
SELECT is(test.error_detail($$SELECT api.admin_queue_resolve(test.admin_token('support'), NULL, 'Committed', 'x')$$),
          '{"field": "transaction_id"}'::jsonb, 'deciding nothing: validation, field transaction_id');
SELECT results_eq($$SELECT kind FROM api.admin_queue(test.admin_token('viewer'))$$, $$VALUES ('implausible-offline-charge'::text)$$,
                  'the queue holds only the implausible offline sale now');
SELECT ok((SELECT jsonb_array_length(api.admin_transaction(test.admin_token('viewer'), test.v('s1')) -> 'violations') = 0), 'sale 1 has no violations');

-- ---------------------------------------------------------------- fiscal status, closing a till
INSERT INTO test.res SELECT 'fiscal', api.admin_fiscal(test.admin_token('viewer'));
SELECT is((SELECT array_agg(x.key ORDER BY x.key) FROM test.res r, jsonb_object_keys(r.j) x(key) WHERE r.k = 'fiscal'),
          ARRAY['closings', 'open_cashpoints', 'outages', 'signing', 'tse', 'tse_outage'],
          'fiscal: the TSE, signing lag, outages, open tills, closings');
SELECT ok((SELECT (j -> 'open_cashpoints') @> jsonb_build_array(jsonb_build_object('assignment_id', test.bar(), 'position', 'Bar'))
             FROM test.res WHERE k = 'fiscal'), 'fiscal: the Bar terminal has open receipts');
INSERT INTO test.ctx SELECT 'closing', pg_temp.web(format($$SELECT api.admin_close_cashpoint(%%1$s, %s)$$, test.bar()), 'finance')::bigint;
SELECT results_eq($$SELECT assignment_id, z_nr, transactions FROM ledger.cashpoint_closing WHERE id = test.v('closing')$$,
                  $$VALUES (test.bar(), 1, 4)$$, 'close the Bar till: Z 1 with its 4 committed receipts');
SELECT is(test.last_audit(), format('cashpoint.close till:festpay-%s by pgtap-ops-finance', test.bar()), 'closing: audited as cashpoint.close');
SELECT is((api.admin_fiscal(test.admin_token('viewer')) -> 'closings' -> 0 ->> 'id')::bigint, test.v('closing'), 'fiscal: the closing is listed');
SELECT throws_ok(format($$SELECT api.admin_close_cashpoint(test.admin_token('finance'), %s)$$, test.bar()), 'FP001', NULL,
                 'closing it again: validation (no open receipts)');

-- ---------------------------------------------------------------- dashboard
INSERT INTO test.res SELECT 'dash', api.admin_dashboard(test.admin_token('viewer'));
SELECT is(test.res('dash', 'revenue_today')::bigint,
          (SELECT sum(amount)::bigint FROM ledger.transaction WHERE event_id = test.e() AND type = 'purchase' AND state = 'Committed'),
          'dashboard: revenue today is the committed sales');
SELECT is((SELECT jsonb_array_length(j -> 'series') FROM test.res WHERE k = 'dash'), 360, 'dashboard: a point for every minute of 6 hours');
SELECT is((SELECT s -> 'topups' FROM test.res, jsonb_array_elements(j -> 'series') s WHERE k = 'dash' ORDER BY s ->> 'minute' DESC LIMIT 1),
          '15500'::jsonb, 'dashboard: this minute''s top-ups');
SELECT is(test.res('dash', 'terminals_seen_5min')::integer,
          (SELECT count(DISTINCT assignment_id)::integer FROM ledger.transaction WHERE event_id = test.e()),
          'dashboard: every terminal with a transaction in the last 5 minutes');

-- ---------------------------------------------------------------- hours that can no longer change are kept
-- Every transaction up to sale 2 (this suite's top-ups and sales 1 and 2, and whatever the database held before, so
-- that ids still rise with time) moved 3 hours back, and the event's start a day: that hour is kept in
-- ledger.sales_hour the first time a report needs it.
UPDATE ledger.event SET created_at = now() - interval '1 day' WHERE id = test.e();
UPDATE ledger.transaction SET created_at = created_at - interval '3 hours', updated_at = updated_at - interval '3 hours',
                              committed_at = committed_at - interval '3 hours'
 WHERE id <= test.v('s2');
INSERT INTO test.res SELECT 'hours', pg_temp.report('sales-per-hour');
SELECT is((SELECT jsonb_agg(jsonb_build_array(r -> 1, r -> 2)) FROM test.res, jsonb_array_elements(j) r WHERE k = 'hours'),
          '[[2, 1115], [0, 0], [0, 0], [2, 1800]]'::jsonb, 'sales per hour: 2 sales 3 hours ago, 2 now, the quiet hours between at 0');
SELECT is((SELECT count(*)::integer FROM ledger.sales_hour WHERE event_id = test.e() AND sales > 0), 1,
          'the earlier hour is kept in ledger.sales_hour');
SELECT is(pg_temp.report('sales-per-hour'), (SELECT j FROM test.res WHERE k = 'hours'), 'read again (from what is kept): the same');
SELECT is((SELECT jsonb_agg(r -> 1) FROM jsonb_array_elements(pg_temp.report('sales-per-hour', now() - interval '200 minutes', now() - interval '1 hour')) r),
          '[2]'::jsonb, 'sales per hour in a window: only its hours with sales');

SELECT * FROM finish();
ROLLBACK;
