-- Payouts after the event (procedures/75_payouts.sql): a visitor's bank data and donation choice (IBAN checked in the
-- database: format, length, check digits, the event's countries), locked while the customer is in a run and free again
-- after a revoke; who is eligible and why not (no bank data, support's block, an unknown outcome, a pending or unknown
-- online top-up, an overdraft, a balance below the fee unless all is donated); payout runs within a maximum count and
-- sum, their money held (a terminal cannot spend it; no top-up, online, at a terminal, by transfer or with a card at
-- the till, reaches a tag in an open run: payout-locked), revoked (released; no bank file any more) or done (booked:
-- payout, fee and donation lines, balance 0, the tag blocked, the payout queued for signing, the donation not a
-- receipt; its file still there for the records); money reaching a tag after its run is done counts as remaining;
-- donating what remains after the deadline; erasing bank data after the retention, the bookings kept; the admin roles
-- and the portal's tag; and api.check_invariants, empty after each step and firing on a corrupted run.
BEGIN;
SELECT plan(141);

-- ---------------------------------------------------------------- helpers
-- The portal session token of a tag of the suite (signed in by the fixtures).
CREATE FUNCTION pg_temp.tok(p_uid text) RETURNS text LANGUAGE sql AS $$ SELECT test.res('portal tok', p_uid) $$;
-- Saves a tag's payout request in the portal.
CREATE FUNCTION pg_temp.set(p_uid text, p_iban text, p_holder text, p_email text, p_donate text, p_donation bigint DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    SELECT api.portal_payout_set(pg_temp.tok(p_uid), p_iban, p_holder, p_email, p_donate, p_donation) $$;
-- A tag's portal payout page.
CREATE FUNCTION pg_temp.page(p_uid text) RETURNS jsonb LANGUAGE sql AS $$ SELECT api.portal_payout(pg_temp.tok(p_uid)) $$;
-- The form field a refused call names (its validation detail).
CREATE FUNCTION pg_temp.field(p_sql text) RETURNS text LANGUAGE sql AS $$ SELECT test.error_detail(p_sql) ->> 'field' $$;
-- Books a sale replicated at the suite's Bar terminal in p_state; returns the transaction id.
CREATE FUNCTION pg_temp.sale(p_number integer, p_uid text, p_amount bigint, p_state text, VARIADIC p_items text[])
RETURNS bigint LANGUAGE sql AS $$
    SELECT transaction_id FROM api.replicate(test.bar(), jsonb_build_array(
        test.entry(p_number, p_state, p_uid, p_number, p_amount, VARIADIC p_items))) $$;
-- Makes a run as finance; returns its id.
CREATE FUNCTION pg_temp.run(p_max_count integer, p_max_sum bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT api.admin_payout_run_create(test.admin_token('finance'), p_max_count, p_max_sum, current_date) $$;
-- The tags of a run in line order.
CREATE FUNCTION pg_temp.run_tags(p_run bigint) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(g.uid ORDER BY l.line_no) FROM ledger.payout_line l JOIN ledger.tag g ON g.id = l.tag_id
     WHERE l.run_id = p_run $$;
-- The payout (or donation) transaction of a tag's line in a run.
CREATE FUNCTION pg_temp.tx(p_run bigint, p_uid text, p_type text) RETURNS bigint LANGUAGE sql AS $$
    SELECT CASE p_type WHEN 'payout' THEN l.payout_transaction_id ELSE l.donation_transaction_id END
      FROM ledger.payout_line l JOIN ledger.tag g ON g.id = l.tag_id WHERE l.run_id = p_run AND g.uid = p_uid $$;
-- The rows of api.check_invariants, as text (empty: healthy).
CREATE FUNCTION pg_temp.broken() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s %s: %s', invariant, subject, detail), '; '), '') FROM api.check_invariants() $$;
-- ---------------------------------------------------------------- fixtures
-- Tags (all with PIN 1234, signed in to the portal): A AA000001 100,00 (donates 10,00), B AA000002 30,00 (donates all),
-- C AA000003 20,00 (donates nothing), D AA000004 0,50 (below the fee of 1,00), E AA000005 (spent everything),
-- T AA000006 (an unknown outcome), P AA000007 (an online top-up pending), U AA000008 (one unknown), O AA000009 (an
-- offline sale overdrew it), S AA00000A (support blocks its payout), N AA00000B 20,00 (no bank data), R AA00000C 10,00
-- (asks for its payout late), L AA00000D 0,50 (below the fee, asks for a transfer).
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP payouts');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.e(), 'Top-up');
INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-05T21:30:00+02:00"}');
INSERT INTO test.ctx SELECT 'funded ' || u, test.funded_tag(test.e(), u, a)
  FROM (VALUES ('AA000001', 10000), ('AA000002', 3000), ('AA000003', 2000), ('AA000004', 500), ('AA000005', 500),
               ('AA000006', 1000), ('AA000007', 1000), ('AA000008', 1000), ('AA000009', 500), ('AA00000A', 1000),
               ('AA00000B', 2000), ('AA00000C', 1000), ('AA00000D', 500)) x(u, a);
INSERT INTO test.ctx SELECT 'sale ' || x.u, pg_temp.sale(x.n, x.u, x.a, x.s, VARIADIC x.items)
  FROM (VALUES (1, 'AA000004', 450, 'Committed', ARRAY['Tip:1:450']), (2, 'AA000005', 500, 'Committed', ARRAY['Tip:1:500']),
               (3, 'AA000006', 450, 'TerminalConfirmUnknown', ARRAY['Beer:1']),
               (4, 'AA000009', 1350, 'Committed', ARRAY['Beer:3']), (5, 'AA00000D', 450, 'Committed', ARRAY['Beer:1'])) x(n, u, a, s, items);
INSERT INTO test.ctx SELECT 'topup ' || u, api.external_topup_create(test.e(), u, 1000) FROM unnest(ARRAY['AA000007', 'AA000008']) u;
DO $$
BEGIN
    PERFORM api.external_topup_pending(test.v('topup ' || u)) FROM unnest(ARRAY['AA000007', 'AA000008']) u;
    PERFORM api.external_topup_result(test.v('topup AA000008'), 'unknown');
END $$;
UPDATE ledger.tag SET pin_hash = extensions.crypt('1234', extensions.gen_salt('bf', 4)) WHERE event_id = test.e();
INSERT INTO test.res SELECT 'portal tok', jsonb_object_agg(g.uid, (SELECT token FROM api.portal_sign_in(g.uid, '1234')))
  FROM ledger.tag g WHERE g.event_id = test.e();
INSERT INTO test.ctx SELECT 'user ' || role, user_id FROM test.admin_sessions('pgtap-payout-');

-- ---------------------------------------------------------------- problems and settings
SELECT results_eq($$SELECT slug, sqlstate, http_status FROM api.problem_types() WHERE sqlstate BETWEEN 'FP080' AND 'FP089'$$,
                  $$VALUES ('payout-locked'::text, 'FP080'::text, 409), ('payout-not-eligible', 'FP081', 409),
                           ('payout-deadline-not-reached', 'FP082', 409), ('payout-run-closed', 'FP083', 409)$$,
                  'the payout problems are named: FP080 to FP083, 409');
SELECT is((SELECT count(*)::integer FROM ledger.account WHERE event_id = test.e() AND kind = 'donation' AND name = 'donation'),
          1, 'the event has its donation account');
SELECT is(api.admin_event(test.admin_token('viewer')) - ARRAY['id', 'name', 'currency', 'time_zone', 'max_balance', 'min_topup',
              'max_topup', 'topup_fee_cash', 'topup_fee_card', 'topup_fee_online', 'payout_fee', 'reserve_timeout_s', 'provider_check_window_s',
              'offline_limit', 'offline_log_size', 'seller_name', 'seller_street', 'seller_postcode', 'seller_city',
              'tax_number', 'vat_id', 'created_at'],
          '{"payout_countries": ["DE", "AT", "BE", "ES", "FI", "FR", "IE", "IT", "LU", "NL", "PT"], "payout_deadline": null,
            "payout_retention_days": 90, "payout_debtor_name": "", "payout_debtor_iban": "", "payout_debtor_bic": ""}'::jsonb,
          'the payout settings of a new event: the euro SEPA countries, no deadline, 90 days, no debtor account');
SELECT is(pg_temp.field($$SELECT api.admin_event_update(test.admin_token('admin'), '{"payout_debtor_iban": "DE89370400440532013001"}')$$),
          'payout_debtor_iban', 'the festival''s IBAN with wrong check digits: validation, field payout_debtor_iban');
SELECT is(pg_temp.field($$SELECT api.admin_event_update(test.admin_token('admin'), '{"payout_debtor_bic": "COBADE"}')$$),
          'payout_debtor_bic', 'a BIC of 6 characters: validation, field payout_debtor_bic');
SELECT is(pg_temp.field($$SELECT api.admin_event_update(test.admin_token('admin'), '{"payout_countries": ["DE", "Germany"]}')$$),
          'payout_countries', 'a country that is no ISO code: validation, field payout_countries');
SELECT is(pg_temp.field($$SELECT api.admin_event_update(test.admin_token('admin'), '{"payout_deadline": "soon"}')$$),
          'payout_deadline', 'a deadline that is no time: validation, field payout_deadline');
SELECT is(pg_temp.field($$SELECT api.admin_event_update(test.admin_token('admin'), '{"payout_retention_days": -1}')$$),
          'payout_retention_days', 'a negative retention: validation, field payout_retention_days');
SELECT throws_ok($$SELECT api.admin_event_update(test.admin_token('finance'), '{"payout_countries": ["DE"]}')$$, 'FP071', NULL,
                 'finance cannot change the payout settings (setup): admin-forbidden');
SELECT is(api.admin_event_update(test.admin_token('admin'), '{"payout_countries": "de, at,NL", "payout_retention_days": "30"}')
              -> 'payout_countries', '["DE", "AT", "NL"]'::jsonb,
          'the countries "de, at,NL" are saved as DE, AT, NL');
SELECT is(test.last_change() -> 'after', '{"payout_countries": ["DE", "AT", "NL"], "payout_retention_days": 30}'::jsonb,
          '... audited with what changed');

-- ---------------------------------------------------------------- bank data
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', 'DE89 3704 0044 0532 0130 01', 'Carla C', 'carla@example.org', 'none')$$),
          'iban', 'an IBAN with wrong check digits: validation, field iban');
SELECT throws_ok($$SELECT pg_temp.set('AA000003', 'DE89 3704 0044 0532 0130 01', 'Carla C', 'carla@example.org', 'none')$$,
                 'FP001', 'validation: the IBAN''s check digits do not match: is there a typing error?', '... in words');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', 'FR14 2004 1010 0505 0001 3M02 606', 'Carla C', 'carla@example.org', 'none')$$),
          'iban', 'a valid French IBAN, France not among the event''s countries: validation, field iban');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', 'DE8937040044053201300', 'Carla C', 'carla@example.org', 'none')$$),
          'iban', 'a German IBAN of 21 characters: validation, field iban');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', 'DE89370400440532013000', ' ', 'carla@example.org', 'none')$$),
          'holder', 'no account holder: validation, field holder');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', 'DE89370400440532013000', 'Carla C', 'carla.example.org', 'none')$$),
          'email', 'an e-mail address without @: validation, field email');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', NULL, NULL, NULL, 'all')$$),
          'email', 'no e-mail address, even when donating all: validation, field email');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', 'DE89370400440532013000', 'Carla C', 'carla@example.org', 'some')$$),
          'donate', 'a donation choice other than none, part, all: validation, field donate');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', 'DE89370400440532013000', 'Carla C', 'carla@example.org', 'part', 0)$$),
          'donation', 'donating a part of 0: validation, field donation');
SELECT is(pg_temp.field($$SELECT pg_temp.set('AA000003', NULL, NULL, 'carla@example.org', 'none')$$),
          'iban', 'no IBAN when a transfer is wanted: validation, field iban');
SELECT is((SELECT count(*)::integer FROM ledger.payout_bank WHERE event_id = test.e()), 0, 'no refused request saved anything');
SELECT throws_ok($$SELECT api.portal_payout_set('no session', 'DE89370400440532013000', 'A', 'a@example.org', 'none', NULL)$$,
                 'FP074', NULL, 'no portal session: portal-unauthenticated');

SELECT lives_ok($$SELECT pg_temp.set('AA000001', ' de89 3704 0044 0532 0130 00 ', ' Anna   Alt ', 'anna@example.org', 'part', 1000)$$,
                'A saves an IBAN with spaces in lower case, donating 10,00');
SELECT is((pg_temp.page('AA000001') -> 'bank') - 'updated_at',
          '{"iban": "DE89370400440532013000", "holder": "Anna Alt", "email": "anna@example.org", "donate": "part",
            "donation": 1000, "erased_at": null}'::jsonb,
          '... kept in electronic form, the holder''s spaces tidied');
SELECT is(test.last_audit(), 'portal.payout tag:AA000001 by a DBA', '... audited as portal.payout');
SELECT ok(NOT (test.last_change()::text ~* 'DE89|anna'), '... without the IBAN, holder or e-mail in the audit log');
SELECT lives_ok($$SELECT pg_temp.set('AA000002', NULL, NULL, 'bob@example.org', 'all')$$, 'B donates all: no IBAN needed');
SELECT lives_ok($$SELECT pg_temp.set('AA000003', 'NL91ABNA0417164300', 'Carla C', 'carla@example.org', 'none')$$,
                'C asks for all of it (a Dutch IBAN)');
DO $$
BEGIN
    PERFORM pg_temp.set(u, 'AT611904300234573201', 'Some One', 'one@example.org', 'none')
       FROM unnest(ARRAY['AA000004', 'AA000005', 'AA000006', 'AA000007', 'AA000008', 'AA000009', 'AA00000A']) u;
END $$;
-- The order the bank data came in: C first, then A, B, then the rest.
UPDATE ledger.payout_bank b SET entered_at = now() - x.age
  FROM ledger.tag g, (VALUES ('AA000003', interval '3 days'), ('AA000001', interval '2 days'), ('AA000002', interval '1 day')) x(u, age)
 WHERE g.id = b.tag_id AND g.uid = x.u;
SELECT is(pg_temp.broken(), '', 'the invariants hold');

-- ---------------------------------------------------------------- eligibility
SELECT is(pg_temp.page('AA000001') - ARRAY['bank', 'countries', 'deadline', 'deadline_passed'],
          '{"balance": 10000, "available": 10000, "fee": 100, "currency": "EUR", "locked": false, "status": "requested",
            "run": null, "eligible": true, "reasons": [], "estimate": {"transfer": 8900, "fee": 100, "donation": 1000}}'::jsonb,
          'A: eligible, a transfer of 89,00 after the fee of 1,00 and the donation of 10,00');
SELECT is(pg_temp.page('AA000002') -> 'estimate', '{"transfer": 0, "fee": 0, "donation": 3000}'::jsonb,
          'B: donates all 30,00, no transfer, no fee');
SELECT is(pg_temp.page('AA00000B') -> 'reasons', '["no-bank-data"]'::jsonb, 'N gave no bank data: not eligible, no-bank-data');
SELECT is(pg_temp.page('AA00000B') ->> 'status', 'none', '... its status is none');
SELECT lives_ok($$SELECT api.admin_payout_block(test.admin_token('support'), 'AA00000A', true, 'disputed card top-up')$$,
                'support blocks S''s payout');
SELECT is(test.last_audit(), 'payout.block tag:AA00000A by pgtap-payout-support', '... audited');
SELECT is(pg_temp.page('AA00000A') -> 'reasons', '["blocked"]'::jsonb, 'S: blocked');
SELECT is(pg_temp.page('AA000006') -> 'reasons', '["unresolved"]'::jsonb, 'T has a TerminalConfirmUnknown sale: unresolved');
SELECT is(pg_temp.page('AA000007') -> 'reasons', '["unresolved"]'::jsonb, 'P has an online top-up ExternalPending: unresolved');
SELECT is(pg_temp.page('AA000008') -> 'reasons', '["unresolved"]'::jsonb, 'U has an online top-up ExternalUnknown: unresolved');
SELECT is(pg_temp.page('AA000009') -> 'reasons', '["overdraft"]'::jsonb, 'O was overdrawn by an offline sale: overdraft');
SELECT is(pg_temp.page('AA000004') -> 'reasons', '["below-fee"]'::jsonb, 'D has 0,50, not above the fee of 1,00: below-fee');
SELECT is(pg_temp.page('AA000005') -> 'reasons', '["empty"]'::jsonb, 'E spent everything: empty');
SELECT lives_ok($$SELECT pg_temp.set('AA000004', NULL, NULL, 'dora@example.org', 'all')$$, 'D now donates all');
SELECT is(pg_temp.page('AA000004') - ARRAY['bank', 'countries', 'deadline', 'deadline_passed', 'balance', 'available', 'fee', 'currency', 'run', 'locked', 'status'],
          '{"eligible": true, "reasons": [], "estimate": {"transfer": 0, "fee": 0, "donation": 50}}'::jsonb,
          '... and is eligible: a balance at or below the fee can be donated');
SELECT is(api.admin_payouts(test.admin_token('finance')) - ARRAY['runs', 'deadline'],
          '{"currency": "EUR", "fee": 100, "deadline_passed": false, "debtor_ready": false,
            "eligible": {"count": 4, "transfers": 10800, "donations": 4050},
            "waiting": {"no-bank-data": 3, "blocked": 1, "unresolved": 3, "overdraft": 1, "below-fee": 1, "empty": 1},
            "remaining": {"count": 3, "sum": 3050}}'::jsonb,
          'the payouts page: A, B, C, D eligible (89,00 + 19,00 transfers, 10,00 + 30,00 + 0,50 donations); the others by '
          'reason (L both without bank data and below the fee); donate-remaining would take N, R and L');

-- ---------------------------------------------------------------- making runs
SELECT is(pg_temp.field($$SELECT pg_temp.run(10, 100000)$$), 'payout_debtor_iban',
          'no run before the festival''s account is set: validation, field payout_debtor_iban');
SELECT lives_ok($$SELECT api.admin_event_update(test.admin_token('admin'),
                      '{"payout_debtor_name": "Festival GmbH", "payout_debtor_iban": "DE02120300000000202051", "payout_debtor_bic": "byladem1001"}')$$,
                'the admin sets the festival''s account');
SELECT is(pg_temp.field($$SELECT api.admin_payout_run_create(test.admin_token('finance'), 10, 100000, current_date - 1)$$),
          'execution_date', 'an execution date in the past: validation, field execution_date');
SELECT is(pg_temp.field($$SELECT pg_temp.run(0, 100000)$$), 'max_count', 'a maximum count of 0: validation, field max_count');
SELECT is(pg_temp.field($$SELECT pg_temp.run(10, 0)$$), 'max_sum', 'a maximum sum of 0: validation, field max_sum');
SELECT throws_ok($$SELECT pg_temp.run(10, 1000)$$, 'FP081', 'payout-not-eligible: the first eligible payout is above the maximum sum of 10.00 EUR',
                 'a maximum sum below the first payout: payout-not-eligible, in words');
INSERT INTO test.ctx SELECT 'run1', pg_temp.run(10, 2000);
SELECT is(pg_temp.run_tags(test.v('run1')), ARRAY['AA000003'],
          'a run within 20,00: C (19,00, the oldest request), not A as well (89,00 more)');
SELECT is(test.money('AA000003'), 'balance 2000 held 2000', 'C''s money is held: 19,00 transfer and 1,00 fee');
SELECT results_eq(format($$SELECT t.type::text, t.state::text, t.amount::bigint, t.fee::bigint, t.held::bigint, t.payment::text
                             FROM ledger.transaction t WHERE t.id = %s$$, pg_temp.tx(test.v('run1'), 'AA000003', 'payout')),
                  $$VALUES ('payout', 'ExternalPending', 2000::bigint, 100::bigint, 2000::bigint, 'online')$$,
                  '... by a payout transaction ExternalPending of 20,00 (fee 1,00, paid online) holding all of it');
SELECT is(pg_temp.broken(), '', 'the invariants hold with a run open');

-- Revoke.
SELECT throws_ok($$SELECT pg_temp.set('AA000003', 'NL91ABNA0417164300', 'Carla Other', 'carla@example.org', 'none')$$,
                 'FP080', NULL, 'C cannot change its bank data while in a run: payout-locked');
SELECT is(pg_temp.page('AA000003') - ARRAY['bank', 'countries', 'deadline', 'deadline_passed', 'balance', 'fee', 'currency', 'estimate'],
          jsonb_build_object('available', 0, 'locked', true, 'status', 'in-run', 'eligible', false, 'reasons', '["in-run"]'::jsonb,
                             'run', jsonb_build_object('id', test.v('run1'), 'execution_date', current_date, 'amount', 1900,
                                                       'fee', 100, 'donation', 0)),
          '... its page says locked, in-run, with the run''s execution date and amounts');
SELECT throws_ok($$SELECT api.admin_payout_block(test.admin_token('support'), 'AA000003', true, 'too late')$$, 'FP080', NULL,
                 'support cannot block a payout in a run: payout-locked');
SELECT is(pg_temp.field(format($$SELECT api.admin_payout_run_revoke(test.admin_token('finance'), %s, ' ')$$, test.v('run1'))),
          'reason', 'revoking without a reason: validation, field reason');
SELECT lives_ok(format($$SELECT api.admin_payout_run_revoke(test.admin_token('finance'), %s, 'wrong execution date')$$, test.v('run1')),
                'finance revokes the run');
SELECT is(test.state(pg_temp.tx(test.v('run1'), 'AA000003', 'payout')), 'Aborted', '... its payout is Aborted');
SELECT is(test.money('AA000003'), 'balance 2000 held 0', '... and C''s money released');
SELECT is(test.last_audit(), format('payout.revoke payout-run:%s by pgtap-payout-finance', test.v('run1')), '... audited');
SELECT lives_ok($$SELECT pg_temp.set('AA000003', 'NL91ABNA0417164300', 'Carla Clever', 'carla@example.org', 'none')$$,
                'C may change its bank data again');
SELECT throws_ok(format($$SELECT api.admin_payout_run_revoke(test.admin_token('finance'), %s, 'again')$$, test.v('run1')),
                 'FP083', NULL, 'revoking a revoked run: payout-run-closed');
SELECT throws_ok(format($$SELECT api.admin_payout_run_done(test.admin_token('finance'), %s)$$, test.v('run1')),
                 'FP083', NULL, 'a revoked run cannot be done: payout-run-closed');
SELECT throws_ok(format($$SELECT api.admin_payout_export(test.admin_token('finance'), %s)$$, test.v('run1')),
                 'FP083', format('payout-run-closed: payout run %s is revoked: it has no bank file', test.v('run1')),
                 'a revoked run gives out no SEPA file or CSV: payout-run-closed');
SELECT is(test.error_detail($$SELECT api.topup(test.v('top'), 1, 'AA000003', 1000, 'cash')$$), NULL,
          'C, free again, could top up (undone)');
SELECT is(pg_temp.broken(), '', 'the invariants hold after the revoke');

-- A run of two: the money held, a terminal cannot spend it.
INSERT INTO test.ctx SELECT 'run2', pg_temp.run(2, 100000);
SELECT is(pg_temp.run_tags(test.v('run2')), ARRAY['AA000003', 'AA000001'], 'a run of at most two: the two oldest requests, C and A');
SELECT is((SELECT ledger.payout_run_json(r) - ARRAY['id', 'created_at', 'execution_date'] FROM ledger.payout_run r WHERE r.id = test.v('run2')),
          '{"state": "open", "created_by": "pgtap-payout-finance", "max_count": 2, "max_sum": 100000, "count": 2,
            "transfers": 10800, "fees": 200, "donations": 1000, "done_at": null, "done_by": null, "revoked_at": null,
            "revoked_by": null, "reason": null}'::jsonb,
          '... its totals: 2 customers, transfers 108,00, fees 2,00, donations 10,00');
SELECT is(test.last_audit(), format('payout.create payout-run:%s by pgtap-payout-finance', test.v('run2')), '... audited');
SELECT is(test.money('AA000001'), 'balance 10000 held 10000', 'A''s 100,00 are held (89,00 + 1,00 payout, 10,00 donation)');
SELECT throws_ok($$SELECT api.reserve(test.bar(), 10, 'AA000001', 10, 450, test.items(test.e(), 'Beer:1'))$$, 'FP020', NULL,
                 'a Beer at the bar for A: insufficient-balance');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 1, 'AA000001', 1000, 'cash')$$, 'FP080',
                 format('payout-locked: the balance of this tag is being paid out (payout run %s): no top-up until the '
                        'run is done or revoked', test.v('run2')),
                 'a cash top-up at a terminal for A, in the open run: payout-locked');
SELECT throws_ok($$SELECT * FROM api.portal_topup_start(pg_temp.tok('AA000001'), 1000)$$, 'FP080', NULL,
                 '... an online top-up in the portal: payout-locked');
SELECT throws_ok($$SELECT * FROM api.transfer(test.e(), 'AA00000B', 'AA000001', 500)$$, 'FP080', NULL,
                 '... a transfer from another tag: payout-locked');
SELECT throws_ok($$SELECT * FROM api.open_loop_purchase(test.bar(), 21, 'AA000001', 21, 450, test.items(test.e(), 'Beer:1'), 1000)$$,
                 'FP080', NULL, '... a Beer paid by card with 5,50 more than it costs: payout-locked');
SELECT is(test.money('AA000001'), 'balance 10000 held 10000', 'nothing reached A: its run still pays out all of its balance');
SELECT is_empty(format($$SELECT * FROM api.admin_queue(test.admin_token('viewer')) WHERE transaction_id IN (%s, %s)$$,
                       pg_temp.tx(test.v('run2'), 'AA000001', 'payout'), pg_temp.tx(test.v('run2'), 'AA000001', 'donation')),
                'the run''s transactions wait for no admin (not in the resolution queue)');
INSERT INTO test.res SELECT 'export2', api.admin_payout_export(test.admin_token('finance'), test.v('run2'));
SELECT is((SELECT (j -> 'lines' -> 1) - ARRAY['payout_transaction_id', 'donation_transaction_id'] FROM test.res WHERE k = 'export2'),
          jsonb_build_object('line_no', 2, 'uid', 'AA000001', 'holder', 'Anna Alt', 'iban', 'DE89370400440532013000',
                             'email', 'anna@example.org', 'amount', 8900, 'fee', 100, 'donation', 1000,
                             'end_to_end_id', format('FP-%s-2', test.v('run2'))),
          'the export: A''s line with holder, IBAN, e-mail, transfer, fee, donation, end-to-end id');
SELECT is((SELECT j -> 'debtor' FROM test.res WHERE k = 'export2'),
          '{"name": "Festival GmbH", "iban": "DE02120300000000202051", "bic": "BYLADEM1001"}'::jsonb,
          '... and the festival''s account it is paid from');
SELECT results_eq($$SELECT (j ->> 'event_id')::bigint, (j -> 'run' ->> 'created_at')::timestamptz FROM test.res WHERE k = 'export2'$$,
                  $$SELECT event_id, created_at FROM ledger.payout_run WHERE id = test.v('run2')$$,
                  '... its event and creation time (the file''s ids are made of them)');
SELECT is(test.last_audit(), format('payout.export payout-run:%s by pgtap-payout-finance', test.v('run2')), '... audited as payout.export');
SELECT is(pg_temp.broken(), '', 'the invariants hold');

-- Done.
SELECT is(api.admin_payout_run_done(test.admin_token('finance'), test.v('run2')),
          '{"count": 2, "transfers": 10800, "fees": 200, "donations": 1000}'::jsonb, 'finance marks the run done');
SELECT results_eq(format($$SELECT * FROM test.booking_lines(%s)$$, pg_temp.tx(test.v('run2'), 'AA000001', 'payout')),
                  $$VALUES ('payout:payout'::text, 'customer:AA000001'::text, 8900::bigint), ('fee:fees', 'customer:AA000001', 100)$$,
                  'A''s payout is booked: payout <- customer 89,00, fee <- customer 1,00');
SELECT results_eq(format($$SELECT * FROM test.booking_lines(%s)$$, pg_temp.tx(test.v('run2'), 'AA000001', 'donation')),
                  $$VALUES ('donation:donation'::text, 'customer:AA000001'::text, 1000::bigint)$$,
                  'A''s donation is booked: donation <- customer 10,00');
SELECT is(ARRAY[test.money('AA000001'), test.money('AA000003')], ARRAY['balance 0 held 0', 'balance 0 held 0'],
          'A and C have nothing left, nothing held');
SELECT results_eq($$SELECT uid, status::text FROM ledger.tag WHERE event_id = test.e() AND uid IN ('AA000001', 'AA000003') ORDER BY uid$$,
                  $$VALUES ('AA000001'::text, 'blocked'::text), ('AA000003', 'blocked')$$, 'their tags are blocked');
SELECT is((SELECT after FROM ledger.admin_audit WHERE action = 'customer.block' AND object = 'tag:AA000001'),
          jsonb_build_object('status', 'blocked', 'reason', format('paid out in run %s', test.v('run2'))),
          '... with the reason paid out in run N');
SELECT throws_ok($$SELECT api.reserve(test.bar(), 11, 'AA000001', 11, 450, test.items(test.e(), 'Beer:1'))$$, 'FP011', NULL,
                 'a terminal refuses A now: tag-blocked');
SELECT results_eq(format($$SELECT o.topic::text, o.ordering_key::text FROM ledger.outbox o WHERE o.transaction_id IN (%s, %s)$$,
                         pg_temp.tx(test.v('run2'), 'AA000001', 'payout'), pg_temp.tx(test.v('run2'), 'AA000001', 'donation')),
                  $$VALUES ('tse'::text, 'festpay-backend'::text)$$,
                  'the payout is queued for signing at the backend''s till, the donation is not');
SELECT is((SELECT ledger.payment_name(t.type, t.payment) FROM ledger.transaction t WHERE t.id = pg_temp.tx(test.v('run2'), 'AA000001', 'payout')),
          'Ueberweisung', '... a receipt paid by bank transfer (DSFinV-K Ueberweisung)');
SELECT throws_ok(format($$SELECT api.receipt(%s)$$, pg_temp.tx(test.v('run2'), 'AA000001', 'donation')), 'FP010', NULL,
                 'a donation has no receipt');
SELECT is(pg_temp.page('AA000001') - ARRAY['bank', 'countries', 'deadline', 'deadline_passed', 'fee', 'currency', 'estimate', 'run'],
          '{"balance": 0, "available": 0, "locked": true, "status": "done", "eligible": false, "reasons": ["done"]}'::jsonb,
          'A''s page: done, locked');
SELECT is((api.admin_customer(test.admin_token('support'), 'AA000001') -> 'payout')
              - ARRAY['updated_at', 'run', 'estimate'],
          '{"iban": "DE89370400440532013000", "holder": "Anna Alt", "email": "anna@example.org", "donate": "part",
            "donation": 1000, "erased_at": null, "blocked": false, "blocked_reason": null, "status": "done",
            "eligible": false, "reasons": ["done"]}'::jsonb,
          'the admin''s customer page shows A''s payout: its bank data, done');
SELECT is(api.portal_data(pg_temp.tok('AA000001')) -> 'payout' -> 'run' ->> 'amount', '8900',
          'A''s data download has its payout');
SELECT throws_ok(format($$SELECT api.admin_payout_run_done(test.admin_token('finance'), %s)$$, test.v('run2')),
                 'FP083', NULL, 'a done run cannot be done again: payout-run-closed');
SELECT throws_ok(format($$SELECT api.admin_payout_run_revoke(test.admin_token('finance'), %s, 'oops')$$, test.v('run2')),
                 'FP083', NULL, 'nor revoked: payout-run-closed');
SELECT is(pg_temp.broken(), '', 'the invariants hold after the run is done');
SELECT is(api.admin_payout_export(test.admin_token('finance'), test.v('run2')) -> 'run' ->> 'state', 'done',
          'a done run''s file can still be downloaded, for the records');
SELECT is((SELECT balance FROM api.deposit_return(test.bar(), 20, 'AA000001', test.items(test.e(), 'Cup:1'))), 200::bigint,
          'A returns a cup after its run is done: 2,00 reach its closed tag');
SELECT is(api.admin_payouts(test.admin_token('finance')) -> 'remaining', '{"count": 4, "sum": 3250}'::jsonb,
          '... and are not invisible: remaining (N, R, L and A''s 2,00), what donate-remaining takes after the deadline');

-- The rest: donations only; then nobody is left.
INSERT INTO test.ctx SELECT 'run3', pg_temp.run(10, 100000);
SELECT is(pg_temp.run_tags(test.v('run3')), ARRAY['AA000002', 'AA000004'], 'the next run takes B and D (donations only)');
SELECT throws_ok($$SELECT pg_temp.run(10, 100000)$$, 'FP081', 'payout-not-eligible: no customer is eligible for a payout now',
                 'then nobody is eligible: payout-not-eligible');
SELECT lives_ok(format($$SELECT api.admin_payout_run_done(test.admin_token('finance'), %s)$$, test.v('run3')), 'that run is done');
SELECT results_eq(format($$SELECT * FROM test.booking_lines(%s)$$, pg_temp.tx(test.v('run3'), 'AA000002', 'donation')),
                  $$VALUES ('donation:donation'::text, 'customer:AA000002'::text, 3000::bigint)$$,
                  'B''s whole balance is donated: donation <- customer 30,00');
SELECT is(test.account_balance(test.e(), 'donation', 'donation'), 4050::bigint, 'the donation account holds 40,50');
SELECT is(pg_temp.broken(), '', 'the invariants hold');

-- ---------------------------------------------------------------- after the deadline
SELECT lives_ok($$SELECT pg_temp.set('AA00000C', 'DE89370400440532013000', 'Rita R', 'rita@example.org', 'none')$$,
                'R asks for its payout (eligible, in no run yet)');
SELECT lives_ok($$SELECT pg_temp.set('AA00000D', 'DE89370400440532013000', 'Lea L', 'lea@example.org', 'none')$$,
                'L asks for a transfer of its 0,50 (below the fee)');
SELECT throws_ok($$SELECT api.admin_donate_remaining(test.admin_token('finance'), 'the deadline passed')$$, 'FP082', NULL,
                 'without a deadline nothing is donated: payout-deadline-not-reached');
SELECT lives_ok($$SELECT api.admin_event_update(test.admin_token('admin'),
                      jsonb_build_object('payout_deadline', to_jsonb(now() + interval '1 day')))$$, 'the deadline is tomorrow');
SELECT throws_ok($$SELECT api.admin_donate_remaining(test.admin_token('finance'), 'the deadline passed')$$, 'FP082', NULL,
                 'before the deadline: payout-deadline-not-reached');
SELECT lives_ok($$SELECT api.admin_event_update(test.admin_token('admin'),
                      jsonb_build_object('payout_deadline', to_jsonb(now() - interval '1 minute')))$$, 'the deadline passed');
SELECT throws_ok($$SELECT api.admin_donate_remaining(test.admin_token('support'), 'the deadline passed')$$, 'FP071', NULL,
                 'support cannot donate what remains: admin-forbidden');
SELECT is(api.admin_donate_remaining(test.admin_token('finance'), 'the payout deadline passed'), '{"count": 3, "sum": 2250}'::jsonb,
          'finance donates what remains: N''s 20,00, L''s 0,50 and the 2,00 that reached A after its run');
SELECT is(test.last_change() -> 'after', '{"count": 3, "sum": 2250, "reason": "the payout deadline passed"}'::jsonb,
          '... one audit row with the reason');
SELECT results_eq($$SELECT g.uid, a.balance FROM ledger.tag g JOIN ledger.account a ON a.id = g.account_id
                     WHERE g.event_id = test.e() AND g.uid IN ('AA000001', 'AA000006', 'AA000007', 'AA000009', 'AA00000A', 'AA00000B', 'AA00000C', 'AA00000D')
                     ORDER BY g.uid$$,
                  $$VALUES ('AA000001'::text, 0::bigint), ('AA000006', 1000), ('AA000007', 1000), ('AA000009', -850),
                           ('AA00000A', 1000), ('AA00000B', 0), ('AA00000C', 1000), ('AA00000D', 0)$$,
                  'A, N and L have 0; the unresolved (T, P), the overdrawn (O), the blocked (S) and R, who waits for its payout, keep theirs');
SELECT is(pg_temp.broken(), '', 'the invariants hold after the donations');

-- ---------------------------------------------------------------- erasing bank data
SELECT throws_ok($$SELECT api.erase_personal_data(test.admin_token('finance'))$$, 'FP071', NULL,
                 'finance cannot erase personal data (users): admin-forbidden');
SELECT is(api.erase_personal_data(test.admin_token('admin')), 0, 'within the retention of 30 days nothing is erased');
UPDATE ledger.payout_run SET done_at = now() - interval '31 days' WHERE id = test.v('run2');
INSERT INTO test.ctx SELECT 'fp before erase', count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id
 WHERE t.event_id = test.e();
SELECT is(api.erase_personal_data(test.admin_token('admin')), 2, 'once run 2 is done 31 days, its two customers are erased');
SELECT results_eq($$SELECT g.uid, b.iban, b.holder, b.email, b.donate, b.erased_at IS NOT NULL FROM ledger.payout_bank b
                     JOIN ledger.tag g ON g.id = b.tag_id WHERE g.uid IN ('AA000001', 'AA000003', 'AA000002', 'AA00000C') ORDER BY g.uid$$,
                  $$VALUES ('AA000001'::text, NULL::text, NULL::text, NULL::text, 'part'::text, true),
                           ('AA000002', NULL, NULL, 'bob@example.org', 'all', false),
                           ('AA000003', NULL, NULL, NULL, 'none', true),
                           ('AA00000C', 'DE89370400440532013000', 'Rita R', 'rita@example.org', 'none', false)$$,
                  'A and C lose IBAN, holder and e-mail (their choice stays); B (done recently) and R (not paid out) keep theirs');
SELECT is((SELECT count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id WHERE t.event_id = test.e()),
          test.v('fp before erase'), 'every booking is kept');
SELECT is((SELECT j -> 'lines' -> 1 ->> 'amount' FROM (SELECT api.admin_payout_run(test.admin_token('finance'), test.v('run2')) j) x),
          '8900', 'the run''s lines keep their amounts');
SELECT is(test.last_change() -> 'after', '{"count": 2, "uids": ["AA000001", "AA000003"]}'::jsonb,
          'the erasure is audited with the tags');
SELECT is(pg_temp.broken(), '', 'the invariants hold after the erasure');

-- ---------------------------------------------------------------- who may call what
CREATE TEMP TABLE call (fn text PRIMARY KEY, privilege text NOT NULL, sql text NOT NULL);
INSERT INTO call VALUES
    ('admin_payouts',           'finance', $$SELECT api.admin_payouts(%1$s)$$),
    ('admin_payout_run',        'finance', format($$SELECT api.admin_payout_run(%%1$s, %s)$$, test.v('run2'))),
    ('admin_payout_export',     'finance', format($$SELECT api.admin_payout_export(%%1$s, %s)$$, test.v('run2'))),
    ('admin_payout_run_create', 'finance', $$SELECT api.admin_payout_run_create(%1$s, 10, 100000, current_date)$$),
    ('admin_payout_run_revoke', 'finance', format($$SELECT api.admin_payout_run_revoke(%%1$s, %s, 'why')$$, test.v('run3'))),
    ('admin_payout_run_done',   'finance', format($$SELECT api.admin_payout_run_done(%%1$s, %s)$$, test.v('run3'))),
    ('admin_donate_remaining',  'finance', $$SELECT api.admin_donate_remaining(%1$s, 'why')$$),
    ('admin_payout_block',      'support', $$SELECT api.admin_payout_block(%1$s, 'AA00000C', true, 'why')$$),
    ('erase_personal_data',     'users',   $$SELECT api.erase_personal_data(%1$s)$$);
-- What each role's call does (as festpay_web, undone): 'ok', or its SQLSTATE. A refused privilege is FP071; the calls
-- on the done run 3 of the roles that may make them run into its rule (payout-run-closed), not into FP071.
SELECT is((SELECT string_agg(format('%s %s:%s', c.fn, r.role, test.as_web(c.sql, r.role)), '; '
                              ORDER BY c.fn COLLATE "C", r.role COLLATE "C")
             FROM call c, unnest(ARRAY['admin', 'finance', 'support', 'viewer']) r(role)
            WHERE NOT EXISTS (SELECT FROM ledger.admin_role_privilege p WHERE p.role = r.role AND p.privilege = c.privilege)
              AND test.as_web(c.sql, r.role) <> 'FP071'), NULL,
          'every payout function refuses the roles without its privilege with admin-forbidden');
SELECT is((SELECT string_agg(format('%s %s:%s', c.fn, r.role, test.as_web(c.sql, r.role)), '; '
                              ORDER BY c.fn COLLATE "C", r.role COLLATE "C")
             FROM call c, unnest(ARRAY['admin', 'finance', 'support', 'viewer']) r(role)
            WHERE EXISTS (SELECT FROM ledger.admin_role_privilege p WHERE p.role = r.role AND p.privilege = c.privilege)),
          'admin_donate_remaining admin:ok; admin_donate_remaining finance:ok; admin_payout_block admin:ok; admin_payout_block support:ok; '
          'admin_payout_export admin:ok; admin_payout_export finance:ok; admin_payout_run admin:ok; admin_payout_run finance:ok; '
          'admin_payout_run_create admin:ok; admin_payout_run_create finance:ok; admin_payout_run_done admin:FP083; '
          'admin_payout_run_done finance:FP083; admin_payout_run_revoke admin:FP083; admin_payout_run_revoke finance:FP083; '
          'admin_payouts admin:ok; admin_payouts finance:ok; erase_personal_data admin:ok',
          '... and runs for the roles that have it (as festpay_web)');
SELECT is_empty($$SELECT c.fn FROM call c WHERE test.as_web(c.sql, 'nobody') <> 'FP070'$$,
                'every payout function refuses a token of no session: admin-unauthenticated');
SELECT throws_ok($$SET LOCAL ROLE festpay_terminal; SELECT api.portal_payout('x')$$, '42501', NULL,
                 'the terminal role cannot call the portal''s payout page');
RESET ROLE;
SELECT throws_ok($$SET LOCAL ROLE festpay_report; SELECT api.admin_payouts('x')$$, '42501', NULL,
                 'the report role cannot call the payouts page');
RESET ROLE;
-- The portal acts on the signed-in tag only: R's token cannot reach another tag's request.
INSERT INTO test.res SELECT 'others', to_jsonb(md5(string_agg(format('%s', b), ',' ORDER BY b.tag_id)))
  FROM ledger.payout_bank b JOIN ledger.tag g ON g.id = b.tag_id WHERE g.event_id = test.e() AND g.uid <> 'AA00000C';
SELECT lives_ok($$SELECT pg_temp.set('AA00000C', 'DE89370400440532013000', 'Rita R', 'rita@example.org', 'all')$$,
                'R changes its own request');
SELECT is((SELECT md5(string_agg(format('%s', b), ',' ORDER BY b.tag_id)) FROM ledger.payout_bank b
             JOIN ledger.tag g ON g.id = b.tag_id WHERE g.event_id = test.e() AND g.uid <> 'AA00000C'),
          (SELECT j #>> '{}' FROM test.res WHERE k = 'others'), '... and nothing of any other tag');
SELECT is(pg_temp.page('AA00000C') -> 'bank' ->> 'email', 'rita@example.org', 'R''s page shows R''s bank data only');

-- ---------------------------------------------------------------- the invariants fire
INSERT INTO test.ctx SELECT 'run4', pg_temp.run(10, 100000);
UPDATE ledger.payout_run SET transfers = transfers + 1 WHERE id = test.v('run4');
SELECT is((SELECT string_agg(invariant || ' ' || subject, '; ') FROM api.check_invariants()),
          format('payout-run-matches-lines payout run %s', test.v('run4')),
          'a DBA''s change of a run''s total: payout-run-matches-lines');
UPDATE ledger.payout_run SET transfers = transfers - 1 WHERE id = test.v('run4');
-- A second open run taking R again, past the unique index (its first line marked revoked by hand), with R's top-up.
INSERT INTO ledger.payout_run (event_id, execution_date, max_count, max_sum, count, transfers, fees, donations, debtor_name,
                               debtor_iban, debtor_bic)
SELECT event_id, execution_date, max_count, max_sum, count, transfers, fees, donations, debtor_name, debtor_iban, debtor_bic
  FROM ledger.payout_run WHERE id = test.v('run4');
INSERT INTO test.ctx SELECT 'run5', max(id) FROM ledger.payout_run;
UPDATE ledger.payout_line SET revoked = true WHERE run_id = test.v('run4');
INSERT INTO ledger.payout_line (run_id, line_no, tag_id, amount, fee, donation, payout_transaction_id)
SELECT test.v('run5'), 1, g.id, 900, 100, 0, t.id FROM ledger.tag g JOIN ledger.transaction t ON t.account_id = g.account_id
 WHERE g.event_id = test.e() AND g.uid = 'AA00000C' AND t.type = 'topup';
SELECT is((SELECT string_agg(subject, '; ') FROM api.check_invariants() WHERE invariant = 'customer-in-one-open-run'),
          'tag AA00000C', 'R in two open runs: customer-in-one-open-run');
SELECT is((SELECT string_agg(subject, '; ' ORDER BY subject COLLATE "C") FROM api.check_invariants()
            WHERE invariant = 'payout-run-matches-lines'),
          format('line 1 of payout run %s; line 1 of payout run %s; payout run %s', test.v('run4'), test.v('run5'), test.v('run5')),
          '... and payout-run-matches-lines: a revoked line in an open run, a line whose payout is a top-up, totals apart');

SELECT * FROM finish();
ROLLBACK;
