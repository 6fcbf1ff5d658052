-- Online top-up through the payment provider (procedures/74_online_topup.sql): a portal session starts it (limits of
-- api.external_topup_create), moves it to ExternalPending with the relay's poll enqueued, records the provider's
-- checkout id; api.external_topup_settle, keyed by the checkout reference, books once however often it is called
-- (paid twice, then declined: duplicate, rejected), declined aborts and books nothing; another tag's top-up is
-- not-found; only festpay_web and festpay_relay may settle; the poll's backoff and done marks.
-- Outcomes: past the event's check window (an admin setting) a checkout without an answer becomes ExternalUnknown, is
-- polled on and shown as pending, in the admin queue with what the relay last heard from the provider; a late paid or
-- declined settles it; an admin may only abort it (only the provider's paid books an online top-up), and the relay
-- polls on for the provider's final answer (declined: recorded, the poll ends; paid: refund due) until 7 days after
-- the checkout was created; a checkout the provider never created is not polled. A payment the provider reports as
-- paid that cannot be booked (tag blocked, maximum balance, top-up aborted by an admin) books nothing: Aborted, refund
-- due, in the admin queue; a support admin asks for the refund (audited, once), the relay's request carries it out and
-- records refunded or refused; the visitor sees it being refunded, then refunded.
BEGIN;
SELECT plan(130);

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
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = (SELECT test.as_role('postgres', 'SELECT * FROM api.portal_topup_start(test.res(''a'', ''token''), 100)'))),
          'topup-out-of-bounds', 'the minimum is the event''s rule: topup-out-of-bounds');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = (SELECT test.as_role('postgres', 'SELECT * FROM api.portal_topup_start(test.res(''a'', ''token''), 25000)'))),
          'max-balance-exceeded', 'above the maximum balance: max-balance-exceeded');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = (SELECT test.as_role('postgres', 'SELECT * FROM api.portal_topup_start(''nope'', 2000)'))),
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
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = test.as_role('postgres', format('SELECT api.portal_topup_checkout(%L, %L, ''co_2'')', test.res('a', 'token'), pg_temp.ref('p')))),
          'validation', 'another checkout id is refused');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = test.as_role('postgres', format('SELECT * FROM api.portal_topup_status(%L, %L)', test.res('b', 'token'), pg_temp.ref('p')))),
          'not-found', 'B cannot see A''s top-up');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = test.as_role('postgres', format('SELECT * FROM api.portal_topup_pending(%L, %L)', test.res('b', 'token'), pg_temp.ref('p')))),
          'not-found', 'nor move it');

-- ---------------------------------------------------------------- poll bookkeeping
SELECT results_eq($$SELECT reference, checkout_id, state FROM api.provider_request((SELECT id FROM pg_temp.outbox('p')))$$,
                  $$VALUES (pg_temp.ref('p'), 'co_1'::text, 'ExternalPending'::text)$$, 'the relay learns what to poll');
SELECT ok((SELECT api.provider_failed((SELECT id FROM pg_temp.outbox('p')), 'pending')) > now(), 'still pending: retried later');
SELECT results_eq($$SELECT done, attempts FROM pg_temp.outbox('p')$$, $$VALUES (false, 1)$$, 'one attempt counted, not done');

-- ---------------------------------------------------------------- settle: once
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = test.as_role('postgres', format('SELECT * FROM api.external_topup_settle(%L, ''maybe'')', pg_temp.ref('p')))),
          'validation', 'a result other than paid or declined is refused');
SELECT is((SELECT slug FROM ledger.problem WHERE sqlstate = test.as_role('postgres', format('SELECT * FROM api.external_topup_settle(%L, ''paid'', ''co_9'')', pg_temp.ref('p')))),
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
SELECT results_eq($$SELECT done FROM pg_temp.outbox('c')$$, $$VALUES (true)$$, 'and nobody polls the provider for it');

-- ---------------------------------------------------------------- the check window: ExternalUnknown, polled on
CREATE FUNCTION pg_temp.open_topup(p_k text, p_tag text, p_amount bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test.res SELECT p_k, to_jsonb(s) FROM api.portal_topup_start(test.res(p_tag, 'token'), p_amount) s;
    PERFORM api.portal_topup_pending(test.res(p_tag, 'token'), pg_temp.ref(p_k));
    PERFORM api.portal_topup_checkout(test.res(p_tag, 'token'), pg_temp.ref(p_k), 'co_' || p_k);
END $$;
CREATE FUNCTION pg_temp.age(p_k text, p_age interval) RETURNS void LANGUAGE sql AS $$
    UPDATE ledger.external_checkout SET created_at = now() - p_age WHERE reference = pg_temp.ref(p_k) $$;
CREATE FUNCTION pg_temp.poll_failed(p_k text) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT api.provider_failed((SELECT id FROM pg_temp.outbox(p_k)), 'checkout is pending') $$;
CREATE FUNCTION pg_temp.checkout(p_k text) RETURNS ledger.external_checkout LANGUAGE sql AS $$
    SELECT * FROM ledger.external_checkout WHERE reference = pg_temp.ref(p_k) $$;
CREATE FUNCTION pg_temp.refund(p_k text) RETURNS text LANGUAGE sql AS $$
    SELECT (pg_temp.checkout(p_k)).refund_state $$;
INSERT INTO test.ctx SELECT 'user ' || role, user_id FROM test.admin_sessions('pgtap-ot-');

DO $$ BEGIN PERFORM pg_temp.open_topup('w', 'a', 1000); END $$;
SELECT ok(pg_temp.poll_failed('w') > now(), 'no answer yet: polled again later');
SELECT is(test.state(pg_temp.tx('w')), 'ExternalPending', 'inside the check window it stays ExternalPending');
DO $$ BEGIN PERFORM pg_temp.age('w', interval '31 minutes'); END $$;
SELECT ok(pg_temp.poll_failed('w') > now(), 'no answer past the window: still polled again later');
SELECT is(test.state(pg_temp.tx('w')), 'ExternalUnknown', 'past the event''s check window (30 minutes by default): ExternalUnknown');
SELECT results_eq($$SELECT c.from_state::text, c.to_state::text, c.actor FROM ledger.transaction t, unnest(t.state_changes) WITH ORDINALITY c(from_state, to_state, at, actor, n) WHERE t.id = pg_temp.tx('w') ORDER BY c.n DESC LIMIT 1$$,
                  $$VALUES ('ExternalPending'::text, 'ExternalUnknown'::text, session_user::text COLLATE "default")$$, 'the change is logged in state_changes, by the relay''s login');
SELECT results_eq($$SELECT done, attempts FROM pg_temp.outbox('w')$$, $$VALUES (false, 2)$$, 'the poll goes on');
SELECT results_eq($$SELECT state, action FROM api.provider_request((SELECT id FROM pg_temp.outbox('w')))$$,
                  $$VALUES ('ExternalUnknown'::text, 'poll'::text)$$, 'the relay keeps polling an ExternalUnknown checkout');
SELECT is((SELECT kind FROM api.admin_queue(test.admin_token('viewer')) WHERE transaction_id = pg_temp.tx('w')), 'external-unknown', 'the admin queue lists it');
SELECT results_eq($$SELECT detail ->> 'reference', detail ->> 'checkout_id', (detail ->> 'checks')::integer, detail ->> 'last_answer',
                           (detail ->> 'next_check')::timestamptz > now()
                      FROM api.admin_queue(test.admin_token('viewer')) WHERE transaction_id = pg_temp.tx('w')$$,
                  $$VALUES (pg_temp.ref('w'), 'co_w'::text, 2, 'checkout is pending'::text, true)$$,
                  '... with what the relay last heard: the checkout, 2 checks, the provider''s last answer, the next check');
SELECT is((SELECT status FROM api.portal_topup_status(test.res('a', 'token'), pg_temp.ref('w'))), 'pending', 'the visitor still sees pending, never failed');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('w'), 'paid', 'co_w')$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'a late paid: ExternalUnknown -> Committed');
SELECT is(test.balance(test.e(), 'FA00FA01'), 33000 - 2 * test.v('fee'), 'booked once');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('w')$$, $$VALUES (true)$$, 'the poll ends');

-- the window is an event setting of the admin site
SELECT is(api.admin_event_update(test.admin_token('admin'), '{"provider_check_window_s": "600"}') -> 'provider_check_window_s', '600'::jsonb,
          'an admin sets the check window (seconds)');
SELECT is((SELECT provider_check_window FROM ledger.event WHERE id = test.e()), interval '10 minutes', 'the event row has it');
SELECT is(test.last_change(), '{"before": {"provider_check_window_s": 1800}, "after": {"provider_check_window_s": 600}}'::jsonb, 'audited');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"provider_check_window_s": 0}')$$, test.admin_token('admin')), 'FP001',
                 'validation: the online payment check window must be 1 to 604800 seconds', 'a window of 0 is refused');
DO $$ BEGIN PERFORM pg_temp.open_topup('l', 'a', 1000); END $$;
DO $$ BEGIN PERFORM pg_temp.age('l', interval '11 minutes'); END $$;
DO $$ BEGIN PERFORM pg_temp.poll_failed('l'); END $$;
SELECT is(test.state(pg_temp.tx('l')), 'ExternalUnknown', 'the changed window is the one checked');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('l'), 'declined', 'co_l')$$,
                  $$VALUES ('Aborted'::text, 'booked'::text)$$, 'a late declined: ExternalUnknown -> Aborted');
SELECT is((SELECT status FROM api.portal_topup_status(test.res('a', 'token'), pg_temp.ref('l'))), 'declined', 'the visitor sees declined');

-- an admin decides an unknown one (abort only); the relay polls on for the provider's final answer: a paid after the
-- abort is refunded, not booked
DO $$ BEGIN PERFORM pg_temp.open_topup('r', 'a', 1000); END $$;
DO $$ BEGIN PERFORM pg_temp.age('r', interval '11 minutes'); END $$;
DO $$ BEGIN PERFORM pg_temp.poll_failed('r'); END $$;
INSERT INTO test.ctx SELECT 'audits r', test.audits();
INSERT INTO test.ctx SELECT 'bal r', test.balance(test.e(), 'FA00FA01');
SELECT throws_ok(format($$SELECT api.admin_queue_resolve(%L, %s, 'Committed', 'the visitor says it is paid')$$, test.admin_token('support'), pg_temp.tx('r')),
                 'FP001', 'validation: the provider has not reported this online top-up paid, so it cannot be booked: abort it (a payment the '
                          'provider reports later is then refunded: it comes back to this queue as a refund) or wait for the provider''s answer',
                 'support cannot commit an ExternalUnknown online top-up: only the provider''s paid books it');
SELECT is(test.error_detail(format($$SELECT api.admin_queue_resolve(%L, %s, 'Committed', 'x')$$, test.admin_token('admin'), pg_temp.tx('r'))) ->> 'field',
          'outcome', '... not even an admin: a validation error on the field outcome');
SELECT is(test.error_detail(format($$SELECT * FROM api.resolve_transaction(%s, 'Committed', 'x')$$, pg_temp.tx('r'))) ->> 'field',
          'outcome', '... nor a DBA through api.resolve_transaction: the rule is ledger.resolve''s');
SELECT is(test.as_web(format($$SELECT api.admin_queue_resolve(%%1$s, %s, 'Committed', 'x')$$, pg_temp.tx('r')), 'support'), 'FP001',
          '... nor through the admin site''s login');
SELECT results_eq($$SELECT test.state(pg_temp.tx('r')), test.balance(test.e(), 'FA00FA01'), test.audits()$$,
                  $$VALUES ('ExternalUnknown'::text, test.v('bal r'), test.v('audits r'))$$,
                  '... nothing booked, still ExternalUnknown, no audit row');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('r')$$, $$VALUES (false)$$, '... and the provider is still asked');
SELECT is(api.admin_queue_resolve(test.admin_token('support'), pg_temp.tx('r'), 'Aborted', 'the provider has no record'), 'Aborted', 'support aborts the ExternalUnknown top-up');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('r')$$, $$VALUES (false)$$, 'the provider has not answered: its request stays open');
SELECT results_eq($$SELECT state, action FROM api.provider_request((SELECT id FROM pg_temp.outbox('r')))$$,
                  $$VALUES ('Aborted'::text, 'poll'::text)$$, 'the relay keeps polling the aborted checkout for the provider''s final answer');
SELECT ok(pg_temp.poll_failed('r') > now(), '... with its backoff while the provider has no answer');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_settle(pg_temp.ref('r'), 'paid', 'co_r')$$,
                  $$VALUES ('Aborted'::text, 'refund-due'::text, NULL::text)$$, 'paid after the admin''s abort: stays Aborted, refund due');
SELECT results_eq($$SELECT refund_state, refund_reason, result FROM pg_temp.checkout('r')$$,
                  $$VALUES ('due'::text, 'aborted'::text, 'paid'::text)$$, 'the checkout records the refund due and why');
SELECT is(test.balance(test.e(), 'FA00FA01'), test.v('bal r'), 'nothing booked');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('r'), 'paid', 'co_r')$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text)$$, 'paid again: a duplicate, one refund due');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('r')$$, $$VALUES (true)$$, 'the poll ends: the refund waits for an admin');
SELECT is((SELECT kind FROM api.admin_queue(test.admin_token('viewer')) WHERE transaction_id = pg_temp.tx('r')), 'provider-refund',
          'the queue lists it to refund');

-- the provider's declined after an admin's abort: its expected final answer, recorded without a violation
DO $$ BEGIN PERFORM pg_temp.open_topup('x', 'a', 1000); PERFORM pg_temp.age('x', interval '11 minutes'); PERFORM pg_temp.poll_failed('x'); END $$;
SELECT is(api.admin_queue_resolve(test.admin_token('support'), pg_temp.tx('x'), 'Aborted', 'the visitor gave up'), 'Aborted', 'support aborts another ExternalUnknown top-up');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('x')$$, $$VALUES (false)$$, 'its provider request stays open');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_settle(pg_temp.ref('x'), 'declined', 'co_x')$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text, NULL::text)$$, 'the provider''s declined after the abort: Aborted already, a duplicate, no invalid-transition');
SELECT results_eq($$SELECT result, settled_at IS NOT NULL, refund_state FROM pg_temp.checkout('x')$$,
                  $$VALUES ('declined'::text, true, NULL::text)$$, 'the checkout records the provider''s final answer; nothing to refund');
SELECT is_empty(format('SELECT * FROM ledger.violation WHERE transaction_id = %s', pg_temp.tx('x')), 'no violation is logged');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('x')$$, $$VALUES (true)$$, 'and the poll ends');
SELECT results_eq($$SELECT test.state(pg_temp.tx('x')), test.balance(test.e(), 'FA00FA01')$$, $$VALUES ('Aborted'::text, test.v('bal r'))$$,
                  'nothing else changes: Aborted, nothing booked');
SELECT is_empty(format('SELECT * FROM api.admin_queue(%L) WHERE transaction_id = %s', test.admin_token('viewer'), pg_temp.tx('x')), 'nothing waits in the queue');

-- a provider that has not decided a checkout 7 days after it was created will not: the poll ends
DO $$ BEGIN PERFORM pg_temp.open_topup('y', 'a', 1000); PERFORM pg_temp.age('y', interval '11 minutes'); PERFORM pg_temp.poll_failed('y'); END $$;
DO $$ BEGIN PERFORM api.admin_queue_resolve(test.admin_token('support'), pg_temp.tx('y'), 'Aborted', 'no answer'); END $$;
DO $$ BEGIN PERFORM pg_temp.age('y', interval '7 days' - interval '1 minute'); END $$;
SELECT results_eq($$SELECT state, action FROM api.provider_request((SELECT id FROM pg_temp.outbox('y')))$$,
                  $$VALUES ('Aborted'::text, 'poll'::text)$$, 'just under 7 days after the checkout was created the provider is still asked');
DO $$ BEGIN PERFORM pg_temp.age('y', interval '7 days 1 minute'); END $$;
SELECT is(pg_temp.poll_failed('y'), NULL, 'past 7 days a poll without an answer is not retried');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('y')$$, $$VALUES (true)$$, 'the request is done');
SELECT results_eq($$SELECT action FROM api.provider_request((SELECT id FROM pg_temp.outbox('y')))$$,
                  $$VALUES (NULL::text)$$, 'nothing is left to ask the provider');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('y'), 'paid', 'co_y')$$,
                  $$VALUES ('Aborted'::text, 'refund-due'::text)$$, 'a paid webhook arriving even later still makes the refund due');

-- an admin's abort of a checkout whose provider checkout id was never recorded: nothing to poll it by
INSERT INTO test.res SELECT 'n', to_jsonb(s) FROM api.portal_topup_start(test.res('a', 'token'), 1000) s;
DO $$ BEGIN PERFORM api.portal_topup_pending(test.res('a', 'token'), pg_temp.ref('n')); PERFORM pg_temp.age('n', interval '11 minutes'); PERFORM pg_temp.poll_failed('n'); END $$;
SELECT is(api.admin_queue_resolve(test.admin_token('support'), pg_temp.tx('n'), 'Aborted', 'no checkout id'), 'Aborted', 'support aborts an ExternalUnknown top-up without a checkout id');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('n')$$, $$VALUES (true)$$, 'its request ends: there is no checkout to ask about');

-- ---------------------------------------------------------------- paid but not bookable: tag blocked, maximum balance
DO $$ BEGIN PERFORM pg_temp.open_topup('k', 'b', 1000); END $$;
SELECT is(api.set_tag_blocked(test.e(), 'FB00FB01', true), 'blocked', 'B''s tag is blocked while the payment is under way');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_settle(pg_temp.ref('k'), 'paid', 'co_k')$$,
                  $$VALUES ('Aborted'::text, 'refund-due'::text, 'tag-blocked'::text)$$, 'paid on a blocked tag: Aborted, refund due');
SELECT results_eq($$SELECT test.balance(test.e(), 'FB00FB01'), (SELECT count(*) FROM ledger.booking WHERE transaction_id = pg_temp.tx('k'))$$,
                  $$VALUES (1000::bigint, 0::bigint)$$, 'nothing booked');
SELECT results_eq($$SELECT refund_state, refund_reason FROM pg_temp.checkout('k')$$, $$VALUES ('due'::text, 'tag-blocked'::text)$$, 'refund due: tag-blocked');
SELECT results_eq($$SELECT kind, uid, amount, detail ->> 'reason', detail ->> 'refund' FROM api.admin_queue(test.admin_token('viewer')) WHERE transaction_id = pg_temp.tx('k')$$,
                  $$VALUES ('provider-refund'::text, 'FB00FB01'::text, 1000::bigint, 'tag-blocked'::text, 'due'::text)$$, 'the admin queue lists it to refund: amount, tag, reason');
SELECT results_eq($$SELECT status, refund_reason FROM api.portal_topup_status(test.res('b', 'token'), pg_temp.ref('k'))$$,
                  $$VALUES ('refunding'::text, 'tag-blocked'::text)$$, 'the visitor is told it is being refunded, and why');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('k'), 'paid', 'co_k')$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text)$$, 'paid again: a duplicate, one refund due');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('k')$$, $$VALUES (true)$$, 'nothing to poll any more');

DO $$ BEGIN PERFORM pg_temp.open_topup('m', 'a', 15000); END $$;
SELECT is(test.funded_tag(test.e(), 'FA00FA01', 5000), 38000 - 2 * test.v('fee'), 'meanwhile A tops up 50,00 in cash');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_settle(pg_temp.ref('m'), 'paid', 'co_m')$$,
                  $$VALUES ('Aborted'::text, 'refund-due'::text, 'max-balance-exceeded'::text)$$, 'paid above the maximum balance: Aborted, refund due');
SELECT is(test.balance(test.e(), 'FA00FA01'), 38000 - 2 * test.v('fee'), 'nothing booked above the maximum');

-- ---------------------------------------------------------------- the refund: asked for by support, carried out by the relay
SELECT results_eq($$SELECT test.as_web(format('SELECT api.admin_queue_refund(%%1$s, %s, ''refund'')', pg_temp.tx('k')), r) FROM unnest(ARRAY['viewer', 'finance', 'nobody']) r$$,
                  $$VALUES ('FP071'::text), ('FP071'), ('FP070')$$, 'only support decides a refund (viewer and finance are forbidden)');
SELECT throws_ok(format($$SELECT api.admin_queue_refund(%L, %s, ' ')$$, test.admin_token('support'), pg_temp.tx('k')), 'FP001',
                 'validation: say why, in 1 to 1000 characters', 'a refund needs a reason');
SELECT throws_ok(format($$SELECT api.admin_queue_refund(%L, %s, 'no')$$, test.admin_token('support'), pg_temp.tx('p')), 'FP010',
                 format('not-found: transaction %s has no online payment to refund', pg_temp.tx('p')), 'a booked top-up has nothing to refund');
INSERT INTO test.ctx SELECT 'audits', test.audits();
SELECT is(api.admin_queue_refund(test.admin_token('support'), pg_temp.tx('k'), 'wristband blocked, refund it'), 'requested', 'support asks for the refund');
SELECT is(test.last_audit(), format('queue.refund transaction:%s by pgtap-ot-support', pg_temp.tx('k')), 'audited');
SELECT is(test.last_change(), jsonb_build_object('before', jsonb_build_object('refund', 'due', 'error', NULL),
                                                 'after', jsonb_build_object('refund', 'requested', 'amount', 1000, 'uid', 'FB00FB01',
                                                                             'reference', pg_temp.ref('k'), 'checkout_id', 'co_k',
                                                                             'refund_reason', 'tag-blocked', 'reason', 'wristband blocked, refund it')),
          'the audit row holds the amount, tag, checkout and both reasons');
SELECT results_eq($$SELECT refund_state, refund_requested_by FROM pg_temp.checkout('k')$$, $$VALUES ('requested'::text, 'pgtap-ot-support'::text)$$, 'requested, by whom');
SELECT results_eq($$SELECT done, attempts FROM pg_temp.outbox('k')$$, $$VALUES (false, 0)$$, 'the relay''s provider request is open again');
SELECT results_eq($$SELECT reference, checkout_id, action, amount FROM api.provider_request((SELECT id FROM pg_temp.outbox('k')))$$,
                  $$VALUES (pg_temp.ref('k'), 'co_k'::text, 'refund'::text, 1000::bigint)$$, 'the relay is told to refund the amount (keyed by the reference)');
SELECT is(api.admin_queue_refund(test.admin_token('support'), pg_temp.tx('k'), 'again'), 'requested', 'asking twice: still one refund requested');
SELECT is(test.audits(), test.v('audits') + 1, 'and no second audit row');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('k'), 'paid', 'co_k')$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text)$$, 'paid while the refund is requested: nothing booked');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('k')$$, $$VALUES (false)$$, 'and the refund request stays open');
SELECT ok(pg_temp.poll_failed('k') > now(), 'the provider unreachable: the refund is retried later');
SELECT is(test.state(pg_temp.tx('k')), 'Aborted', 'the top-up stays Aborted');
SELECT is(api.provider_refunded((SELECT id FROM pg_temp.outbox('k')), 're_1'), 'refunded', 'the relay records the provider''s refund');
SELECT results_eq($$SELECT refund_state, refund_id, refunded_at IS NOT NULL FROM pg_temp.checkout('k')$$,
                  $$VALUES ('refunded'::text, 're_1'::text, true)$$, 'refunded, with the provider''s refund id');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('k')$$, $$VALUES (true)$$, 'the request is done');
SELECT is(api.provider_refunded((SELECT id FROM pg_temp.outbox('k')), 're_2'), 'refunded', 'recorded again: no error');
SELECT is((pg_temp.checkout('k')).refund_id, 're_1', 'and the first refund stays');
SELECT is(api.admin_queue_refund(test.admin_token('support'), pg_temp.tx('k'), 'once more'), 'refunded', 'refunding a refunded one again changes nothing');
SELECT results_eq($$SELECT done FROM pg_temp.outbox('k')$$, $$VALUES (true)$$, 'no new request');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_settle(pg_temp.ref('k'), 'paid', 'co_k')$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text)$$, 'paid after the refund: nothing booked');
SELECT is_empty($$SELECT * FROM api.admin_queue(test.admin_token('viewer')) WHERE transaction_id = pg_temp.tx('k')$$, 'the queue no longer lists it');
SELECT is((SELECT status FROM api.portal_topup_status(test.res('b', 'token'), pg_temp.ref('k'))), 'refunded', 'the visitor sees refunded');
SELECT is(test.balance(test.e(), 'FB00FB01'), 1000::bigint, 'B''s balance never moved');

SELECT is(api.admin_queue_refund(test.admin_token('admin'), pg_temp.tx('m'), 'above the maximum'), 'requested', 'the refund above the maximum is asked for');
SELECT is(api.provider_refund_refused((SELECT id FROM pg_temp.outbox('m')), 'the provider refused the refund: 409'), 'failed', 'the provider refuses it');
SELECT results_eq($$SELECT detail ->> 'refund', detail ->> 'error' FROM api.admin_queue(test.admin_token('viewer')) WHERE transaction_id = pg_temp.tx('m')$$,
                  $$VALUES ('failed'::text, 'the provider refused the refund: 409'::text)$$, 'back in the queue as failed, with the cause');
SELECT is(api.admin_queue_refund(test.admin_token('support'), pg_temp.tx('m'), 'try again'), 'requested', 'a failed refund can be asked for again');
SELECT results_eq($$SELECT done, attempts FROM pg_temp.outbox('m')$$, $$VALUES (false, 0)$$, 'the request is open again');

-- ---------------------------------------------------------------- who may call
SELECT results_eq($$SELECT test.as_role(r, format('SELECT * FROM api.external_topup_settle(%L, ''paid'')', pg_temp.ref('p'))) FROM unnest(ARRAY['festpay_web', 'festpay_relay', 'festpay_terminal', 'festpay_report']) r$$,
                  $$VALUES ('ok'::text), ('ok'), ('42501'), ('42501')$$, 'only the web and relay roles settle');
SELECT results_eq($$SELECT r, f, test.as_role(r, format('SELECT api.%s((SELECT id FROM pg_temp.outbox(''m'')), ''x'')', f)) FROM unnest(ARRAY['festpay_web', 'festpay_terminal', 'festpay_report']) r, unnest(ARRAY['provider_failed', 'provider_refunded', 'provider_refund_refused']) f ORDER BY 1, 2$$,
                  $$SELECT r, f, '42501'::text FROM unnest(ARRAY['festpay_report', 'festpay_terminal', 'festpay_web']) r, unnest(ARRAY['provider_failed', 'provider_refund_refused', 'provider_refunded']) f ORDER BY 1, 2$$,
                  'the portal''s and admin site''s login (festpay_web) and the others cannot record provider results: only the relay');
SELECT is(test.as_role('festpay_relay', format('SELECT api.provider_refunded(%s, ''re_9'')', (SELECT id FROM pg_temp.outbox('m')))), 'ok', 'the relay can');
SELECT results_eq($$SELECT test.as_role(r, format('SELECT api.admin_queue_refund(%L, %s, ''x'')', test.admin_token('support'), pg_temp.tx('m'))) FROM unnest(ARRAY['festpay_relay', 'festpay_terminal', 'festpay_web']) r$$,
                  $$VALUES ('42501'::text), ('42501'), ('ok')$$, 'an admin''s refund only through the admin site''s login');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'the invariants hold');

SELECT * FROM finish();
ROLLBACK;
