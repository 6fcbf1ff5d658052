-- Online top-up through the payment provider (procedures/74_online_topup.sql): a portal session starts it (limits of
-- api.external_topup_create), moves it to ExternalPending with the relay's poll enqueued, records the provider's
-- checkout id; api.external_topup_settle, keyed by the checkout reference, books once however often it is called
-- (paid twice, then declined: duplicate, rejected), declined aborts and books nothing; another tag's top-up is
-- not-found; only festpay_web and festpay_relay may settle; the poll's backoff and done marks.
BEGIN;
SELECT plan(33);

CREATE FUNCTION pg_temp.as_role(p_role text, p_sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql;
        RAISE EXCEPTION USING ERRCODE = 'P0099';
    EXCEPTION
        WHEN SQLSTATE 'P0099' THEN RETURN 'ok';
        WHEN OTHERS THEN RETURN SQLSTATE;
    END;
END $$;
CREATE FUNCTION pg_temp.ref(p_k text) RETURNS text LANGUAGE sql AS $$
    SELECT test.res(p_k, 'reference') $$;
CREATE FUNCTION pg_temp.tx(p_k text) RETURNS bigint LANGUAGE sql AS $$
    SELECT test.res(p_k, 'transaction_id')::bigint $$;
CREATE FUNCTION pg_temp.outbox(p_k text) RETURNS TABLE (id bigint, done boolean, attempts integer) LANGUAGE sql AS $$
    SELECT o.id, o.done_at IS NOT NULL, o.attempts FROM ledger.outbox o WHERE o.topic = 'provider' AND o.transaction_id = pg_temp.tx(p_k) $$;

-- ---------------------------------------------------------------- fixtures: A (PIN 1111, 300,00), B (PIN 2222, 10,00)
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP online top-up');
INSERT INTO test.ctx SELECT 'funded ' || u || n, test.funded_tag(test.e(), u, a) FROM (VALUES ('FA00FA01', 25000, 1), ('FA00FA01', 5000, 2), ('FB00FB01', 1000, 1)) x(u, a, n);
UPDATE ledger.tag g SET pin_hash = extensions.crypt(x.pin, extensions.gen_salt('bf', 4))
  FROM (VALUES ('FA00FA01', '1111'), ('FB00FB01', '2222')) x(u, pin) WHERE g.event_id = test.e() AND g.uid = x.u;
INSERT INTO test.res SELECT 'a', to_jsonb(s) FROM api.portal_sign_in('FA00FA01', '1111') s;
INSERT INTO test.res SELECT 'b', to_jsonb(s) FROM api.portal_sign_in('FB00FB01', '2222') s;
INSERT INTO test.ctx SELECT 'fee', ledger.topup_fee(test.e(), 'online');

-- ---------------------------------------------------------------- start: limits, Open, a reference
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = (SELECT pg_temp.as_role('postgres', 'SELECT * FROM api.portal_topup_start(test.res(''a'', ''token''), 100)'))),
          'topup-out-of-bounds', 'the minimum is the event''s rule: topup-out-of-bounds');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = (SELECT pg_temp.as_role('postgres', 'SELECT * FROM api.portal_topup_start(test.res(''a'', ''token''), 25000)'))),
          'max-balance-exceeded', 'above the maximum balance: max-balance-exceeded');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = (SELECT pg_temp.as_role('postgres', 'SELECT * FROM api.portal_topup_start(''nope'', 2000)'))),
          'portal-unauthenticated', 'without a session: portal-unauthenticated');
SELECT lives_ok($$INSERT INTO test.res SELECT 'p', to_jsonb(s) FROM api.portal_topup_start(test.res('a', 'token'), 2000) s$$, 'A starts a top-up of 20,00');
SELECT ok(pg_temp.ref('p') ~ '^ft_[0-9a-f]{32}$', 'its checkout reference is ft_ and 16 random bytes');
SELECT results_eq($$SELECT test.res('p', 'amount'), test.res('p', 'currency')$$, $$VALUES ('2000'::text, 'EUR'::text)$$, 'amount and currency');
SELECT is(test.state(pg_temp.tx('p')), 'Open', 'the top-up is Open');
SELECT is((SELECT status FROM api.portal_topup_status(test.res('a', 'token'), pg_temp.ref('p'))), 'pending', 'the visitor sees pending');

-- ---------------------------------------------------------------- pending, checkout id
SELECT results_eq($$SELECT state, outcome FROM api.portal_topup_pending(test.res('a', 'token'), pg_temp.ref('p'))$$,
                  $$VALUES ('ExternalPending'::text, 'booked'::text)$$, 'Open -> ExternalPending before the redirect');
SELECT results_eq($$SELECT done, attempts FROM pg_temp.outbox('p')$$, $$VALUES (false, 0)$$, 'the relay''s poll is enqueued (topic provider)');
SELECT is((SELECT ordering_key::text FROM ledger.outbox WHERE id = (SELECT id FROM pg_temp.outbox('p'))), pg_temp.ref('p'), 'its ordering key is the reference');
SELECT lives_ok($$SELECT api.portal_topup_checkout(test.res('a', 'token'), pg_temp.ref('p'), 'co_1')$$, 'the checkout id is recorded');
SELECT lives_ok($$SELECT api.portal_topup_checkout(test.res('a', 'token'), pg_temp.ref('p'), 'co_1')$$, 'the same id again is fine');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = pg_temp.as_role('postgres', format('SELECT api.portal_topup_checkout(%L, %L, ''co_2'')', test.res('a', 'token'), pg_temp.ref('p')))),
          'validation', 'another checkout id is refused');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = pg_temp.as_role('postgres', format('SELECT * FROM api.portal_topup_status(%L, %L)', test.res('b', 'token'), pg_temp.ref('p')))),
          'not-found', 'B cannot see A''s top-up');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = pg_temp.as_role('postgres', format('SELECT * FROM api.portal_topup_pending(%L, %L)', test.res('b', 'token'), pg_temp.ref('p')))),
          'not-found', 'nor move it');

-- ---------------------------------------------------------------- poll bookkeeping
SELECT results_eq($$SELECT reference, checkout_id, state FROM api.provider_request((SELECT id FROM pg_temp.outbox('p')))$$,
                  $$VALUES (pg_temp.ref('p'), 'co_1'::text, 'ExternalPending'::text)$$, 'the relay learns what to poll');
SELECT ok((SELECT api.provider_failed((SELECT id FROM pg_temp.outbox('p')), 'pending')) > now(), 'still pending: retried later');
SELECT results_eq($$SELECT done, attempts FROM pg_temp.outbox('p')$$, $$VALUES (false, 1)$$, 'one attempt counted, not done');

-- ---------------------------------------------------------------- settle: once
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = pg_temp.as_role('postgres', format('SELECT * FROM api.external_topup_settle(%L, ''maybe'')', pg_temp.ref('p')))),
          'validation', 'a result other than paid or declined is refused');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = pg_temp.as_role('postgres', format('SELECT * FROM api.external_topup_settle(%L, ''paid'', ''co_9'')', pg_temp.ref('p')))),
          'not-found', 'a webhook naming another checkout id settles nothing');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('p'), 'paid', 'co_1')$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'paid: Committed, booked');
SELECT is(test.balance(test.e(), 'FA00FA01'), 30000 + 2000 - test.v('fee'), 'A''s balance grew by the top-up less its fee');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('p'), 'paid')$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text)$$, 'paid again (a second webhook, a poll): duplicate');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_settle(pg_temp.ref('p'), 'declined')$$,
                  $$VALUES ('Committed'::text, 'rejected'::text, 'invalid-transition'::text)$$, 'declined after paid is rejected (logged)');
SELECT is(test.balance(test.e(), 'FA00FA01'), 30000 + 2000 - test.v('fee'), 'booked once');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('p')$$, $$VALUES (true)$$, 'the poll is done');
SELECT is((SELECT status FROM api.portal_topup_status(test.res('a', 'token'), pg_temp.ref('p'))), 'paid', 'the visitor sees paid');

-- ---------------------------------------------------------------- declined; cancel before a checkout
INSERT INTO test.res SELECT 'd', to_jsonb(s) FROM api.portal_topup_start(test.res('a', 'token'), 1000) s;
DO $$ BEGIN PERFORM api.portal_topup_pending(test.res('a', 'token'), pg_temp.ref('d')); END $$;
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('d'), 'declined')$$,
                  $$VALUES ('Aborted'::text, 'booked'::text)$$, 'declined: Aborted');
SELECT is(test.balance(test.e(), 'FA00FA01'), 30000 + 2000 - test.v('fee'), 'nothing booked for the declined one');
INSERT INTO test.res SELECT 'c', to_jsonb(s) FROM api.portal_topup_start(test.res('a', 'token'), 1000) s;
DO $$ BEGIN PERFORM api.portal_topup_pending(test.res('a', 'token'), pg_temp.ref('c')); END $$;
SELECT results_eq($$SELECT state FROM api.portal_topup_cancel(test.res('a', 'token'), pg_temp.ref('c'))$$,
                  $$VALUES ('Aborted'::text)$$, 'no checkout created: the portal aborts it');

-- ---------------------------------------------------------------- who may call
SELECT results_eq($$SELECT pg_temp.as_role(r, format('SELECT * FROM api.external_topup_settle(%L, ''paid'')', pg_temp.ref('p'))) FROM unnest(ARRAY['festpay_web', 'festpay_relay', 'festpay_terminal', 'festpay_report']) r$$,
                  $$VALUES ('ok'::text), ('ok'), ('42501'), ('42501')$$, 'only the web and relay roles settle');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'the invariants hold');

SELECT * FROM finish();
ROLLBACK;
