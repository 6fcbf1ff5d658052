-- Every allowed transition of ledger.transition (SPEC 5), exercised through the api, with its effect on the
-- customer's balance and held amount; repeating a final state is a duplicate that books nothing twice.
-- Each transition is recorded as it is OBSERVED (state before the call -> state after), and the suite ends by
-- checking that the observed set equals the table of allowed transitions.
BEGIN;
SELECT plan(188);

-- ---------------------------------------------------------------- fixtures
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP transitions', p_reserve_timeout_s => 1);
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.e(), 'Food');
-- The terminal time of this suite's replication and tag log entries (test.entry, test.logentry).
INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-04T21:30:00+02:00"}');
CREATE TEMP TABLE last_state (tx bigint PRIMARY KEY, state text NOT NULL);
CREATE TEMP TABLE exercised (from_state text, to_state text NOT NULL, via text NOT NULL);

CREATE FUNCTION pg_temp.booked(p_tx bigint) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s lines, %s cents', count(*), coalesce(sum(amount), 0)) FROM ledger.booking WHERE transaction_id = p_tx $$;
CREATE FUNCTION pg_temp.txheld(p_tx bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT held FROM ledger.transaction WHERE id = p_tx $$;
-- Records the transition seen since the last observation of this transaction (NULL = not seen before).
-- Returns the current state.
CREATE FUNCTION pg_temp.observe(p_tx bigint, p_via text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_prev text;
    v_cur text;
BEGIN
    SELECT state INTO v_prev FROM last_state WHERE tx = p_tx;
    SELECT state::text INTO v_cur FROM ledger.transaction WHERE id = p_tx;
    IF v_cur IS NULL THEN
        RETURN NULL;
    END IF;
    IF v_prev IS DISTINCT FROM v_cur THEN
        INSERT INTO exercised VALUES (v_prev, v_cur, p_via);
    END IF;
    INSERT INTO last_state VALUES (p_tx, v_cur) ON CONFLICT (tx) DO UPDATE SET state = excluded.state;
    RETURN v_cur;
END
$$;

SELECT is(test.funded_tag(test.e(), 'A0000001', 10000), 10000::bigint, 'tag A funded with 10000');
SELECT is(test.funded_tag(test.e(), 'B0000002', 1000), 1000::bigint, 'tag B funded with 1000');
SELECT is(test.funded_tag(test.e(), 'C0000003', 10000), 10000::bigint, 'tag C funded with 10000');
SELECT is(test.funded_tag(test.e(), 'D0000004', 10000), 10000::bigint, 'tag D funded with 10000');
SELECT is(test.funded_tag(test.e(), 'E0000005', 10000), 10000::bigint, 'tag E funded with 10000');

-- ---------------------------------------------------------------- (new) -> ReservePending -> Reserve -> Committed
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 1, 'A0000001', 1, 900, test.items(test.e(), 'Beer:2'))$$,
    $$VALUES ('ReservePending'::text, 9100::bigint)$$,
    'reserve of 900 answers ReservePending and available 9100');
SELECT is(pg_temp.observe(test.bartx(1), 'api.reserve'), 'ReservePending', '(new) -> ReservePending by api.reserve');
SELECT is(test.money('A0000001'), 'balance 10000 held 900', 'ReservePending holds the 900, books nothing');
SELECT is(pg_temp.booked(test.bartx(1)), '0 lines, 0 cents', 'ReservePending has no booking lines');

SELECT results_eq(
    $$SELECT status, balance, held, available, acknowledged
        FROM api.tag_sync(test.food(), 'A0000001', 2, 9100, jsonb_build_array(test.logentry('A0000001', 1, 1, 900)))$$,
    $$SELECT 'active'::text, 10000::bigint, 900::bigint, 9100::bigint,
             jsonb_build_array(jsonb_build_object('assignment_id', test.bar(), 'terminal_tx_number', 1))$$,
    'tag sync with the charge in its log answers balance 10000, held 900 and acknowledges it');
SELECT is(pg_temp.observe(test.bartx(1), 'api.tag_sync'), 'Reserve', 'ReservePending -> Reserve by tag sync');
SELECT is(test.money('A0000001'), 'balance 10000 held 900', 'Reserve keeps the hold of 900');
SELECT is(pg_temp.txheld(test.bartx(1)), 900::bigint, 'the Reserve transaction holds 900');
SELECT is(api.expire_reservations(test.e()), 0, 'a Reserve never expires (nothing is overdue)');

SELECT results_eq($$SELECT * FROM test.replicate(test.entry(1, 'Committed', 'A0000001', 1, 900, 'Beer:2'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'replicated Committed of a Reserve is booked');
SELECT is(pg_temp.observe(test.bartx(1), 'api.replicate'), 'Committed', 'Reserve -> Committed by replication');
SELECT is(test.money('A0000001'), 'balance 9100 held 0', 'Committed books 900 and releases the hold');
SELECT is(pg_temp.booked(test.bartx(1)), '1 lines, 900 cents', 'one line of 900 (Beer x2)');
SELECT is(test.account_balance(test.e(), 'merchant', 'Bar'), 900::bigint, 'merchant Bar received 900');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(1, 'Committed', 'A0000001', 1, 900, 'Beer:2'))$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text, NULL::text)$$, 'the same Committed again is a duplicate');
SELECT is(test.money('A0000001'), 'balance 9100 held 0', 'the duplicate books nothing');
SELECT is(pg_temp.booked(test.bartx(1)), '1 lines, 900 cents', 'still one line after the duplicate');
SELECT is(test.account_balance(test.e(), 'merchant', 'Bar'), 900::bigint, 'merchant Bar still at 900');

-- ---------------------------------------------------------------- (new) -> Reserve (unseen charge in a tag log)
SELECT results_eq(
    $$SELECT status, balance, held, available
        FROM api.tag_sync(test.food(), 'A0000001', 3, 8750, jsonb_build_array(test.logentry('A0000001', 2, 2, 350)))$$,
    $$VALUES ('active'::text, 9100::bigint, 350::bigint, 8750::bigint)$$,
    'tag sync with an unseen charge of 350 holds it');
SELECT is(pg_temp.observe(test.bartx(2), 'api.tag_sync'), 'Reserve', '(new) -> Reserve by tag sync');
SELECT is(test.money('A0000001'), 'balance 9100 held 350', 'the new Reserve holds 350');
SELECT is(pg_temp.booked(test.bartx(2)), '0 lines, 0 cents', 'a Reserve has no lines');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(2, 'Committed', 'A0000001', 2, 350, 'Pretzel:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'replication commits the tag-sync Reserve');
SELECT is(pg_temp.observe(test.bartx(2), 'api.replicate'), 'Committed', 'Reserve -> Committed (second case)');
SELECT is(test.money('A0000001'), 'balance 8750 held 0', 'Committed books 350 and releases the hold');
SELECT is((SELECT count(*)::integer FROM ledger.item WHERE transaction_id = test.bartx(2)), 1,
          'the items of the replication are stored with the Reserve made by tag sync');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after reserve / tag sync / replication');

-- ---------------------------------------------------------------- (new) -> Committed / Aborted by replication
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(3, 'Committed', 'A0000001', 3, 450, 'Beer:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'an unseen Committed is booked');
SELECT is(pg_temp.observe(test.bartx(3), 'api.replicate'), 'Committed', '(new) -> Committed by replication');
SELECT is(test.money('A0000001'), 'balance 8300 held 0', 'the offline purchase of 450 is booked');
SELECT is(pg_temp.booked(test.bartx(3)), '1 lines, 450 cents', 'one line of 450');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(3, 'Committed', 'A0000001', 3, 450, 'Beer:1'))$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text, NULL::text)$$, 'repeated Committed is a duplicate');
SELECT is(test.money('A0000001'), 'balance 8300 held 0', 'the duplicate books nothing');
SELECT is(pg_temp.booked(test.bartx(3)), '1 lines, 450 cents', 'still one line of 450');

SELECT results_eq($$SELECT * FROM test.replicate(test.entry(4, 'Aborted', 'A0000001', 4, 450, 'Beer:1'))$$,
                  $$VALUES ('Aborted'::text, 'booked'::text, NULL::text)$$, 'an unseen Aborted is accepted');
SELECT is(pg_temp.observe(test.bartx(4), 'api.replicate'), 'Aborted', '(new) -> Aborted by replication');
SELECT is(test.money('A0000001'), 'balance 8300 held 0', 'an Aborted moves no money and holds nothing');
SELECT is(pg_temp.booked(test.bartx(4)), '0 lines, 0 cents', 'an Aborted has no lines');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(4, 'Aborted', 'A0000001', 4, 450, 'Beer:1'))$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text, NULL::text)$$, 'repeated Aborted is a duplicate');
SELECT is(pg_temp.booked(test.bartx(4)), '0 lines, 0 cents', 'the repeated Aborted books nothing');

-- ---------------------------------------------------------------- ReservePending -> Committed / Aborted
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 5, 'A0000001', 5, 350, test.items(test.e(), 'Pretzel:1'))$$,
    $$VALUES ('ReservePending'::text, 7950::bigint)$$, 'reserve of 350 with 8300 available');
SELECT is(pg_temp.observe(test.bartx(5), 'api.reserve'), 'ReservePending', 'reserved (5)');
SELECT is(test.money('A0000001'), 'balance 8300 held 350', 'holds 350');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(5, 'Committed', 'A0000001', 5, 350, 'Pretzel:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'replicated Committed of a ReservePending is booked');
SELECT is(pg_temp.observe(test.bartx(5), 'api.replicate'), 'Committed', 'ReservePending -> Committed by replication');
SELECT is(test.money('A0000001'), 'balance 7950 held 0', 'books 350, releases the hold');
SELECT is(pg_temp.booked(test.bartx(5)), '1 lines, 350 cents', 'one line of 350');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(5, 'Committed', 'A0000001', 5, 350, 'Pretzel:1'))$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text, NULL::text)$$, 'repeat is a duplicate');
SELECT is(test.money('A0000001'), 'balance 7950 held 0', 'and books nothing twice');

SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 6, 'A0000001', 6, 450, test.items(test.e(), 'Beer:1'))$$,
    $$VALUES ('ReservePending'::text, 7500::bigint)$$, 'reserve of 450');
SELECT is(pg_temp.observe(test.bartx(6), 'api.reserve'), 'ReservePending', 'reserved (6)');
SELECT is(test.money('A0000001'), 'balance 7950 held 450', 'holds 450');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(6, 'Aborted', 'A0000001', 6, 450, 'Beer:1'))$$,
                  $$VALUES ('Aborted'::text, 'booked'::text, NULL::text)$$, 'replicated Aborted of a ReservePending is accepted');
SELECT is(pg_temp.observe(test.bartx(6), 'api.replicate'), 'Aborted', 'ReservePending -> Aborted by replication');
SELECT is(test.money('A0000001'), 'balance 7950 held 0', 'Aborted releases the hold, books nothing');
SELECT is(pg_temp.booked(test.bartx(6)), '0 lines, 0 cents', 'no lines');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(6, 'Aborted', 'A0000001', 6, 450, 'Beer:1'))$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text, NULL::text)$$, 'repeat is a duplicate');
SELECT is(test.money('A0000001'), 'balance 7950 held 0', 'the duplicate changes nothing');

-- ---------------------------------------------------------------- ReservePending -> ReserveExpired -> Aborted
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 7, 'A0000001', 7, 900, test.items(test.e(), 'Beer:2'))$$,
    $$VALUES ('ReservePending'::text, 7050::bigint)$$, 'reserve of 900');
SELECT is(pg_temp.observe(test.bartx(7), 'api.reserve'), 'ReservePending', 'reserved (7)');
SELECT is(test.money('A0000001'), 'balance 7950 held 900', 'holds 900');
SELECT is(api.expire_reservations(test.e()), 0, 'nothing expires before the timeout');
UPDATE ledger.transaction SET expires_at = now() - interval '1 s' WHERE id = test.bartx(7);
SELECT is(api.expire_reservations(test.e()), 1, 'the overdue reservation expires');
SELECT is(pg_temp.observe(test.bartx(7), 'api.expire_reservations'), 'ReserveExpired',
          'ReservePending -> ReserveExpired by api.expire_reservations');
SELECT is(test.money('A0000001'), 'balance 7950 held 0', 'expiry releases the hold');
SELECT is(pg_temp.txheld(test.bartx(7)), 0::bigint, 'the expired transaction holds nothing');
SELECT is(api.expire_reservations(test.e()), 0, 'expiring again finds nothing');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(7, 'Aborted', 'A0000001', 7, 900, 'Beer:2'))$$,
                  $$VALUES ('Aborted'::text, 'booked'::text, NULL::text)$$, 'replicated Aborted of a ReserveExpired is accepted');
SELECT is(pg_temp.observe(test.bartx(7), 'api.replicate'), 'Aborted', 'ReserveExpired -> Aborted by replication');
SELECT is(test.money('A0000001'), 'balance 7950 held 0', 'nothing booked, nothing held');
SELECT is(pg_temp.booked(test.bartx(7)), '0 lines, 0 cents', 'no lines');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(7, 'Aborted', 'A0000001', 7, 900, 'Beer:2'))$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text, NULL::text)$$, 'repeat is a duplicate');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after the tag A scenarios');

-- ---------------------------------------------------------------- ReserveExpired -> Committed, overdrawing
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 8, 'B0000002', 1, 900, test.items(test.e(), 'Beer:2'))$$,
    $$VALUES ('ReservePending'::text, 100::bigint)$$, 'tag B reserves 900 of its 1000');
SELECT is(pg_temp.observe(test.bartx(8), 'api.reserve'), 'ReservePending', 'reserved (8)');
UPDATE ledger.transaction SET expires_at = now() - interval '1 s' WHERE id = test.bartx(8);
SELECT is(api.expire_reservations(test.e()), 1, 'tag B''s reservation expires');
SELECT is(pg_temp.observe(test.bartx(8), 'api.expire_reservations'), 'ReserveExpired', 'expired (8)');
SELECT is(test.money('B0000002'), 'balance 1000 held 0', 'the expiry gives the 900 back to available');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(9, 'Committed', 'B0000002', 2, 450, 'Beer:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'another purchase of 450 on tag B');
SELECT is(pg_temp.observe(test.bartx(9), 'api.replicate'), 'Committed', 'booked (9)');
SELECT is(test.money('B0000002'), 'balance 550 held 0', 'tag B has 550 left');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(8, 'Committed', 'B0000002', 1, 900, 'Beer:2'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$,
                  'replicated Committed of the expired reservation is booked although it overdraws');
SELECT is(pg_temp.observe(test.bartx(8), 'api.replicate'), 'Committed', 'ReserveExpired -> Committed by replication');
SELECT is(test.money('B0000002'), 'balance -350 held 0', 'tag B is overdrawn by 350');
SELECT is(pg_temp.booked(test.bartx(8)), '1 lines, 900 cents', 'one line of 900');
SELECT results_eq($$SELECT account_id, balance_after FROM ledger.overdraft WHERE transaction_id = test.bartx(8)$$,
                  $$SELECT account_id, -350::bigint FROM ledger.tag WHERE event_id = test.e() AND uid = 'B0000002'$$,
                  'the overdraft is flagged on tag B''s account with balance_after -350');
SELECT results_eq($$SELECT uid, balance_after, reviewed_at FROM report.overdraft WHERE transaction_id = test.bartx(8)$$,
                  $$VALUES ('B0000002'::text, -350::bigint, NULL::timestamptz)$$, 'report.overdraft shows it, unreviewed');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(8, 'Committed', 'B0000002', 1, 900, 'Beer:2'))$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text, NULL::text)$$, 'repeat is a duplicate');
SELECT is(test.money('B0000002'), 'balance -350 held 0', 'the duplicate books nothing twice');
SELECT is((SELECT count(*)::integer FROM ledger.overdraft o JOIN ledger.account a ON a.id = o.account_id
            WHERE a.event_id = test.e()), 1, 'exactly one overdraft flagged in the event');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold with a flagged overdraft');

-- ---------------------------------------------------------------- TerminalConfirmUnknown resolved by tag sync
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(10, 'TerminalConfirmUnknown', 'C0000003', 1, 450, 'Beer:1'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text, NULL::text)$$, 'an unseen TerminalConfirmUnknown is accepted');
SELECT is(pg_temp.observe(test.bartx(10), 'api.replicate'), 'TerminalConfirmUnknown', '(new) -> TerminalConfirmUnknown by replication');
SELECT is(test.money('C0000003'), 'balance 10000 held 0', 'an unseen TerminalConfirmUnknown holds nothing (nothing was held)');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(10, 'TerminalConfirmUnknown', 'C0000003', 1, 450, 'Beer:1'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'duplicate'::text, NULL::text)$$, 'repeated TerminalConfirmUnknown is a duplicate');
SELECT results_eq(
    $$SELECT status, balance, held FROM api.tag_sync(test.food(), 'C0000003', 2, 9550, jsonb_build_array(test.logentry('C0000003', 10, 1, 450)))$$,
    $$VALUES ('active'::text, 9550::bigint, 0::bigint)$$, 'tag sync whose log has the charge books it');
SELECT is(pg_temp.observe(test.bartx(10), 'api.tag_sync'), 'Committed', 'TerminalConfirmUnknown -> Committed by tag sync');
SELECT is(test.money('C0000003'), 'balance 9550 held 0', 'the 450 is booked');
SELECT is(pg_temp.booked(test.bartx(10)), '1 lines, 450 cents', 'one line of 450');

SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 11, 'C0000003', 2, 350, test.items(test.e(), 'Pretzel:1'))$$,
    $$VALUES ('ReservePending'::text, 9200::bigint)$$, 'tag C reserves 350');
SELECT is(pg_temp.observe(test.bartx(11), 'api.reserve'), 'ReservePending', 'reserved (11)');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(11, 'TerminalConfirmUnknown', 'C0000003', 2, 350, 'Pretzel:1'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text, NULL::text)$$, 'replicated TerminalConfirmUnknown of a ReservePending');
SELECT is(pg_temp.observe(test.bartx(11), 'api.replicate'), 'TerminalConfirmUnknown', 'ReservePending -> TerminalConfirmUnknown by replication');
SELECT is(test.money('C0000003'), 'balance 9550 held 350', 'TerminalConfirmUnknown keeps the hold of 350');
SELECT is(pg_temp.txheld(test.bartx(11)), 350::bigint, 'the transaction still holds 350');
SELECT results_eq(
    $$SELECT status, balance, held, acknowledged FROM api.tag_sync(test.food(), 'C0000003', 3, 9550, '[]')$$,
    $$VALUES ('active'::text, 9550::bigint, 0::bigint, '[]'::jsonb)$$, 'tag sync with next number 3 and an empty log');
SELECT is(pg_temp.observe(test.bartx(11), 'api.tag_sync'), 'Aborted', 'TerminalConfirmUnknown -> Aborted by tag sync');
SELECT is(test.money('C0000003'), 'balance 9550 held 0', 'the hold is released, nothing booked');
SELECT is(pg_temp.booked(test.bartx(11)), '0 lines, 0 cents', 'no lines');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after tag-sync resolution');

-- ---------------------------------------------------------------- TerminalConfirmUnknown resolved by an admin
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(12, 'TerminalConfirmUnknown', 'D0000004', 1, 450, 'Beer:1'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text, NULL::text)$$, 'unknown outcome (12)');
SELECT is(pg_temp.observe(test.bartx(12), 'api.replicate'), 'TerminalConfirmUnknown', 'TerminalConfirmUnknown (12)');
SELECT results_eq($$SELECT state, outcome, problem FROM api.resolve_transaction(test.bartx(12), 'Committed', 'receipt found')$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'admin resolves it Committed');
SELECT is(pg_temp.observe(test.bartx(12), 'api.resolve_transaction'), 'Committed', 'TerminalConfirmUnknown -> Committed by api.resolve_transaction');
SELECT is(test.money('D0000004'), 'balance 9550 held 0', 'the 450 is booked');
SELECT is(pg_temp.booked(test.bartx(12)), '1 lines, 450 cents', 'one line of 450');
SELECT results_eq($$SELECT state, outcome, problem FROM api.resolve_transaction(test.bartx(12), 'Committed', 'receipt found')$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text, NULL::text)$$, 'the same resolution again is a duplicate');
SELECT is(test.money('D0000004'), 'balance 9550 held 0', 'and books nothing twice');

SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 13, 'D0000004', 2, 900, test.items(test.e(), 'Beer:2'))$$,
    $$VALUES ('ReservePending'::text, 8650::bigint)$$, 'tag D reserves 900');
SELECT is(pg_temp.observe(test.bartx(13), 'api.reserve'), 'ReservePending', 'reserved (13)');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(13, 'TerminalConfirmUnknown', 'D0000004', 2, 900, 'Beer:2'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text, NULL::text)$$, 'unknown outcome (13)');
SELECT is(pg_temp.observe(test.bartx(13), 'api.replicate'), 'TerminalConfirmUnknown', 'TerminalConfirmUnknown (13)');
SELECT is(test.money('D0000004'), 'balance 9550 held 900', 'still holding 900');
SELECT results_eq($$SELECT state, outcome, problem FROM api.resolve_transaction(test.bartx(13), 'Aborted', 'customer was not charged')$$,
                  $$VALUES ('Aborted'::text, 'booked'::text, NULL::text)$$, 'admin resolves it Aborted');
SELECT is(pg_temp.observe(test.bartx(13), 'api.resolve_transaction'), 'Aborted', 'TerminalConfirmUnknown -> Aborted by api.resolve_transaction');
SELECT is(test.money('D0000004'), 'balance 9550 held 0', 'the hold is released, nothing booked');
SELECT results_eq($$SELECT state, outcome, problem FROM api.resolve_transaction(test.bartx(13), 'Aborted', 'customer was not charged')$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text, NULL::text)$$, 'the same resolution again is a duplicate');

SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 14, 'D0000004', 3, 350, test.items(test.e(), 'Pretzel:1'))$$,
    $$VALUES ('ReservePending'::text, 9200::bigint)$$, 'tag D reserves 350');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(14, 'TerminalConfirmUnknown', 'D0000004', 3, 350, 'Pretzel:1'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text, NULL::text)$$, 'unknown outcome (14) with a hold');
SELECT results_eq($$SELECT state, outcome, problem FROM api.resolve_transaction(test.bartx(14), 'Committed', 'receipt found')$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'admin commits a TerminalConfirmUnknown that held');
SELECT is(test.money('D0000004'), 'balance 9200 held 0', 'books 350 and releases its hold');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after admin resolution');

-- ---------------------------------------------------------------- Open -> ExternalPending -> Committed / Aborted / ExternalUnknown
CREATE TEMP TABLE ext (k text PRIMARY KEY, tx bigint NOT NULL);
INSERT INTO ext SELECT 'ok', api.external_topup_create(test.e(), 'E0000005', 2000);
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'ok'), 'api.external_topup_create'), 'Open', '(new) -> Open by api.external_topup_create');
SELECT is(test.money('E0000005'), 'balance 10000 held 0', 'an Open top-up moves nothing');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_pending((SELECT tx FROM ext WHERE k = 'ok'))$$,
                  $$VALUES ('ExternalPending'::text, 'booked'::text, NULL::text)$$, 'external_topup_pending accepted');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'ok'), 'api.external_topup_pending'), 'ExternalPending', 'Open -> ExternalPending');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_pending((SELECT tx FROM ext WHERE k = 'ok'))$$,
                  $$VALUES ('ExternalPending'::text, 'duplicate'::text, NULL::text)$$, 'pending again is a duplicate');
SELECT is(test.money('E0000005'), 'balance 10000 held 0', 'ExternalPending moves nothing');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_result((SELECT tx FROM ext WHERE k = 'ok'), 'success')$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'provider success books it');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'ok'), 'api.external_topup_result'), 'Committed', 'ExternalPending -> Committed');
SELECT is(test.money('E0000005'), 'balance 12000 held 0', 'the 2000 are credited');
SELECT is(pg_temp.booked((SELECT tx FROM ext WHERE k = 'ok')), '1 lines, 2000 cents', 'one line of 2000 (no online fee)');
SELECT is(test.account_balance(test.e(), 'topup', 'online'), -2000::bigint, 'topup/online paid 2000');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_result((SELECT tx FROM ext WHERE k = 'ok'), 'success')$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text, NULL::text)$$, 'the same success again is a duplicate');
SELECT is(test.money('E0000005'), 'balance 12000 held 0', 'and credits nothing twice');

INSERT INTO ext SELECT 'fail', api.external_topup_create(test.e(), 'E0000005', 1000);
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'fail'), 'api.external_topup_create'), 'Open', 'Open (fail)');
SELECT results_eq($$SELECT state FROM api.external_topup_pending((SELECT tx FROM ext WHERE k = 'fail'))$$,
                  $$VALUES ('ExternalPending'::text)$$, 'pending (fail)');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'fail'), 'api.external_topup_pending'), 'ExternalPending', 'ExternalPending (fail)');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_result((SELECT tx FROM ext WHERE k = 'fail'), 'failure')$$,
                  $$VALUES ('Aborted'::text, 'booked'::text, NULL::text)$$, 'provider failure aborts it');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'fail'), 'api.external_topup_result'), 'Aborted', 'ExternalPending -> Aborted');
SELECT is(test.money('E0000005'), 'balance 12000 held 0', 'a failed top-up credits nothing');
SELECT is(pg_temp.booked((SELECT tx FROM ext WHERE k = 'fail')), '0 lines, 0 cents', 'no lines');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_result((SELECT tx FROM ext WHERE k = 'fail'), 'failure')$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text, NULL::text)$$, 'the same failure again is a duplicate');

INSERT INTO ext SELECT 'late-ok', api.external_topup_create(test.e(), 'E0000005', 3000);
INSERT INTO ext SELECT 'late-fail', api.external_topup_create(test.e(), 'E0000005', 500);
INSERT INTO ext SELECT 'admin-ok', api.external_topup_create(test.e(), 'E0000005', 700);
INSERT INTO ext SELECT 'admin-fail', api.external_topup_create(test.e(), 'E0000005', 800);
SELECT is((SELECT count(*)::integer FROM ext WHERE k <> 'ok' AND k <> 'fail' AND pg_temp.observe(tx, 'api.external_topup_create') = 'Open'),
          4, 'four more Open top-ups');
SELECT results_eq($$SELECT e.k, p.state, p.outcome FROM ext e, api.external_topup_pending(e.tx) p WHERE e.k LIKE '%-%' ORDER BY e.k$$,
                  $$VALUES ('admin-fail'::text, 'ExternalPending'::text, 'booked'::text), ('admin-ok', 'ExternalPending', 'booked'),
                           ('late-fail', 'ExternalPending', 'booked'), ('late-ok', 'ExternalPending', 'booked')$$,
                  'all four pending');
SELECT is((SELECT count(*)::integer FROM ext WHERE k LIKE '%-%' AND pg_temp.observe(tx, 'api.external_topup_pending') = 'ExternalPending'),
          4, 'four ExternalPending');
SELECT results_eq($$SELECT e.k, r.state, r.outcome FROM ext e, api.external_topup_result(e.tx, 'unknown') r WHERE e.k LIKE '%-%' ORDER BY e.k$$,
                  $$VALUES ('admin-fail'::text, 'ExternalUnknown'::text, 'booked'::text), ('admin-ok', 'ExternalUnknown', 'booked'),
                           ('late-fail', 'ExternalUnknown', 'booked'), ('late-ok', 'ExternalUnknown', 'booked')$$,
                  'the background check gives up on all four: ExternalUnknown');
SELECT is((SELECT count(*)::integer FROM ext WHERE k LIKE '%-%' AND pg_temp.observe(tx, 'api.external_topup_result') = 'ExternalUnknown'),
          4, 'ExternalPending -> ExternalUnknown (four times)');
SELECT is(test.money('E0000005'), 'balance 12000 held 0', 'ExternalUnknown credits nothing');
SELECT results_eq($$SELECT state, outcome, problem FROM api.external_topup_result((SELECT tx FROM ext WHERE k = 'late-ok'), 'unknown')$$,
                  $$VALUES ('ExternalUnknown'::text, 'duplicate'::text, NULL::text)$$, 'unknown again is a duplicate');

SELECT results_eq($$SELECT state, outcome FROM api.external_topup_result((SELECT tx FROM ext WHERE k = 'late-ok'), 'success')$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'a late success books it');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'late-ok'), 'api.external_topup_result'), 'Committed', 'ExternalUnknown -> Committed by a late answer');
SELECT is(test.money('E0000005'), 'balance 15000 held 0', '3000 credited');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_result((SELECT tx FROM ext WHERE k = 'late-fail'), 'failure')$$,
                  $$VALUES ('Aborted'::text, 'booked'::text)$$, 'a late failure aborts it');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'late-fail'), 'api.external_topup_result'), 'Aborted', 'ExternalUnknown -> Aborted by a late answer');
SELECT is(test.money('E0000005'), 'balance 15000 held 0', 'nothing credited for the late failure');
SELECT results_eq($$SELECT state, outcome FROM api.resolve_transaction((SELECT tx FROM ext WHERE k = 'admin-ok'), 'Committed', 'provider portal shows it paid')$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'admin commits an ExternalUnknown');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'admin-ok'), 'api.resolve_transaction'), 'Committed', 'ExternalUnknown -> Committed by api.resolve_transaction');
SELECT is(test.money('E0000005'), 'balance 15700 held 0', '700 credited');
SELECT results_eq($$SELECT state, outcome FROM api.resolve_transaction((SELECT tx FROM ext WHERE k = 'admin-ok'), 'Committed', 'provider portal shows it paid')$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text)$$, 'the same resolution again is a duplicate');
SELECT is(test.money('E0000005'), 'balance 15700 held 0', 'nothing credited twice');
SELECT results_eq($$SELECT state, outcome FROM api.resolve_transaction((SELECT tx FROM ext WHERE k = 'admin-fail'), 'Aborted', 'provider portal shows no payment')$$,
                  $$VALUES ('Aborted'::text, 'booked'::text)$$, 'admin aborts an ExternalUnknown');
SELECT is(pg_temp.observe((SELECT tx FROM ext WHERE k = 'admin-fail'), 'api.resolve_transaction'), 'Aborted', 'ExternalUnknown -> Aborted by api.resolve_transaction');
SELECT is(test.money('E0000005'), 'balance 15700 held 0', 'nothing credited');
SELECT is(test.account_balance(test.e(), 'topup', 'online'), -5700::bigint, 'topup/online paid 2000 + 3000 + 700');
SELECT results_eq($$SELECT e.k, pg_temp.booked(e.tx) FROM ext e ORDER BY e.k$$,
                  $$VALUES ('admin-fail'::text, '0 lines, 0 cents'::text), ('admin-ok', '1 lines, 700 cents'),
                           ('fail', '0 lines, 0 cents'), ('late-fail', '0 lines, 0 cents'),
                           ('late-ok', '1 lines, 3000 cents'), ('ok', '1 lines, 2000 cents')$$,
                  'lines exist exactly for the committed online top-ups');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after the online top-ups');

-- ---------------------------------------------------------------- table-driven: every allowed transition was exercised
SELECT is((SELECT count(*)::integer FROM ledger.transition), 22, 'ledger.transition has 22 allowed transitions');
SELECT is((SELECT count(*)::integer FROM (SELECT DISTINCT from_state, to_state FROM exercised) x), 22,
          '22 distinct transitions were observed');
SELECT set_eq($$SELECT from_state::text, to_state::text FROM ledger.transition$$,
              $$SELECT DISTINCT from_state, to_state FROM exercised$$,
              'the observed transitions are exactly the allowed ones');
SELECT is_empty($$SELECT t.id, t.state FROM ledger.transaction t WHERE t.event_id = test.e()
                    AND t.state IN ('ReservePending', 'Reserve') $$,
                'no reservation is left open');
SELECT results_eq($$SELECT sum(balance)::bigint FROM report.account_balance WHERE event_id = test.e()$$,
                  $$VALUES (0::bigint)$$, 'the event''s balances sum to 0');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold at the end');

SELECT * FROM finish();
ROLLBACK;
