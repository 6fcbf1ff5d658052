-- The customer portal's sign-in and read pages (procedures/73_portal.sql): a tag's UID and PIN checked with bcrypt in
-- the database, refused alike for an unknown tag, a wrong PIN, a tag without a PIN and a locked one; five wrong PINs
-- of a tag within 15 minutes lock its sign-in for 15 minutes; sessions as on the admin site (a new random token per
-- sign-in, only its SHA-256 stored, 30 idle minutes, 12 hours, sign-out); balance, history and receipts of the
-- signed-in tag only (another tag's transaction is not-found, like a missing one, and changes nothing); the online
-- top-up limits the page states are the ones the database applies; held covers a payout run under way, and paid_out
-- tells a tag paid out in a done run from a blocked one; the download says how long bank data is kept; only
-- festpay_web may call the portal, and it reads no hash.
BEGIN;
SELECT plan(117);

-- ---------------------------------------------------------------- helpers
-- The outcome of a sign-in.
CREATE FUNCTION pg_temp.outcome(p_uid text, p_pin text) RETURNS text LANGUAGE sql AS $$
    SELECT outcome FROM api.portal_sign_in(p_uid, p_pin, 'pgTAP') $$;
-- The token of a sign-in (NULL when refused).
CREATE FUNCTION pg_temp.sign_in(p_uid text, p_pin text) RETURNS text LANGUAGE sql AS $$
    SELECT token FROM api.portal_sign_in(p_uid, p_pin, 'pgTAP') $$;
-- The portal sign-in failures of a tag of the suite's event.
CREATE FUNCTION pg_temp.failures(p_uid text) RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM ledger.portal_sign_in_failure f JOIN ledger.tag g ON g.id = f.tag_id
     WHERE g.event_id = test.e() AND g.uid = p_uid $$;
-- Everything of the suite's event that money is made of, as one text: transactions, lines, accounts, tags.
CREATE FUNCTION pg_temp.footprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(format('%s %s %s %s', id, state, held, updated_at), ',' ORDER BY id) FROM ledger.transaction WHERE event_id = test.e()),
        (SELECT count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id WHERE t.event_id = test.e()),
        (SELECT string_agg(format('%s %s %s', id, balance, held), ',' ORDER BY id) FROM ledger.account WHERE event_id = test.e()),
        (SELECT string_agg(format('%s %s %s', uid, status, pin_hash), ',' ORDER BY id) FROM ledger.tag WHERE event_id = test.e()),
        (SELECT count(*) FROM ledger.portal_sign_in_failure))) $$;
-- Books a sale replicated at the suite's Bar terminal; returns the transaction id.
CREATE FUNCTION pg_temp.sale(p_number integer, p_uid text, p_amount bigint, VARIADIC p_items text[])
RETURNS bigint LANGUAGE sql AS $$
    SELECT transaction_id FROM api.replicate(test.bar(), jsonb_build_array(
        test.entry(p_number, 'Committed', p_uid, p_number, p_amount, VARIADIC p_items))) $$;
-- How many milliseconds a statement takes.
CREATE FUNCTION pg_temp.ms(p_sql text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE p_sql;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

-- ---------------------------------------------------------------- fixtures
-- Tags: A FA00FA01 (PIN 1111, 100,00, a sale of 8,00, online top-ups under way), B FB00FB01 (PIN 2222, 50,00, a sale),
-- C FC00FC01 (no PIN), D FD00FD01 (PIN 4444, for the lockout), E FE00FE01 (PIN 5555, blocked).
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP portal');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-05T21:30:00+02:00"}');
INSERT INTO test.ctx SELECT 'funded ' || u, test.funded_tag(test.e(), u, a)
  FROM (VALUES ('FA00FA01', 10000), ('FB00FB01', 5000), ('FC00FC01', 1000), ('FD00FD01', 1000), ('FE00FE01', 1000)) x(u, a);
UPDATE ledger.tag g SET pin_hash = extensions.crypt(x.pin, extensions.gen_salt('bf', 4))
  FROM (VALUES ('FA00FA01', '1111'), ('FB00FB01', '2222'), ('FD00FD01', '4444'), ('FE00FE01', '5555')) x(u, pin)
 WHERE g.event_id = test.e() AND g.uid = x.u;
INSERT INTO test.ctx SELECT 'sA', pg_temp.sale(1, 'FA00FA01', 800, 'Beer:1', 'Pretzel:1');
INSERT INTO test.ctx SELECT 'sB', pg_temp.sale(2, 'FB00FB01', 450, 'Beer:1');
-- A's online top-ups: 20,00 Open, 30,00 ExternalPending, 5,00 ExternalUnknown, 7,00 Aborted.
INSERT INTO test.ctx SELECT 'x' || a, api.external_topup_create(test.e(), 'FA00FA01', a) FROM unnest(ARRAY[2000, 3000, 500, 700]) a;
DO $$
BEGIN
    PERFORM api.block_tag(test.e(), 'FE00FE01');
    PERFORM api.external_topup_pending(test.v(x)) FROM unnest(ARRAY['x3000', 'x500', 'x700']) x;
    PERFORM api.external_topup_result(test.v('x500'), 'unknown');
    PERFORM api.external_topup_result(test.v('x700'), 'failure');
END $$;
INSERT INTO test.ctx SELECT 'max tx', max(id) FROM ledger.transaction;

-- ---------------------------------------------------------------- the problem
SELECT results_eq($$SELECT slug, sqlstate, http_status FROM api.problem_types() WHERE sqlstate = 'FP074'$$,
                  $$VALUES ('portal-unauthenticated'::text, 'FP074'::text, 401)$$, 'the portal''s problem is named: FP074, 401');

-- ---------------------------------------------------------------- sign-in
SELECT lives_ok($$INSERT INTO test.res SELECT 'a', to_jsonb(s) FROM api.portal_sign_in(' fa:00:fa:01 ', '1111', 'pgTAP') s$$,
                'A signs in (UID in any case, with colons and spaces)');
SELECT results_eq($$SELECT test.res('a', 'outcome'), test.res('a', 'uid')$$, $$VALUES ('ok'::text, 'FA00FA01'::text)$$,
                  'outcome ok, naming the tag''s UID');
SELECT ok(test.res('a', 'token') ~ '^[A-Za-z0-9_-]{43}$', 'the token is 32 random bytes in base64url (43 characters)');
SELECT ok(test.res('a', 'csrf_token') ~ '^[A-Za-z0-9_-]{43}$' AND test.res('a', 'csrf_token') <> test.res('a', 'token'),
          'the CSRF token is another 32 random bytes');
SELECT is((SELECT count(*)::integer FROM ledger.portal_session WHERE token_hash = sha256(convert_to(test.res('a', 'token'), 'UTF8'))),
          1, 'the session is stored under the SHA-256 of the token');
SELECT is((SELECT g.uid FROM ledger.portal_session s JOIN ledger.tag g ON g.id = s.tag_id
            WHERE s.token_hash = sha256(convert_to(test.res('a', 'token'), 'UTF8'))), 'FA00FA01', '... for tag A');
SELECT is_empty($$SELECT FROM ledger.portal_session s WHERE position(convert_to(test.res('a', 'token'), 'UTF8') IN s.token_hash) > 0
                      OR s.csrf_token = test.res('a', 'token') OR s.client = test.res('a', 'token')$$,
                'the token itself is stored nowhere');
SELECT isnt(pg_temp.sign_in('FA00FA01', '1111'), test.res('a', 'token'), 'a second sign-in gets a new token');
SELECT results_eq($$SELECT * FROM api.portal_sign_in('FA00FA01', '1112')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text)$$, 'a wrong PIN: refused, nothing else');
SELECT is(pg_temp.failures('FA00FA01'), 1, 'a wrong PIN is recorded (the answer is a row, so the failure commits)');
SELECT results_eq($$SELECT * FROM api.portal_sign_in('FF00FF01', '1111')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text)$$, 'an unknown tag: the very same answer');
SELECT results_eq($$SELECT * FROM api.portal_sign_in('not a uid; DROP TABLE x', '1111')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text)$$, 'something that is no UID: the same');
SELECT results_eq($$SELECT * FROM api.portal_sign_in('FC00FC01', '')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text)$$, 'a tag without a PIN, empty PIN: the same');
SELECT results_eq($$SELECT * FROM api.portal_sign_in('FC00FC01', '0000')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text)$$, 'a tag without a PIN, any PIN: the same');
SELECT results_eq($$SELECT * FROM api.portal_sign_in(NULL, NULL, NULL)$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text)$$, 'no UID, no PIN: the same');
SELECT is(pg_temp.failures('FC00FC01'), 0, 'a tag without a PIN records no failure (there is nothing to guess)');
SELECT is((SELECT count(*)::integer FROM ledger.portal_session s JOIN ledger.tag g ON g.id = s.tag_id WHERE g.uid = 'FC00FC01'),
          0, 'and gets no session');
SELECT ok(pg_temp.ms($$SELECT * FROM api.portal_sign_in('FF00FF01', 'x')$$) > 5,
          'an unknown tag costs a bcrypt hash all the same');
SELECT is(pg_temp.outcome('FE00FE01', '5555'), 'ok', 'a blocked tag signs in (to see its money and, later, its payout)');
SELECT is((SELECT status FROM api.portal_whoami(pg_temp.sign_in('FE00FE01', '5555'))), 'blocked', '... and whoami says blocked');

-- ---------------------------------------------------------------- whoami
SELECT results_eq(format($$SELECT * FROM api.portal_whoami(%L)$$, test.res('a', 'token')),
                  $$VALUES ('FA00FA01'::text, 'active'::text, test.res('a', 'csrf_token'), 'EUR'::text, 'Europe/Berlin'::text)$$,
                  'whoami: the UID, the status, the session''s CSRF token, the event''s currency and time zone');
SELECT throws_ok($$SELECT * FROM api.portal_whoami('no-such-token')$$, 'FP074', NULL, 'whoami with an unknown token: portal-unauthenticated');
SELECT throws_ok($$SELECT * FROM api.portal_whoami(NULL)$$, 'FP074', NULL, 'whoami without a token: portal-unauthenticated');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('a', 'token')), 'FP070', NULL,
                 'a portal token is no admin session');

-- ---------------------------------------------------------------- balance
SELECT results_eq(format($$SELECT * FROM api.portal_balance(%L)$$, test.res('a', 'token')),
                  $$VALUES (9200::bigint, 0::bigint, 9200::bigint, 5500::bigint, false)$$,
                  'balance 92,00, held 0, available 92,00; pending online top-ups 55,00 (Open, ExternalPending, ExternalUnknown; not Aborted); not paid out');
SELECT results_eq(format($$SELECT balance, pending_topups FROM api.portal_balance(%L)$$, pg_temp.sign_in('FB00FB01', '2222')),
                  $$VALUES (4550::bigint, 0::bigint)$$, 'B sees its own balance, without A''s pending top-ups');

-- ---------------------------------------------------------------- history
SELECT results_eq(format($$SELECT transaction_id, type, merchant, amount, balance_after, receipt, items -> 0 ->> 'name',
                                  jsonb_array_length(items) FROM api.portal_history(%L)$$, test.res('a', 'token')),
                  $$VALUES (test.v('sA'), 'purchase'::text, 'Bar'::text, -800::bigint, 9200::bigint, true, 'Beer'::text, 2),
                           ((SELECT min(transaction_id) FROM api.customer_statement(test.e(), 'FA00FA01')), 'topup', NULL, 10000, 10000, true, NULL, 0)$$,
                  'history: A''s own booked transactions, newest first, with items, the running balance and a receipt each');
SELECT is((SELECT items -> 1 FROM api.portal_history(test.res('a', 'token')) WHERE transaction_id = test.v('sA')),
          '{"name": "Pretzel", "quantity": 1, "unit_price": 350, "vat_rate": 7.00, "returnable": false}'::jsonb,
          'an item: name, quantity, unit price, VAT rate, returnable');
SELECT results_eq(format($$SELECT transaction_id, (sum(amount) OVER ())::bigint FROM api.portal_history(%L) ORDER BY transaction_id$$, test.res('a', 'token')),
                  $$SELECT transaction_id, (SELECT sum(amount) FROM api.customer_statement(test.e(), 'FA00FA01'))::bigint
                      FROM api.customer_statement(test.e(), 'FA00FA01') GROUP BY transaction_id ORDER BY transaction_id$$,
                  'history is the statement (api.customer_statement), one row per transaction');
SELECT results_eq(format($$SELECT transaction_id FROM api.portal_history(%L, NULL, 1)$$, test.res('a', 'token')),
                  $$VALUES (test.v('sA'))$$, 'p_limit 1: the newest one');
SELECT results_eq(format($$SELECT type FROM api.portal_history(%L, %s)$$, test.res('a', 'token'), test.v('sA')),
                  $$VALUES ('topup'::text)$$, 'keyset: the page before the sale starts below it');
SELECT is_empty(format($$SELECT FROM api.portal_history(%L) WHERE transaction_id IN (test.v('sB'), test.v('x2000'), test.v('x3000'))$$,
                       test.res('a', 'token')),
                'neither B''s sale nor A''s top-ups under way are in A''s history');
SELECT results_eq(format($$SELECT transaction_id, amount FROM api.portal_history(%L) WHERE type = 'purchase'$$, pg_temp.sign_in('FB00FB01', '2222')),
                  $$VALUES (test.v('sB'), -450::bigint)$$, 'B''s history has B''s sale');

-- ---------------------------------------------------------------- receipts: this tag's only
SELECT is((api.portal_receipt(test.res('a', 'token'), test.v('sA')) -> 'total')::bigint, 800::bigint,
          'A''s receipt of its sale (api.receipt): total 8,00');
SELECT is(api.portal_receipt(test.res('a', 'token'), test.v('sA')), api.receipt(test.v('sA')), '... the very document api.receipt makes');
CREATE TEMP TABLE footprint AS SELECT pg_temp.footprint() AS f;
SELECT throws_ok(format($$SELECT api.portal_receipt(%L, %s)$$, test.res('a', 'token'), test.v('sB')), 'FP010',
                 format('not-found: transaction %s does not exist', test.v('sB')), 'B''s receipt for A: not-found');
SELECT throws_ok(format($$SELECT api.portal_receipt(%L, %s)$$, test.res('a', 'token'), test.v('max tx') + 1000), 'FP010',
                 format('not-found: transaction %s does not exist', test.v('max tx') + 1000), 'a missing transaction: the very same answer');
SELECT is(test.error_detail(format($$SELECT api.portal_receipt(%L, %s)$$, test.res('a', 'token'), test.v('sB'))),
          jsonb_build_object('transaction_id', test.v('sB')), 'with the same detail as a missing one');
SELECT throws_ok(format($$SELECT api.portal_receipt(%L, NULL)$$, test.res('a', 'token')), 'FP010', NULL, 'no transaction id: not-found');
SELECT throws_ok(format($$SELECT api.portal_receipt(%L, %s)$$, test.res('a', 'token'), test.v('x2000')), 'FP010', NULL,
                 'A''s own top-up under way has no receipt yet: not-found');
SELECT throws_ok(format($$SELECT api.portal_receipt(%L, %s)$$, pg_temp.sign_in('FB00FB01', '2222'), test.v('sA')), 'FP010', NULL,
                 'A''s receipt for B: not-found');
SELECT throws_ok(format($$SELECT api.portal_receipt('no-such-token', %s)$$, test.v('sA')), 'FP074', NULL,
                 'without a session: portal-unauthenticated, before anything is looked up');
SELECT is(pg_temp.footprint(), (SELECT f FROM footprint), 'the refused receipts changed nothing');

-- ---------------------------------------------------------------- lockout
SELECT is(ARRAY[pg_temp.outcome('FD00FD01', '0001'), pg_temp.outcome('FD00FD01', '0002'),
                pg_temp.outcome('FD00FD01', '0003'), pg_temp.outcome('FD00FD01', '0004')],
          ARRAY['refused', 'refused', 'refused', 'refused'], 'four wrong PINs: refused');
SELECT is(pg_temp.failures('FD00FD01'), 4, 'four failures recorded');
SELECT is(pg_temp.outcome('FD00FD01', '4444'), 'ok', 'after four, the right PIN still signs in');
SELECT is(pg_temp.failures('FD00FD01'), 0, 'a sign-in clears the failures');
SELECT is(ARRAY[pg_temp.outcome('FD00FD01', '0001'), pg_temp.outcome('FD00FD01', '0002'),
                pg_temp.outcome('FD00FD01', '0003'), pg_temp.outcome('FD00FD01', '0004'),
                pg_temp.outcome('FD00FD01', '0005')],
          ARRAY['refused', 'refused', 'refused', 'refused', 'refused'], 'five wrong PINs within 15 minutes');
SELECT results_eq($$SELECT * FROM api.portal_sign_in('FD00FD01', '4444')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text)$$,
                  'locked: the right PIN is refused, with the same answer as a wrong one');
SELECT is(pg_temp.failures('FD00FD01'), 5, 'attempts while locked are not counted (the lock ends 15 minutes after the fifth failure)');
SELECT is(pg_temp.outcome('FA00FA01', '1111'), 'ok', 'the lock is the tag''s: another tag signs in');
UPDATE ledger.portal_sign_in_failure SET at = at - interval '14 minutes'
 WHERE tag_id = (SELECT id FROM ledger.tag WHERE event_id = test.e() AND uid = 'FD00FD01');
SELECT is(pg_temp.outcome('FD00FD01', '4444'), 'refused', '14 minutes later: still locked');
UPDATE ledger.portal_sign_in_failure SET at = at - interval '1 minute 1 second'
 WHERE tag_id = (SELECT id FROM ledger.tag WHERE event_id = test.e() AND uid = 'FD00FD01');
SELECT is(pg_temp.outcome('FD00FD01', '4444'), 'ok', '15 minutes after the fifth failure the lock is over');
SELECT is(ARRAY[pg_temp.outcome('FD00FD01', '0001'), pg_temp.outcome('FD00FD01', '0002'),
                pg_temp.outcome('FD00FD01', '0003'), pg_temp.outcome('FD00FD01', '0004'),
                pg_temp.outcome('FD00FD01', '0005')],
          ARRAY['refused', 'refused', 'refused', 'refused', 'refused'], 'five wrong PINs again');
UPDATE ledger.portal_sign_in_failure SET at = at - interval '16 minutes'
 WHERE ctid = (SELECT f.ctid FROM ledger.portal_sign_in_failure f JOIN ledger.tag g ON g.id = f.tag_id
                WHERE g.event_id = test.e() AND g.uid = 'FD00FD01' LIMIT 1);
SELECT is(pg_temp.outcome('FD00FD01', '4444'), 'ok', 'five failures that span more than 15 minutes lock nothing');

-- ---------------------------------------------------------------- session expiry
INSERT INTO test.res SELECT 'idle', jsonb_build_object('token', pg_temp.sign_in('FB00FB01', '2222'));
UPDATE ledger.portal_session SET last_seen_at = now() - interval '29 minutes', created_at = now() - interval '11 hours'
 WHERE token_hash = sha256(convert_to(test.res('idle', 'token'), 'UTF8'));
SELECT lives_ok(format($$SELECT * FROM api.portal_balance(%L)$$, test.res('idle', 'token')),
                'used 29 minutes ago (and 11 hours old): still valid');
SELECT is((SELECT last_seen_at FROM ledger.portal_session WHERE token_hash = sha256(convert_to(test.res('idle', 'token'), 'UTF8'))),
          now(), 'the call touched last_seen_at');
UPDATE ledger.portal_session SET last_seen_at = now() - interval '30 minutes'
 WHERE token_hash = sha256(convert_to(test.res('idle', 'token'), 'UTF8'));
SELECT throws_ok(format($$SELECT * FROM api.portal_balance(%L)$$, test.res('idle', 'token')), 'FP074', NULL,
                 'idle for 30 minutes: portal-unauthenticated');
UPDATE ledger.portal_session SET last_seen_at = now() WHERE token_hash = sha256(convert_to(test.res('idle', 'token'), 'UTF8'));
SELECT lives_ok(format($$SELECT * FROM api.portal_balance(%L)$$, test.res('idle', 'token')), 'used just now: valid again');
UPDATE ledger.portal_session SET created_at = now() - interval '12 hours'
 WHERE token_hash = sha256(convert_to(test.res('idle', 'token'), 'UTF8'));
SELECT throws_ok(format($$SELECT * FROM api.portal_whoami(%L)$$, test.res('idle', 'token')), 'FP074', NULL,
                 '12 hours after sign-in: portal-unauthenticated, however busy');
SELECT throws_ok(format($$SELECT * FROM api.portal_history(%L)$$, test.res('idle', 'token')), 'FP074', NULL,
                 '... for the history too');
SELECT throws_ok(format($$SELECT api.portal_receipt(%L, %s)$$, test.res('idle', 'token'), test.v('sB')), 'FP074', NULL,
                 '... and for the receipts');
SELECT is(pg_temp.outcome('FB00FB01', '2222'), 'ok', 'signing in again works');
SELECT is((SELECT count(*)::integer FROM ledger.portal_session s JOIN ledger.tag g ON g.id = s.tag_id
            WHERE g.event_id = test.e() AND g.uid = 'FB00FB01' AND s.created_at <= now() - interval '12 hours'),
          0, 'a sign-in deletes the tag''s sessions older than 12 hours');

-- ---------------------------------------------------------------- sign-out
INSERT INTO test.res SELECT 'out', jsonb_build_object('token', pg_temp.sign_in('FA00FA01', '1111'));
SELECT lives_ok(format($$SELECT * FROM api.portal_whoami(%L)$$, test.res('out', 'token')), 'another session of A');
SELECT lives_ok(format($$SELECT api.portal_sign_out(%L)$$, test.res('out', 'token')), 'sign-out');
SELECT isnt((SELECT revoked_at FROM ledger.portal_session WHERE token_hash = sha256(convert_to(test.res('out', 'token'), 'UTF8'))),
            NULL, 'the session is revoked');
SELECT throws_ok(format($$SELECT * FROM api.portal_balance(%L)$$, test.res('out', 'token')), 'FP074', NULL,
                 'a signed-out session: portal-unauthenticated');
SELECT lives_ok(format($$SELECT * FROM api.portal_balance(%L)$$, test.res('a', 'token')), 'A''s other session lives on');
SELECT lives_ok($$SELECT api.portal_sign_out('no-such-token'), api.portal_sign_out(NULL)$$, 'signing out an unknown token is no error');
SELECT lives_ok(format($$SELECT api.portal_sign_out(%L)$$, test.res('out', 'token')), 'nor signing out twice');

-- ---------------------------------------------------------------- who may call the portal
-- ---------------------------------------------------------------- block my lost wristband, download my data
INSERT INTO test.res SELECT 'd', jsonb_build_object('token', pg_temp.sign_in('FD00FD01', '4444'));
CREATE TEMP TABLE audit_before AS SELECT coalesce(max(id), 0) AS id FROM ledger.admin_audit;
SELECT is(api.portal_block(test.res('d', 'token')), 'blocked', 'portal_block: D blocks its own tag');
SELECT is((SELECT status::text FROM ledger.tag WHERE event_id = test.e() AND uid = 'FD00FD01'), 'blocked', '... it is blocked at once');
SELECT is((SELECT status FROM api.portal_whoami(test.res('d', 'token'))), 'blocked', '... whoami says so, and D still signs in');
SELECT results_eq($$SELECT user_id, action, object, before, after FROM ledger.admin_audit WHERE id > (SELECT id FROM audit_before)$$,
                  $$VALUES (NULL::bigint, 'portal.block'::text, 'tag:FD00FD01'::text, '{"status": "active"}'::jsonb,
                            '{"status": "blocked", "by": "customer"}'::jsonb)$$,
                  'audited: portal.block of the tag, by no admin, status before and after');
SELECT is(api.portal_block(test.res('d', 'token')), 'blocked', 'blocking again: still blocked');
SELECT is((SELECT count(*)::integer FROM ledger.admin_audit WHERE id > (SELECT id FROM audit_before)), 1,
          '... and no second audit row');
SELECT is((SELECT string_agg(uid || ' ' || status, ',' ORDER BY uid) FROM ledger.tag WHERE event_id = test.e() AND uid <> 'FD00FD01'),
          'FA00FA01 active,FB00FB01 active,FC00FC01 active,FE00FE01 blocked', 'no other tag changed');
SELECT throws_ok($$SELECT api.portal_block('no-such-token')$$, 'FP074', NULL, 'portal_block without a session: portal-unauthenticated');
INSERT INTO test.res SELECT 'data a', api.portal_data(test.res('a', 'token'));
SELECT is((SELECT j FROM test.res WHERE k = 'data a') -> 'tag' ->> 'uid', 'FA00FA01', 'portal_data: the signed-in tag');
SELECT is((SELECT j FROM test.res WHERE k = 'data a') -> 'money', (SELECT to_jsonb(b) FROM api.portal_balance(test.res('a', 'token')) b), '... its money');
SELECT is(ARRAY(SELECT (x ->> 'transaction_id')::bigint FROM jsonb_array_elements((SELECT j FROM test.res WHERE k = 'data a') -> 'transactions') x),
          ARRAY(SELECT transaction_id FROM api.portal_history(test.res('a', 'token'))), '... its whole history, with items');
SELECT ok((SELECT j FROM test.res WHERE k = 'data a') -> 'transactions' @> jsonb_build_array(jsonb_build_object('transaction_id', test.v('sA')))
          AND NOT (SELECT j FROM test.res WHERE k = 'data a') -> 'transactions' @> jsonb_build_array(jsonb_build_object('transaction_id', test.v('sB'))),
          '... A''s sale, not B''s');
SELECT is(jsonb_array_length((SELECT j FROM test.res WHERE k = 'data a') -> 'sessions'),
          (SELECT count(*)::integer FROM ledger.portal_session s JOIN ledger.tag g ON g.id = s.tag_id WHERE g.event_id = test.e() AND g.uid = 'FA00FA01'),
          '... its own sessions only');
SELECT ok(position(test.res('a', 'token') IN (SELECT j FROM test.res WHERE k = 'data a')::text) = 0 AND (SELECT j FROM test.res WHERE k = 'data a')::text !~ '\$2[aby]\$|token|hash',
          '... with no token, no hash, no PIN');
SELECT throws_ok($$SELECT api.portal_data('no-such-token')$$, 'FP074', NULL, 'portal_data without a session: portal-unauthenticated');

-- ---------------------------------------------------------------- top-up limits, paid out, how long bank data is kept
-- The event's online top-up fee is 0,30 from here on. H F100F101 (PIN 7777) has 450,00, near the highest balance of
-- 500,00; G F200F201 (PIN 7777) has 20,00 and asks for its payout.
UPDATE ledger.event SET topup_fee_online = 30 WHERE id = test.e();
INSERT INTO test.ctx SELECT format('funded %s %s', x.u, x.a), test.funded_tag(test.e(), x.u, x.a)
  FROM (VALUES ('F100F101', 25000), ('F100F101', 20000), ('F200F201', 2000)) x(u, a);
UPDATE ledger.tag SET pin_hash = extensions.crypt('7777', extensions.gen_salt('bf', 4))
 WHERE event_id = test.e() AND uid IN ('F100F101', 'F200F201');
INSERT INTO test.res SELECT k, jsonb_build_object('token', pg_temp.sign_in(u, '7777'))
  FROM (VALUES ('h', 'F100F101'), ('g', 'F200F201')) x(k, u);
SELECT results_eq(format($$SELECT * FROM api.portal_topup_limits(%L)$$, test.res('a', 'token')),
                  $$VALUES ('EUR'::text, 500::bigint, 25000::bigint, 30::bigint, 50000::bigint, 25000::bigint)$$,
                  'top-up limits for A: 5,00 to 250,00, fee 0,30, highest balance 500,00; A''s 92,00 allows the largest top-up');
SELECT results_eq(format($$SELECT * FROM api.portal_topup_limits(%L)$$, test.res('h', 'token')),
                  $$VALUES ('EUR'::text, 500::bigint, 25000::bigint, 30::bigint, 50000::bigint, 5030::bigint)$$,
                  'H has 450,00: at most 50,30 now (the fee is taken from the amount)');
SELECT lives_ok(format($$SELECT * FROM api.portal_topup_start(%L, 5030)$$, test.res('h', 'token')),
                'the largest top-up the page states for H is accepted');
SELECT throws_ok(format($$SELECT * FROM api.portal_topup_start(%L, 5031)$$, test.res('h', 'token')), 'FP021', NULL,
                 '... a cent more is max-balance-exceeded');
SELECT throws_ok(format($$SELECT * FROM api.portal_topup_start(%L, 499)$$, test.res('a', 'token')), 'FP022', NULL,
                 'a cent below the smallest top-up the page states is topup-out-of-bounds');
INSERT INTO test.ctx SELECT 'user ' || role, user_id FROM test.admin_sessions('pgtap-portal-');
DO $$
BEGIN
    PERFORM api.portal_payout_set(test.res('g', 'token'), 'DE89370400440532013000', 'Gina Gold', 'gina@example.org', 'none', NULL);
    PERFORM api.admin_event_update(test.admin_token('admin'),
        '{"payout_debtor_name": "Festival GmbH", "payout_debtor_iban": "DE02120300000000202051", "payout_debtor_bic": "BYLADEM1001"}');
END $$;
INSERT INTO test.ctx SELECT 'run 1', api.admin_payout_run_create(test.admin_token('finance'), 10, 100000, current_date);
SELECT results_eq(format($$SELECT balance, held, available, paid_out FROM api.portal_balance(%L)$$, test.res('g', 'token')),
                  $$VALUES (2000::bigint, 2000::bigint, 0::bigint, false)$$,
                  'G in an open payout run: its 20,00 is held for the run (available 0,00), not paid out yet');
DO $$ BEGIN PERFORM api.admin_payout_run_revoke(test.admin_token('finance'), test.v('run 1'), 'wrong date'); END $$;
SELECT results_eq(format($$SELECT held, paid_out FROM api.portal_balance(%L)$$, test.res('g', 'token')),
                  $$VALUES (0::bigint, false)$$, 'the run revoked: nothing held, not paid out');
INSERT INTO test.ctx SELECT 'run 2', api.admin_payout_run_create(test.admin_token('finance'), 10, 100000, current_date);
SELECT lives_ok(format($$SELECT api.admin_payout_run_done(%L, %s)$$, test.admin_token('finance'), test.v('run 2')),
                'another run takes G and is done');
SELECT results_eq(format($$SELECT balance, held, paid_out FROM api.portal_balance(%L)$$, test.res('g', 'token')),
                  $$VALUES (0::bigint, 0::bigint, true)$$, 'G is paid out: balance 0,00');
SELECT results_eq(format($$SELECT b.paid_out, w.status FROM api.portal_balance(%1$L) b, api.portal_whoami(%1$L) w$$,
                         pg_temp.sign_in('FE00FE01', '5555')),
                  $$VALUES (false, 'blocked'::text)$$, 'E, blocked but never paid out, is not paid out');
SELECT is((SELECT paid_out FROM api.portal_balance(test.res('a', 'token'))), false, 'nor is A');
SELECT is((api.portal_data(test.res('a', 'token')) -> 'payout' ->> 'retention_days')::integer, 90,
          'portal_data: bank data is kept 90 days after the payout (the event''s payout_retention)');
UPDATE ledger.event SET payout_retention = interval '36 hours' WHERE id = test.e();
SELECT is((api.portal_data(test.res('a', 'token')) -> 'payout' ->> 'retention_days')::integer, 2,
          '... in whole days, rounded up: 36 hours are 2 days');

CREATE TEMP TABLE calls (fn text PRIMARY KEY, call text NOT NULL);
INSERT INTO calls VALUES
    ('api.portal_sign_in',  $$SELECT * FROM api.portal_sign_in('FA00FA01', '1111', 'pgTAP')$$),
    ('api.portal_sign_out', format($$SELECT api.portal_sign_out(%L)$$, pg_temp.sign_in('FA00FA01', '1111'))),
    ('api.portal_whoami',   format($$SELECT * FROM api.portal_whoami(%L)$$, test.res('a', 'token'))),
    ('api.portal_balance',  format($$SELECT * FROM api.portal_balance(%L)$$, test.res('a', 'token'))),
    ('api.portal_topup_limits', format($$SELECT * FROM api.portal_topup_limits(%L)$$, test.res('a', 'token'))),
    ('api.portal_history',  format($$SELECT * FROM api.portal_history(%L)$$, test.res('a', 'token'))),
    ('api.portal_receipt',  format($$SELECT api.portal_receipt(%L, %s)$$, test.res('a', 'token'), test.v('sA'))),
    ('api.portal_block',    format($$SELECT api.portal_block(%L)$$, test.res('a', 'token'))),
    ('api.portal_data',     format($$SELECT api.portal_data(%L)$$, test.res('a', 'token')));
SELECT is(test.as_role('festpay_web', c.call), 'ok', format('festpay_web may call %s', c.fn)) FROM calls c ORDER BY c.fn;
SELECT is_empty($$SELECT c.fn, r, test.as_role(r, c.call) FROM calls c, unnest(ARRAY['festpay_terminal', 'festpay_relay', 'festpay_report']) r
                   WHERE test.as_role(r, c.call) <> '42501'$$,
                'festpay_terminal, festpay_relay and festpay_report are refused every portal function (42501)');
SELECT is(test.as_role('festpay_web', $$SELECT * FROM api.portal_balance('no-such-token')$$), 'FP074',
          'festpay_web without a session: portal-unauthenticated');
SELECT is(test.as_role('festpay_web', format($$SELECT api.portal_receipt(%L, %s)$$, test.res('a', 'token'), test.v('sB'))), 'FP010',
          'festpay_web with A''s session asking for B''s receipt: not-found');

-- ---------------------------------------------------------------- hashes: only the owner reads them
SELECT is(test.as_role('festpay_web', 'SELECT token_hash FROM ledger.portal_session'), '42501',
          'festpay_web cannot read portal session hashes');
SELECT is(test.as_role('festpay_web', 'SELECT pin_hash FROM ledger.tag'), '42501', 'festpay_web cannot read PIN hashes');
SELECT is(test.as_role('festpay_web', 'SELECT * FROM ledger.portal_sign_in_failure'), '42501',
          'festpay_web cannot read sign-in failures');
SELECT is_empty($$SELECT r.rolname, c.relname FROM pg_roles r, pg_class c
                   WHERE c.oid IN ('ledger.portal_session'::regclass, 'ledger.portal_sign_in_failure'::regclass, 'ledger.tag'::regclass)
                     AND r.rolname <> 'festpay_owner' AND NOT r.rolsuper AND r.rolname !~ '^pg_'
                     AND has_table_privilege(r.oid, c.oid, 'SELECT')$$,
                'no role but the owner may SELECT portal sessions, failures or tags (superusers and pg_read_all_data aside)');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND p.proname LIKE 'portal%'
                   AND (p.proargnames && ARRAY['pin_hash', 'token_hash'] OR pg_get_function_result(p.oid) ~ 'hash|pin')$$,
                'no portal function answers with a hash or a PIN');

SELECT * FROM finish();
ROLLBACK;
