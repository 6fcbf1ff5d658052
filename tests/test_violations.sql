-- Disallowed state transitions (SPEC 5): each is answered with outcome 'rejected', problem 'invalid-transition',
-- writes exactly one ledger.violation row (actor, event, transaction, from, to, payload) and changes nothing else.
-- The api does not raise for them, so the caller's transaction commits the violation row.
BEGIN;
SELECT plan(83);

-- ---------------------------------------------------------------- fixtures
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP violations', p_reserve_timeout_s => 1);
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.e(), 'Food');
-- The terminal time of this suite's replication and tag log entries (test.entry, test.logentry).
INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-04T22:10:00+02:00"}');
CREATE TEMP TABLE snap (k text PRIMARY KEY, s text NOT NULL, violations integer NOT NULL);
CREATE TEMP TABLE ext (k text PRIMARY KEY, tx bigint NOT NULL);
CREATE TEMP TABLE probe (k text PRIMARY KEY, reached text NOT NULL);

CREATE FUNCTION pg_temp.ext(p_k text) RETURNS bigint LANGUAGE sql AS $$ SELECT tx FROM ext WHERE k = p_k $$;
-- Everything about the event's money except the violation log: lines, items, every account's balance and held
-- amount, every transaction's state and held amount, overdraft flags.
CREATE FUNCTION pg_temp.ledger_state() RETURNS text LANGUAGE sql AS $$
    SELECT format('lines %s; items %s; overdrafts %s; accounts %s; transactions %s',
        (SELECT count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id WHERE t.event_id = test.e()),
        (SELECT count(*) FROM ledger.item i JOIN ledger.transaction t ON t.id = i.transaction_id WHERE t.event_id = test.e()),
        (SELECT count(*) FROM ledger.overdraft o JOIN ledger.transaction t ON t.id = o.transaction_id WHERE t.event_id = test.e()),
        (SELECT string_agg(format('%s/%s=%s/%s', kind, name, balance, held), ', ' ORDER BY account_id)
           FROM report.account_balance WHERE event_id = test.e()),
        (SELECT string_agg(format('%s=%s/%s', id, state, held), ', ' ORDER BY id)
           FROM ledger.transaction WHERE event_id = test.e())) $$;
CREATE FUNCTION pg_temp.vcount() RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM ledger.violation
     WHERE event_id = test.e() OR transaction_id IN (SELECT id FROM ledger.transaction WHERE event_id = test.e()) $$;
-- The violation rows of a transaction: actor, event, from, to, payload.
CREATE FUNCTION pg_temp.violation_rows(p_tx bigint)
RETURNS TABLE (actor text, event_id bigint, from_state text, to_state text, payload jsonb) LANGUAGE sql AS $$
    SELECT actor, event_id, from_state::text, to_state::text, payload FROM ledger.violation
     WHERE transaction_id = p_tx ORDER BY id $$;

SELECT is(test.funded_tag(test.e(), 'F0000001', 10000), 10000::bigint, 'tag F funded with 10000');

-- ---------------------------------------------------------------- Committed -> Aborted by replication
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(1, 'Committed', 'F0000001', 1, 450, 'Beer:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'setup: purchase 1 committed');
INSERT INTO snap SELECT 'committed->aborted', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(1, 'Aborted', 'F0000001', 1, 450, 'Beer:1'))$$,
                  $$VALUES ('Committed'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'Committed -> Aborted by replication is rejected (invalid-transition), state stays Committed');
SELECT is(test.state(test.bartx(1)), 'Committed', 'purchase 1 is still Committed');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'committed->aborted'), 'exactly one violation row was written');
SELECT results_eq($$SELECT * FROM pg_temp.violation_rows(test.bartx(1))$$,
                  $$SELECT 'assignment:' || test.bar(), test.e(), 'Committed'::text, 'Aborted'::text,
                           test.entry(1, 'Aborted', 'F0000001', 1, 450, 'Beer:1')$$,
                  'the violation names the terminal, the event, Committed -> Aborted and the replicated entry');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'committed->aborted'), 'no balance, line or state changed');
SELECT is(test.money('F0000001'), 'balance 9550 held 0', 'the customer keeps paying 450, not 0 and not 900');

-- ---------------------------------------------------------------- Aborted -> Committed by replication
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(2, 'Aborted', 'F0000001', 2, 350, 'Pretzel:1'))$$,
                  $$VALUES ('Aborted'::text, 'booked'::text, NULL::text)$$, 'setup: purchase 2 aborted');
INSERT INTO snap SELECT 'aborted->committed', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(2, 'Committed', 'F0000001', 2, 350, 'Pretzel:1'))$$,
                  $$VALUES ('Aborted'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'Aborted -> Committed by replication is rejected');
SELECT is(test.state(test.bartx(2)), 'Aborted', 'purchase 2 is still Aborted');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'aborted->committed'), 'exactly one violation row');
SELECT results_eq($$SELECT * FROM pg_temp.violation_rows(test.bartx(2))$$,
                  $$SELECT 'assignment:' || test.bar(), test.e(), 'Aborted'::text, 'Committed'::text,
                           test.entry(2, 'Committed', 'F0000001', 2, 350, 'Pretzel:1')$$,
                  'the violation row: Aborted -> Committed with the payload');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'aborted->committed'), 'nothing booked');
SELECT is(test.lines(test.bartx(2)), 0, 'the aborted purchase has no lines');

-- ---------------------------------------------------------------- Reserve -> Aborted by replication
SELECT results_eq(
    $$SELECT status, held FROM api.tag_sync(test.food(), 'F0000001', 4, 9200, jsonb_build_array(test.logentry('F0000001', 3, 3, 350)))$$,
    $$VALUES ('active'::text, 350::bigint)$$, 'setup: a tag log proves purchase 3 (Reserve, 350 held)');
SELECT is(test.state(test.bartx(3)), 'Reserve', 'purchase 3 is in Reserve');
INSERT INTO snap SELECT 'reserve->aborted', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(3, 'Aborted', 'F0000001', 3, 350, 'Pretzel:1'))$$,
                  $$VALUES ('Reserve'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'Reserve -> Aborted by replication is rejected (the tag proves the charge)');
SELECT is(test.state(test.bartx(3)), 'Reserve', 'purchase 3 stays in Reserve');
SELECT is(test.money('F0000001'), 'balance 9550 held 350', 'the hold of 350 is kept');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'reserve->aborted'), 'exactly one violation row');
SELECT results_eq($$SELECT * FROM pg_temp.violation_rows(test.bartx(3))$$,
                  $$SELECT 'assignment:' || test.bar(), test.e(), 'Reserve'::text, 'Aborted'::text,
                           test.entry(3, 'Aborted', 'F0000001', 3, 350, 'Pretzel:1')$$,
                  'the violation row: Reserve -> Aborted with the payload');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'reserve->aborted'), 'nothing changed');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(3, 'Committed', 'F0000001', 3, 350, 'Pretzel:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'the Reserve can still be committed afterwards');
SELECT is(test.money('F0000001'), 'balance 9200 held 0', 'booked once: 9550 - 350');

-- ---------------------------------------------------------------- ReserveExpired -> TerminalConfirmUnknown by replication
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 4, 'F0000001', 5, 900, test.items(test.e(), 'Beer:2'))$$,
    $$VALUES ('ReservePending'::text, 8300::bigint)$$, 'setup: purchase 4 reserved');
UPDATE ledger.transaction SET expires_at = now() - interval '1 s' WHERE id = test.bartx(4);
SELECT is(api.expire_reservations(test.e()), 1, 'setup: purchase 4 expired');
INSERT INTO snap SELECT 'expired->unknown', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(4, 'TerminalConfirmUnknown', 'F0000001', 5, 900, 'Beer:2'))$$,
                  $$VALUES ('ReserveExpired'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'ReserveExpired -> TerminalConfirmUnknown by replication is rejected');
SELECT is(test.state(test.bartx(4)), 'ReserveExpired', 'purchase 4 stays ReserveExpired');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'expired->unknown'), 'exactly one violation row');
SELECT results_eq($$SELECT * FROM pg_temp.violation_rows(test.bartx(4))$$,
                  $$SELECT 'assignment:' || test.bar(), test.e(), 'ReserveExpired'::text, 'TerminalConfirmUnknown'::text,
                           test.entry(4, 'TerminalConfirmUnknown', 'F0000001', 5, 900, 'Beer:2')$$,
                  'the violation row: ReserveExpired -> TerminalConfirmUnknown');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'expired->unknown'), 'nothing changed (no hold re-taken)');
SELECT is(test.money('F0000001'), 'balance 9200 held 0', 'tag F: no hold');

-- ---------------------------------------------------------------- a refused charge in a tag log (Aborted -> Reserve)
INSERT INTO snap SELECT 'aborted->reserve', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq(
    $$SELECT status, balance, held FROM api.tag_sync(test.food(), 'F0000001', 6, 9200, jsonb_build_array(test.logentry('F0000001', 2, 2, 350)))$$,
    $$VALUES ('active'::text, 9200::bigint, 0::bigint)$$, 'a tag log naming the aborted purchase 2 books nothing');
SELECT is(test.state(test.bartx(2)), 'Aborted', 'purchase 2 stays Aborted');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'aborted->reserve'), 'exactly one violation row');
SELECT results_eq($$SELECT from_state, to_state, payload FROM pg_temp.violation_rows(test.bartx(2)) OFFSET 1$$,
                  $$SELECT 'Aborted'::text, 'Reserve'::text, test.logentry('F0000001', 2, 2, 350)$$,
                  'the violation row: Aborted -> Reserve with the log entry');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'aborted->reserve'), 'nothing changed');

-- ---------------------------------------------------------------- online top-ups
INSERT INTO ext SELECT 'pending', api.external_topup_create(test.e(), 'F0000001', 2000);
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_pending(pg_temp.ext('pending'))$$,
                  $$VALUES ('ExternalPending'::text, 'booked'::text)$$, 'setup: an online top-up under way');
INSERT INTO snap SELECT 'resolve-in-progress', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT transaction_id, state, outcome, problem FROM api.resolve_transaction(pg_temp.ext('pending'), 'Committed', 'looks paid')$$,
                  $$SELECT pg_temp.ext('pending'), 'ExternalPending'::text, 'rejected'::text, 'invalid-transition'::text$$,
                  'an admin cannot resolve a top-up still under way at the provider');
SELECT is(test.state(pg_temp.ext('pending')), 'ExternalPending', 'it stays ExternalPending');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'resolve-in-progress'), 'exactly one violation row');
SELECT results_eq($$SELECT * FROM pg_temp.violation_rows(pg_temp.ext('pending'))$$,
                  $$SELECT session_user::text COLLATE "default", test.e(), 'ExternalPending'::text, 'Committed'::text,
                           jsonb_build_object('reason', 'looks paid')$$,
                  'the violation row names the admin, the event, ExternalPending -> Committed and the reason');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'resolve-in-progress'), 'nothing changed');

SELECT results_eq(
    $$SELECT state FROM api.reserve(test.bar(), 5, 'F0000001', 6, 450, test.items(test.e(), 'Beer:1'))$$,
    $$VALUES ('ReservePending'::text)$$, 'setup: purchase 5 reserved');
INSERT INTO snap SELECT 'resolve-reserve', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT state, outcome, problem FROM api.resolve_transaction(test.bartx(5), 'Aborted', 'operator says cancel')$$,
                  $$VALUES ('ReservePending'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'an admin cannot resolve a ReservePending (its terminal decides)');
SELECT is(test.money('F0000001'), 'balance 9200 held 450', 'the hold of 450 stays');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'resolve-reserve'), 'exactly one violation row');
SELECT results_eq($$SELECT * FROM pg_temp.violation_rows(test.bartx(5))$$,
                  $$SELECT session_user::text COLLATE "default", test.e(), 'ReservePending'::text, 'Aborted'::text,
                           jsonb_build_object('reason', 'operator says cancel')$$,
                  'the violation row: ReservePending -> Aborted by the admin');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'resolve-reserve'), 'nothing changed');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(5, 'Aborted', 'F0000001', 6, 450, 'Beer:1'))$$,
                  $$VALUES ('Aborted'::text, 'booked'::text, NULL::text)$$, 'the terminal itself may abort it');

INSERT INTO ext SELECT 'skip', api.external_topup_create(test.e(), 'F0000001', 1000);
INSERT INTO snap SELECT 'open->committed', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_result(pg_temp.ext('skip'), 'success')$$,
                  $$VALUES ('Open'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'a provider answer for a top-up never marked pending (Open -> Committed) is rejected');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'open->committed'), 'exactly one violation row');
SELECT results_eq($$SELECT * FROM pg_temp.violation_rows(pg_temp.ext('skip'))$$,
                  $$SELECT session_user::text COLLATE "default", test.e(), 'Open'::text, 'Committed'::text,
                           jsonb_build_object('provider_result', 'success')$$,
                  'the violation row: Open -> Committed');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'open->committed'), 'nothing credited');

SELECT results_eq($$SELECT state, outcome FROM api.external_topup_result(pg_temp.ext('pending'), 'success')$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'setup: the pending top-up succeeds');
SELECT is(test.money('F0000001'), 'balance 11200 held 0', 'the 2000 are credited once');
INSERT INTO snap SELECT 'pending-after-commit', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_pending(pg_temp.ext('pending'))$$,
                  $$VALUES ('Committed'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'external_topup_pending again after the commit is rejected');
SELECT is(test.state(pg_temp.ext('pending')), 'Committed', 'the top-up stays Committed');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'pending-after-commit'), 'exactly one violation row');
SELECT results_eq($$SELECT from_state, to_state FROM pg_temp.violation_rows(pg_temp.ext('pending')) OFFSET 1$$,
                  $$VALUES ('Committed'::text, 'ExternalPending'::text)$$, 'the violation row: Committed -> ExternalPending');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'pending-after-commit'), 'nothing changed');
INSERT INTO snap SELECT 'failure-after-commit', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_result(pg_temp.ext('pending'), 'failure')$$,
                  $$VALUES ('Committed'::text, 'rejected'::text, 'invalid-transition'::text)$$,
                  'a failure answer after the commit is rejected (Committed -> Aborted)');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'failure-after-commit'), 'exactly one violation row');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'failure-after-commit'), 'the credit is not taken back');
SELECT is(test.money('F0000001'), 'balance 11200 held 0', 'tag F: 11200, nothing held');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after the refused transitions');

-- ---------------------------------------------------------------- unknown transactions are not-found, not violations
SELECT throws_ok($$SELECT * FROM api.external_topup_pending((SELECT max(id) + 1000 FROM ledger.transaction))$$,
                 'FP010', NULL, 'external_topup_pending of an unknown transaction raises not-found');
SELECT throws_ok($$SELECT * FROM api.resolve_transaction((SELECT max(id) + 1000 FROM ledger.transaction), 'Aborted', 'typo')$$,
                 'FP010', NULL, 'resolve_transaction of an unknown transaction raises not-found (like every other api call)');

-- ---------------------------------------------------------------- the violation row survives: the api does not raise
DO $$
DECLARE
    r record;
BEGIN
    BEGIN
        SELECT * INTO r FROM api.replicate(test.bar(), jsonb_build_array(test.entry(1, 'Aborted', 'F0000001', 1, 450, 'Beer:1')));
        INSERT INTO probe VALUES ('replicate', format('returned %s/%s', r.outcome, r.problem));
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO probe VALUES ('replicate', 'handler reached: ' || SQLSTATE);
    END;
    BEGIN
        SELECT * INTO r FROM api.resolve_transaction(pg_temp.ext('pending'), 'Aborted', 'second thoughts');
        INSERT INTO probe VALUES ('resolve', format('returned %s/%s', r.outcome, r.problem));
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO probe VALUES ('resolve', 'handler reached: ' || SQLSTATE);
    END;
    BEGIN
        SELECT * INTO r FROM api.external_topup_pending(pg_temp.ext('pending'));
        INSERT INTO probe VALUES ('pending', format('returned %s/%s', r.outcome, r.problem));
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO probe VALUES ('pending', 'handler reached: ' || SQLSTATE);
    END;
END
$$;
SELECT results_eq($$SELECT k, reached FROM probe ORDER BY k$$,
                  $$VALUES ('pending'::text, 'returned rejected/invalid-transition'::text),
                           ('replicate', 'returned rejected/invalid-transition'),
                           ('resolve', 'returned rejected/invalid-transition')$$,
                  'the api calls returned a rejection: no exception handler was reached (nothing rolled back)');
SELECT results_eq($$SELECT from_state, to_state FROM pg_temp.violation_rows(test.bartx(1))$$,
                  $$VALUES ('Committed'::text, 'Aborted'::text), ('Committed', 'Aborted')$$,
                  'the violation row written inside the protected block exists afterwards (purchase 1: two rows now)');
SELECT results_eq($$SELECT from_state, to_state, payload FROM pg_temp.violation_rows(pg_temp.ext('pending')) OFFSET 3$$,
                  $$VALUES ('Committed'::text, 'Aborted'::text, '{"by": "admin", "reason": "second thoughts"}'::jsonb),
                           ('Committed', 'ExternalPending', '{}')$$,
                  'the resolve and pending violations written inside the block exist afterwards');
SELECT results_eq($$SELECT count(*)::integer FROM report.violation WHERE transaction_id = test.bartx(1)$$,
                  $$VALUES (2)$$, 'report.violation shows them too');

-- ---------------------------------------------------------------- a batch: each entry judged alone
INSERT INTO snap SELECT 'batch', pg_temp.ledger_state(), pg_temp.vcount();
SELECT results_eq(
    $$SELECT terminal_tx_number, state, outcome, problem FROM api.replicate(test.bar(), jsonb_build_array(
          test.entry(10, 'Committed', 'F0000001', 10, 450, 'Beer:1'),
          test.entry(2, 'Committed', 'F0000001', 2, 350, 'Pretzel:1'),
          test.entry(11, 'Aborted', 'F0000001', 11, 350, 'Pretzel:1'),
          test.entry(12, 'Committed', 'F0000001', 12, 500, 'Beer:1'),
          test.entry(13, 'Committed', 'F0000001', 13, 550, 'Pretzel:1', 'Cup:1'),
          test.entry(14, 'TerminalConfirmUnknown', 'F0000001', 14, 900, 'Beer:2')))$$,
    $$VALUES (10::bigint, 'Committed'::text, 'booked'::text, NULL::text),
             (2, 'Aborted', 'rejected', 'invalid-transition'),
             (11, 'Aborted', 'booked', NULL),
             (12, NULL, 'rejected', 'amount-mismatch'),
             (13, 'Committed', 'booked', NULL),
             (14, 'TerminalConfirmUnknown', 'booked', NULL)$$,
    'a batch with an invalid transition and a bad entry: every other entry is booked');
SELECT is(test.money('F0000001'), 'balance 10200 held 0', 'the valid purchases 450 + 550 are booked, nothing else');
SELECT is(pg_temp.vcount(), (SELECT violations + 1 FROM snap WHERE k = 'batch'), 'exactly one violation row for the batch');
SELECT is(test.violations(test.bartx(2)), 3, 'purchase 2 has its third violation');
SELECT is(test.bartx(12), NULL, 'the entry with a wrong amount left no transaction behind');
SELECT results_eq($$SELECT terminal_tx_number::bigint, state, test.lines(id) FROM ledger.transaction
                     WHERE assignment_id = test.bar() AND terminal_tx_number >= 10 ORDER BY 1$$,
                  $$VALUES (10::bigint, 'Committed'::ledger.tx_state, 1), (11, 'Aborted', 0), (13, 'Committed', 2),
                           (14, 'TerminalConfirmUnknown', 0)$$,
                  'the batch''s transactions: states and line counts');
SELECT is(test.account_balance(test.e(), 'deposit', 'deposit'), 200::bigint, 'the cup deposit of 200 went to the deposit account');
SELECT is(test.account_balance(test.e(), 'merchant', 'Bar'), 1600::bigint, 'merchant Bar: 450 + 350 + 450 + 350 (the cup is deposit)');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after the batch');
SELECT results_eq($$SELECT count(*)::integer FROM ledger.violation WHERE event_id IS DISTINCT FROM test.e()
                      AND transaction_id IN (SELECT id FROM ledger.transaction WHERE event_id = test.e())$$,
                  $$VALUES (0)$$, 'every violation row of the event carries its event id');

SELECT * FROM finish();
ROLLBACK;
