-- Tag sync (first tap, SPEC 7): the tag's unacknowledged log becomes Reserve holds, the first terminal's replication
-- commits them, and unknown outcomes are resolved from the (complete) log both ways.
BEGIN;
SELECT plan(64);

-- ---------------------------------------------------------------- fixtures
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP tag sync');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.e(), 'Food');
-- The terminal time of this suite's replication and tag log entries (test.entry, test.logentry).
INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-05T01:15:00+02:00"}');
CREATE TEMP TABLE snap (k text PRIMARY KEY, s text NOT NULL);

CREATE FUNCTION pg_temp.ack(VARIADIC p_numbers integer[]) RETURNS jsonb LANGUAGE sql AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('assignment_id', test.bar(), 'terminal_tx_number', n) ORDER BY o), '[]')
      FROM unnest(p_numbers) WITH ORDINALITY AS x(n, o) $$;
CREATE FUNCTION pg_temp.txinfo(p_tx bigint) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s held %s, %s lines', t.state, t.held, (SELECT count(*) FROM ledger.booking b WHERE b.transaction_id = t.id))
      FROM ledger.transaction t WHERE t.id = p_tx $$;
CREATE FUNCTION pg_temp.ledger_state() RETURNS text LANGUAGE sql AS $$
    SELECT format('lines %s; accounts %s; transactions %s',
        (SELECT count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id WHERE t.event_id = test.e()),
        (SELECT string_agg(format('%s/%s=%s/%s', kind, name, balance, held), ', ' ORDER BY account_id)
           FROM report.account_balance WHERE event_id = test.e()),
        (SELECT string_agg(format('%s=%s/%s/%s', id, state, held, amount), ', ' ORDER BY id)
           FROM ledger.transaction WHERE event_id = test.e())) $$;

SELECT is(test.funded_tag(test.e(), 'AB000001', 10000), 10000::bigint, 'tag 1 funded with 10000');
SELECT is(test.funded_tag(test.e(), 'AB000002', 10000), 10000::bigint, 'tag 2 funded with 10000');
SELECT is(test.funded_tag(test.e(), 'AB000003', 5000), 5000::bigint, 'tag 3 funded with 5000');

-- ---------------------------------------------------------------- offline purchases uploaded at another terminal
SELECT results_eq(
    $$SELECT uid, status, balance, held, available, acknowledged FROM api.tag_sync(test.food(), 'ab:00:00:01', 3, 9200,
          jsonb_build_array(test.logentry('AB000001', 1, 1, 450), test.logentry('AB000001', 2, 2, 350)))$$,
    $$SELECT 'AB000001'::text, 'active'::text, 10000::bigint, 800::bigint, 9200::bigint, pg_temp.ack(1, 2)$$,
    'tag sync at Food of two offline Bar purchases: both held, both acknowledged');
SELECT is(pg_temp.txinfo(test.bartx(1)), 'Reserve held 450, 0 lines', 'Bar purchase 1 is a Reserve holding 450');
SELECT is(pg_temp.txinfo(test.bartx(2)), 'Reserve held 350, 0 lines', 'Bar purchase 2 is a Reserve holding 350');
SELECT results_eq($$SELECT t.tag_tx_number::integer, t.amount::bigint, t.other_account_id, t.terminal_time FROM ledger.transaction t
                     WHERE t.id IN (test.bartx(1), test.bartx(2)) ORDER BY t.terminal_tx_number$$,
                  $$SELECT n, a, (SELECT account_id FROM ledger.merchant WHERE event_id = test.e() AND name = 'Bar'),
                           '2025-07-05T01:15:00+02:00'::timestamptz
                      FROM (VALUES (1, 450::bigint), (2, 350)) v(n, a)$$,
                  'the Reserves carry the tag numbers, amounts, the Bar merchant and the terminal time of the log');
SELECT is(test.money('AB000001'), 'balance 10000 held 800', 'tag 1: nothing booked yet, 800 held');
SELECT throws_ok($$SELECT * FROM api.reserve(test.food(), 1, 'AB000001', 3, 9250, test.items(test.e(), 'Tip:1:9250'))$$,
                 'FP020', NULL, 'the holds count: 9250 is more than the 9200 available');

SELECT results_eq(
    $$SELECT terminal_tx_number, state, outcome, problem FROM api.replicate(test.bar(), jsonb_build_array(
          test.entry(1, 'Committed', 'AB000001', 1, 450, 'Beer:1'), test.entry(2, 'Committed', 'AB000001', 2, 350, 'Pretzel:1')))$$,
    $$VALUES (1::bigint, 'Committed'::text, 'booked'::text, NULL::text), (2, 'Committed', 'booked', NULL)$$,
    'the Bar terminal''s replication commits both');
SELECT is(test.money('AB000001'), 'balance 9200 held 0', 'tag 1: 800 booked once, holds released');
SELECT is(pg_temp.txinfo(test.bartx(1)), 'Committed held 0, 1 lines', 'purchase 1 committed with one line');
SELECT is(pg_temp.txinfo(test.bartx(2)), 'Committed held 0, 1 lines', 'purchase 2 committed with one line');
SELECT results_eq($$SELECT name, quantity::integer, unit_price::bigint, vat_rate FROM ledger.item WHERE transaction_id = test.bartx(1)$$,
                  $$VALUES ('Beer'::text, 1, 450::bigint, 19.00::numeric(5,2))$$, 'the items of the replication are kept as sold');
SELECT is(test.account_balance(test.e(), 'merchant', 'Bar'), 800::bigint, 'merchant Bar received 800');
SELECT results_eq(
    $$SELECT terminal_tx_number, state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
          test.entry(1, 'Committed', 'AB000001', 1, 450, 'Beer:1'), test.entry(2, 'Committed', 'AB000001', 2, 350, 'Pretzel:1')))$$,
    $$VALUES (1::bigint, 'Committed'::text, 'duplicate'::text), (2, 'Committed', 'duplicate')$$,
    'the repeated batch is a duplicate');
SELECT is(test.money('AB000001'), 'balance 9200 held 0', 'nothing booked twice');
SELECT is(test.account_balance(test.e(), 'merchant', 'Bar'), 800::bigint, 'merchant Bar still at 800');
SELECT results_eq(
    $$SELECT balance, held, acknowledged FROM api.tag_sync(test.food(), 'AB000001', 3, 9200,
          jsonb_build_array(test.logentry('AB000001', 1, 1, 450), test.logentry('AB000001', 2, 2, 350)))$$,
    $$SELECT 9200::bigint, 0::bigint, pg_temp.ack(1, 2)$$,
    'the same log uploaded again (acknowledgement lost) changes nothing and is acknowledged again');
SELECT is(pg_temp.txinfo(test.bartx(1)) || ' / ' || pg_temp.txinfo(test.bartx(2)),
          'Committed held 0, 1 lines / Committed held 0, 1 lines', 'both stay Committed with one line each');
SELECT is((SELECT count(*)::integer FROM ledger.transaction WHERE event_id = test.e() AND type = 'purchase'), 2,
          'no further transaction was created');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after sync and replication');

-- ---------------------------------------------------------------- TerminalConfirmUnknown, charged: in the log -> Committed
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(3, 'TerminalConfirmUnknown', 'AB000002', 1, 900, 'Beer:2')))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text)$$, 'Bar purchase 3 of tag 2: outcome unknown');
SELECT is(test.money('AB000002'), 'balance 10000 held 0', 'tag 2: nothing booked for the unknown outcome');
SELECT results_eq(
    $$SELECT status, balance, held, available, acknowledged FROM api.tag_sync(test.food(), 'AB000002', 2, 9100,
          jsonb_build_array(test.logentry('AB000002', 3, 1, 900)))$$,
    $$SELECT 'active'::text, 9100::bigint, 0::bigint, 9100::bigint, pg_temp.ack(3)$$,
    'the tag''s log has the charge: tag sync books it');
SELECT is(pg_temp.txinfo(test.bartx(3)), 'Committed held 0, 1 lines', 'purchase 3 is Committed with its line of 900');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(3, 'TerminalConfirmUnknown', 'AB000002', 1, 900, 'Beer:2')))$$,
                  $$VALUES ('Committed'::text, 'duplicate'::text)$$,
                  'a repeated TerminalConfirmUnknown replication is told Committed (duplicate)');
SELECT is(test.money('AB000002'), 'balance 9100 held 0', 'booked once');

-- ---------------------------------------------------------------- not charged: below the next number, not in the log -> Aborted
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 4, 'AB000002', 2, 350, test.items(test.e(), 'Pretzel:1'))$$,
    $$VALUES ('ReservePending'::text, 8750::bigint)$$, 'Bar purchase 4 of tag 2 reserved (tag number 2)');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(4, 'TerminalConfirmUnknown', 'AB000002', 2, 350, 'Pretzel:1')))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text)$$, 'its outcome is unknown');
SELECT is(test.money('AB000002'), 'balance 9100 held 350', 'the hold of 350 is kept while unknown');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(5, 'TerminalConfirmUnknown', 'AB000002', 4, 450, 'Beer:1')))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text)$$, 'purchase 5 (tag number 4): outcome unknown');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(16, 'TerminalConfirmUnknown', 'AB000002', 3, 350, 'Pretzel:1')))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text)$$, 'purchase 16 (tag number 3): outcome unknown');
SELECT results_eq(
    $$SELECT status, balance, held, available, acknowledged FROM api.tag_sync(test.food(), 'AB000002', 3, 9100, '[]')$$,
    $$SELECT 'active'::text, 9100::bigint, 0::bigint, 9100::bigint, '[]'::jsonb$$,
    'sync with next number 3 and an empty log: numbers 2 and 3 were never written');
SELECT is(pg_temp.txinfo(test.bartx(4)), 'Aborted held 0, 0 lines', 'purchase 4 is Aborted, its hold released');
SELECT is(pg_temp.txinfo(test.bartx(16)), 'Aborted held 0, 0 lines',
          'purchase 16 (tag number 3 = the next number: a write would have moved it on) is Aborted by this one sync');
SELECT is(pg_temp.txinfo(test.bartx(5)), 'TerminalConfirmUnknown held 0, 0 lines',
          'purchase 5 (tag number 4, above the next number 3) stays TerminalConfirmUnknown');
SELECT is(test.money('AB000002'), 'balance 9100 held 0', 'tag 2: nothing booked, nothing held');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(4, 'TerminalConfirmUnknown', 'AB000002', 2, 350, 'Pretzel:1')))$$,
                  $$VALUES ('Aborted'::text, 'duplicate'::text)$$,
                  'a repeated TerminalConfirmUnknown replication of the aborted purchase is told Aborted');
SELECT results_eq(
    $$SELECT balance, held FROM api.tag_sync(test.food(), 'AB000002', 3, 9100, '[]')$$,
    $$VALUES (9100::bigint, 0::bigint)$$, 'the same sync again');
SELECT is(pg_temp.txinfo(test.bartx(5)), 'TerminalConfirmUnknown held 0, 0 lines', 'purchase 5 still unknown');
SELECT results_eq(
    $$SELECT balance, held, acknowledged FROM api.tag_sync(test.food(), 'AB000002', 5, 8650, jsonb_build_array(test.logentry('AB000002', 5, 4, 450)))$$,
    $$SELECT 8650::bigint, 0::bigint, pg_temp.ack(5)$$, 'when its write shows up in the log, purchase 5 is booked');
SELECT is(pg_temp.txinfo(test.bartx(5)), 'Committed held 0, 1 lines', 'purchase 5 Committed');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after resolving unknown outcomes');

-- ---------------------------------------------------------------- a tag the backend has never seen, with an empty log
SELECT results_eq(
    $$SELECT uid, status, balance, held, available, acknowledged FROM api.tag_sync(test.food(), '04a1b2c3d4e5f6', 0, 0, '[]')$$,
    $$VALUES ('04A1B2C3D4E5F6'::text, 'new'::text, 0::bigint, 0::bigint, 0::bigint, '[]'::jsonb)$$,
    'sync of an unknown tag with an empty log answers status new and zeros');
SELECT is_empty($$SELECT * FROM ledger.tag WHERE event_id = test.e() AND uid = '04A1B2C3D4E5F6'$$, 'no tag row was created');
SELECT is_empty($$SELECT * FROM ledger.account WHERE event_id = test.e() AND name = '04A1B2C3D4E5F6'$$, 'no account was created');
SELECT throws_ok($$SELECT * FROM api.tag_sync(test.food(), 'not-hex', 0, 0, '[]')$$, 'FP001', NULL,
                 'a malformed UID is a validation error');

-- ---------------------------------------------------------------- a blocked tag still books its log
SELECT is(api.block_tag(test.e(), 'AB000003'), 'blocked', 'tag 3 is blocked');
SELECT results_eq(
    $$SELECT status, balance, held, available, acknowledged FROM api.tag_sync(test.food(), 'AB000003', 2, 4550,
          jsonb_build_array(test.logentry('AB000003', 6, 1, 450)))$$,
    $$SELECT 'blocked'::text, 5000::bigint, 450::bigint, 4550::bigint, pg_temp.ack(6)$$,
    'sync of a blocked tag holds its offline charge and reports status blocked');
SELECT is(pg_temp.txinfo(test.bartx(6)), 'Reserve held 450, 0 lines', 'the blocked tag''s charge is a Reserve');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(6, 'Committed', 'AB000003', 1, 450, 'Beer:1')))$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'and the replication of it is booked');
SELECT is(test.money('AB000003'), 'balance 4550 held 0', 'tag 3 paid 450');
SELECT throws_ok($$SELECT * FROM api.reserve(test.bar(), 7, 'AB000003', 2, 450, test.items(test.e(), 'Beer:1'))$$,
                 'FP011', NULL, 'a blocked tag still cannot reserve');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after the blocked tag');

-- ---------------------------------------------------------------- a log entry that does not match the transaction
SELECT results_eq(
    $$SELECT state FROM api.reserve(test.bar(), 8, 'AB000001', 3, 450, test.items(test.e(), 'Beer:1'))$$,
    $$VALUES ('ReservePending'::text)$$, 'Bar purchase 8 of tag 1 reserved for 450');
INSERT INTO snap SELECT 'mismatch', pg_temp.ledger_state();
SELECT results_eq(
    $$SELECT acknowledged, refused FROM api.tag_sync(test.food(), 'AB000001', 4, 8750,
          jsonb_build_array(test.logentry('AB000001', 8, 3, 900)))$$,
    $$SELECT '[]'::jsonb, jsonb_build_array(jsonb_build_object('assignment_id', test.bar(), 'terminal_tx_number', 8,
                                                                'problem', 'idempotency-conflict'))$$,
    'sync with a log entry claiming 900 for that purchase does not raise: the entry is refused (idempotency-conflict)');
SELECT results_eq($$SELECT actor, event_id, from_state::text, to_state::text, payload FROM ledger.violation
                     WHERE transaction_id = test.bartx(8)$$,
                  $$SELECT 'assignment:' || test.food(), test.e(), 'ReservePending'::text, NULL::text, test.logentry('AB000001', 8, 3, 900)$$,
                  'the mismatch is logged once as a violation with the whole log entry');
SELECT is(pg_temp.txinfo(test.bartx(8)), 'ReservePending held 450, 0 lines', 'purchase 8 is untouched (not moved to Reserve)');
SELECT is(pg_temp.ledger_state(), (SELECT s FROM snap WHERE k = 'mismatch'), 'nothing else changed');
SELECT results_eq($$SELECT count(*)::integer FROM ledger.transaction WHERE assignment_id = test.bar() AND terminal_tx_number = 8$$,
                  $$VALUES (1)$$, 'no second transaction for the same terminal number');
SELECT results_eq($$SELECT state, outcome FROM api.replicate(test.bar(), jsonb_build_array(
                        test.entry(8, 'Committed', 'AB000001', 3, 450, 'Beer:1')))$$,
                  $$VALUES ('Committed'::text, 'booked'::text)$$, 'the terminal''s own record of 450 is booked');
SELECT is(test.money('AB000001'), 'balance 8750 held 0', 'tag 1 paid 450, not 900');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold at the end');

SELECT * FROM finish();
ROLLBACK;
