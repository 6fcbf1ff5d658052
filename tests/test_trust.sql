-- Terminal trust (SPEC 7): a tag log entry is trusted only with the MAC of the sale terminal of this event it names,
-- below the tag's next number, and (unseen charges together) within the offline limit; an unseen Committed sale of an
-- unknown tag or above the offline limit is implausible; a repeated terminal number must carry the same request.
-- Every refusal holds and books nothing and keeps the whole entry in the violation log.
BEGIN;
SELECT plan(200);

-- ---------------------------------------------------------------- fixtures
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP trust');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.e(), 'Food');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.e(), 'Top-up');
INSERT INTO test.ctx SELECT 'e2', test.event('pgTAP trust, another event');
INSERT INTO test.ctx SELECT 'xbar', test.terminal(test.v('e2'), 'Bar');
-- The terminal time of this suite's replication and tag log entries (test.entry, test.logentry).
INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-05T23:40:00+02:00"}');

-- Everything about the event's money: lines, items, every account's balance and held amount, every transaction.
CREATE FUNCTION pg_temp.ledger_state() RETURNS text LANGUAGE sql AS $$
    SELECT format('lines %s; items %s; accounts %s; transactions %s',
        (SELECT count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id WHERE t.event_id = test.e()),
        (SELECT count(*) FROM ledger.item i JOIN ledger.transaction t ON t.id = i.transaction_id WHERE t.event_id = test.e()),
        (SELECT string_agg(format('%s/%s=%s/%s', kind, name, balance, held), ', ' ORDER BY account_id)
           FROM report.account_balance WHERE event_id = test.e()),
        (SELECT string_agg(format('%s=%s/%s/%s', id, state, held, amount), ', ' ORDER BY id)
           FROM ledger.transaction WHERE event_id = test.e())) $$;
CREATE FUNCTION pg_temp.vcount() RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM ledger.violation WHERE event_id = test.e() $$;
-- The newest violation row of the event: who, the problem its reason starts with, and the payload.
CREATE FUNCTION pg_temp.last_violation() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('actor', actor, 'problem', split_part(reason, ':', 1), 'payload', payload)
      FROM ledger.violation WHERE event_id = test.e() ORDER BY id DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.txinfo(p_tx bigint) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s held %s, %s lines', t.state, t.held, (SELECT count(*) FROM ledger.booking b WHERE b.transaction_id = t.id))
      FROM ledger.transaction t WHERE t.id = p_tx $$;
CREATE FUNCTION pg_temp.ack(VARIADIC p_numbers integer[]) RETURNS jsonb LANGUAGE sql AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('assignment_id', test.bar(), 'terminal_tx_number', n) ORDER BY o), '[]')
      FROM unnest(p_numbers) WITH ORDINALITY AS x(n, o) $$;

-- A tag sync at the Food terminal with one log entry that must be refused with p_problem: six assertions (the answer
-- names it and acknowledges nothing, nothing changed, one violation row with the whole entry, invariants hold).
CREATE FUNCTION pg_temp.sync_refused(p_label text, p_uid text, p_next integer, p_entry jsonb, p_problem text)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    v_before text := pg_temp.ledger_state();
    v_violations integer := pg_temp.vcount();
    r record;
BEGIN
    SELECT * INTO r FROM api.tag_sync(test.food(), p_uid, p_next, test.balance(test.e(), p_uid), jsonb_build_array(p_entry));
    RETURN NEXT is(r.refused, jsonb_build_array(jsonb_build_object('assignment_id', p_entry -> 'assignment_id',
                   'terminal_tx_number', p_entry -> 'terminal_tx_number', 'problem', p_problem)),
                   p_label || ': refused as ' || p_problem);
    RETURN NEXT is(r.acknowledged, '[]'::jsonb, p_label || ': not acknowledged');
    RETURN NEXT is(pg_temp.ledger_state(), v_before, p_label || ': nothing held or booked, no transaction made');
    RETURN NEXT is(pg_temp.vcount(), v_violations + 1, p_label || ': exactly one violation row');
    RETURN NEXT is(pg_temp.last_violation(),
                   jsonb_build_object('actor', 'assignment:' || test.food(), 'problem', p_problem, 'payload', p_entry),
                   p_label || ': the violation row names the syncing terminal, the problem and the whole entry');
    RETURN NEXT is_empty($q$SELECT * FROM api.check_invariants()$q$, p_label || ': invariants hold');
END
$$;

-- A replication at the Bar terminal of one entry that must be rejected with p_problem (the state stays p_state):
-- five assertions, as pg_temp.sync_refused.
CREATE FUNCTION pg_temp.replication_refused(p_label text, p_entry jsonb, p_problem text, p_state text)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    v_before text := pg_temp.ledger_state();
    v_violations integer := pg_temp.vcount();
BEGIN
    RETURN NEXT results_eq(format('SELECT * FROM test.replicate(%L::jsonb)', p_entry),
                           format('VALUES (%L::text, %L::text, %L::text)', p_state, 'rejected', p_problem),
                           p_label || ': rejected as ' || p_problem);
    RETURN NEXT is(pg_temp.ledger_state(), v_before, p_label || ': nothing held or booked, no transaction made');
    RETURN NEXT is(pg_temp.vcount(), v_violations + 1, p_label || ': exactly one violation row');
    RETURN NEXT is(pg_temp.last_violation(),
                   jsonb_build_object('actor', 'assignment:' || test.bar(), 'problem', p_problem, 'payload', p_entry),
                   p_label || ': the violation row names the terminal, the problem and the whole entry');
    RETURN NEXT is_empty($q$SELECT * FROM api.check_invariants()$q$, p_label || ': invariants hold');
END
$$;

-- A repeated terminal number with other content (p_sql raises): idempotency-conflict and nothing changed.
CREATE FUNCTION pg_temp.conflict(p_label text, p_sql text)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    v_before text := pg_temp.ledger_state();
BEGIN
    RETURN NEXT throws_ok(p_sql, 'FP031', NULL, p_label || ': idempotency-conflict');
    RETURN NEXT is(pg_temp.ledger_state(), v_before, p_label || ': nothing held or booked');
END
$$;

SELECT is(test.funded_tag(test.e(), 'C1000001', 10000), 10000::bigint, 'tag C1 funded with 10000');
SELECT is(test.funded_tag(test.e(), 'C2000002', 10000), 10000::bigint, 'tag C2 funded with 10000');
SELECT is(test.funded_tag(test.e(), 'C3000003', 10000), 10000::bigint, 'tag C3 funded with 10000');
SELECT is(test.funded_tag(test.e(), 'C4000004', 10000), 10000::bigint, 'tag C4 funded with 10000');
SELECT is(test.funded_tag(test.e(), 'C5000005', 10000), 10000::bigint, 'tag C5 funded with 10000');

-- ---------------------------------------------------------------- the MAC
SELECT is(ledger.log_entry_mac(decode(repeat('6b', 32), 'hex'), 1, 2, 'AB00', 3, 450),
          '4x1cqT4Bgz3XN9HFqAQJegkWS1KFlZguI1lv656DgPs=',
          'the MAC of a log entry is the one python_gateway.signing.log_entry_mac computes');
SELECT is(ledger.log_entry_mac((SELECT secret FROM ledger.assignment WHERE id = test.bar()), test.bar(), 9, 'C1000001', 4, 350),
          test.mac(test.bar(), 9, 'c1:00:00:01', 4, 350), 'the ledger and the suite''s own computation agree');
SELECT results_eq($$SELECT slug, sqlstate, http_status FROM api.problem_types() WHERE sqlstate LIKE 'FP06_'$$,
                  $$VALUES ('log-entry-forged'::text, 'FP060'::text, 422), ('log-entry-foreign', 'FP061', 422),
                           ('log-entry-number-too-high', 'FP062', 422), ('offline-limit-exceeded', 'FP063', 422),
                           ('implausible-offline-charge', 'FP064', 422)$$,
                  'the refusals are named problems');

-- ---------------------------------------------------------------- a trusted entry is held
SELECT results_eq(
    $$SELECT held, acknowledged, refused FROM api.tag_sync(test.food(), 'c1:00:00:01', 1, 9550,
          jsonb_build_array(test.logentry('C1000001', 1, 0, 450)))$$,
    $$SELECT 450::bigint, pg_temp.ack(1), '[]'::jsonb$$,
    'an entry with the Bar terminal''s MAC is held and acknowledged, nothing refused');
SELECT is(pg_temp.txinfo(test.bartx(1)), 'Reserve held 450, 0 lines', 'it is a Reserve of 450');

-- ---------------------------------------------------------------- forged entries
SELECT pg_temp.sync_refused('a wrong MAC (that of another amount)', 'C1000001', 2,
    test.logentry('C1000001', 2, 1, 450) || jsonb_build_object('mac', test.mac(test.bar(), 2, 'C1000001', 1, 900)),
    'log-entry-forged');
SELECT pg_temp.sync_refused('no MAC', 'C1000001', 2, test.logentry('C1000001', 3, 1, 450) - 'mac', 'log-entry-forged');
SELECT pg_temp.sync_refused('a MAC that is not a string', 'C1000001', 2,
    test.logentry('C1000001', 3, 1, 450) || '{"mac": 12345}', 'log-entry-forged');
SELECT pg_temp.sync_refused('an entry copied from another tag', 'C1000001', 2, test.logentry('C2000002', 4, 1, 450),
    'log-entry-forged');

-- Terminal Food writes a charge naming Bar's assignment and a number Bar has not used yet. Were it trusted, it would be
-- a Reserve that never expires, and Bar's own reserve under that number an idempotency-conflict.
SELECT pg_temp.sync_refused('Food''s entry in Bar''s name, signed with Food''s secret', 'C1000001', 2,
    test.logentry('C1000001', 5, 1, 450) || jsonb_build_object('mac', test.mac(test.food(), 5, 'C1000001', 1, 450)),
    'log-entry-forged');
SELECT is(test.bartx(5), NULL, 'no transaction holds Bar''s number 5');
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 5, 'C1000001', 1, 450, test.items(test.e(), 'Beer:1'))$$,
    $$VALUES ('ReservePending'::text, 9100::bigint)$$, 'Bar''s own reserve under number 5 works');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(5, 'Committed', 'C1000001', 1, 450, 'Beer:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'and Bar''s replication books it');
SELECT is(test.money('C1000001'), 'balance 9550 held 450', 'tag C1 paid 450 once, the trusted Reserve still held');

-- ---------------------------------------------------------------- foreign entries
SELECT pg_temp.sync_refused('an entry of another event''s Bar terminal, with its own MAC', 'C1000001', 2,
    test.logentry('C1000001', 6, 1, 450, test.v('xbar')), 'log-entry-foreign');
SELECT pg_temp.sync_refused('an entry of the Top-up terminal, with its own MAC', 'C1000001', 2,
    test.logentry('C1000001', 7, 1, 450, test.v('top')), 'log-entry-foreign');
SELECT pg_temp.sync_refused('an entry of an unknown assignment', 'C1000001', 2,
    test.logentry('C1000001', 8, 1, 450, 999999999), 'log-entry-foreign');

-- ---------------------------------------------------------------- tag numbers at and above the next number
SELECT pg_temp.sync_refused('tag number 2 = the next number', 'C1000001', 2, test.logentry('C1000001', 9, 2, 450),
    'log-entry-number-too-high');
SELECT pg_temp.sync_refused('tag number 7 above the next number 2', 'C1000001', 2, test.logentry('C1000001', 9, 7, 450),
    'log-entry-number-too-high');

-- ---------------------------------------------------------------- an entry that differs from its transaction
SELECT results_eq(
    $$SELECT state FROM api.reserve(test.bar(), 10, 'C1000001', 2, 450, test.items(test.e(), 'Beer:1'))$$,
    $$VALUES ('ReservePending'::text)$$, 'Bar purchase 10 of tag C1 reserved: 450, tag number 2');
SELECT pg_temp.sync_refused('an entry claiming 900 for purchase 10', 'C1000001', 3, test.logentry('C1000001', 10, 2, 900),
    'idempotency-conflict');
SELECT pg_temp.sync_refused('an entry giving purchase 10 tag number 1', 'C1000001', 3, test.logentry('C1000001', 10, 1, 450),
    'idempotency-conflict');
SELECT pg_temp.sync_refused('an entry of another tag naming purchase 10', 'C2000002', 3, test.logentry('C2000002', 10, 2, 450),
    'idempotency-conflict');
SELECT is(pg_temp.txinfo(test.bartx(10)), 'ReservePending held 450, 0 lines', 'purchase 10 is untouched');

-- ---------------------------------------------------------------- the offline limit (5000)
SELECT results_eq(
    $$SELECT balance, held, acknowledged, refused FROM api.tag_sync(test.food(), 'C3000003', 4, 4000, jsonb_build_array(
          test.logentry('C3000003', 20, 0, 2000), test.logentry('C3000003', 21, 1, 2500),
          test.logentry('C3000003', 22, 2, 1000), test.logentry('C3000003', 23, 3, 500)))$$,
    $$SELECT 10000::bigint, 5000::bigint, pg_temp.ack(20, 21, 23),
             jsonb_build_array(jsonb_build_object('assignment_id', test.bar(), 'terminal_tx_number', 22,
                                                  'problem', 'offline-limit-exceeded'))$$,
    '2000 + 2500 are held, 1000 more would cross 5000 and is refused, 500 more still fits');
SELECT results_eq($$SELECT terminal_tx_number::bigint, state::text, held::bigint FROM ledger.transaction
                     WHERE assignment_id = test.bar() AND terminal_tx_number BETWEEN 20 AND 23 ORDER BY 1$$,
                  $$VALUES (20::bigint, 'Reserve'::text, 2000::bigint), (21, 'Reserve', 2500), (23, 'Reserve', 500)$$,
                  'Reserves for 20, 21 and 23; nothing for 22');
SELECT is(pg_temp.last_violation(),
          jsonb_build_object('actor', 'assignment:' || test.food(), 'problem', 'offline-limit-exceeded',
                             'payload', test.logentry('C3000003', 22, 2, 1000)),
          'the refused entry is in the violation log, whole');
SELECT is(test.money('C3000003'), 'balance 10000 held 5000', 'tag C3 holds exactly the offline limit');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold after the offline limit');

SELECT results_eq(
    $$SELECT state FROM api.reserve(test.bar(), 30, 'C4000004', 0, 4500, test.items(test.e(), 'Tip:1:4500'))$$,
    $$VALUES ('ReservePending'::text)$$, 'tag C4 reserves 4500 online');
SELECT results_eq(
    $$SELECT held, acknowledged, refused FROM api.tag_sync(test.food(), 'C4000004', 2, 4500, jsonb_build_array(
          test.logentry('C4000004', 30, 0, 4500), test.logentry('C4000004', 31, 1, 1000)))$$,
    $$SELECT 5500::bigint, pg_temp.ack(30, 31), '[]'::jsonb$$,
    'a charge reserved online does not count towards the offline limit: 4500 reserved + 1000 offline are both held');

-- ---------------------------------------------------------------- a refused entry proves no charge
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(40, 'TerminalConfirmUnknown', 'C5000005', 0, 450, 'Beer:1'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text, NULL::text)$$,
                  'Bar purchase 40 of tag C5 (tag number 0): outcome unknown');
SELECT results_eq(
    $$SELECT balance, held, acknowledged, refused FROM api.tag_sync(test.food(), 'C5000005', 1, 9550, jsonb_build_array(
          test.logentry('C5000005', 40, 0, 450) || jsonb_build_object('mac', test.mac(test.food(), 40, 'C5000005', 0, 450))))$$,
    $$SELECT 10000::bigint, 0::bigint, '[]'::jsonb,
             jsonb_build_array(jsonb_build_object('assignment_id', test.bar(), 'terminal_tx_number', 40,
                                                  'problem', 'log-entry-forged'))$$,
    'a forged entry for it is refused');
SELECT is(pg_temp.txinfo(test.bartx(40)), 'Aborted held 0, 0 lines',
          'and does not count as seen: the log shows no trusted charge below the next number, so 40 is Aborted');

-- ---------------------------------------------------------------- implausible offline sales
SELECT pg_temp.replication_refused('an offline sale of a tag the backend does not know',
    test.entry(50, 'Committed', 'C9999999', 0, 450, 'Beer:1'), 'implausible-offline-charge', NULL);
SELECT is_empty($$SELECT * FROM ledger.tag WHERE event_id = test.e() AND uid = 'C9999999'$$, 'no tag was created for it');
SELECT pg_temp.replication_refused('an offline sale of 5450, above the offline limit',
    test.entry(51, 'Committed', 'C2000002', 0, 5450, 'Beer:1', 'Tip:1:5000'), 'implausible-offline-charge', NULL);
SELECT pg_temp.replication_refused('an offline sale of 9007199254740991 (the largest amount JSON carries exactly)',
    test.entry(54, 'Committed', 'C2000002', 0, 9007199254740991, 'Beer:1'), 'implausible-offline-charge', NULL);
SELECT is(test.money('C2000002'), 'balance 10000 held 0', 'tag C2 paid nothing');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(52, 'Committed', 'C2000002', 1, 5000, 'Tip:1:5000'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'an offline sale of exactly the limit is booked');
SELECT is(test.money('C2000002'), 'balance 5000 held 0', 'tag C2 paid 5000');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(53, 'TerminalConfirmUnknown', 'C8888888', 0, 450, 'Beer:1'))$$,
                  $$VALUES ('TerminalConfirmUnknown'::text, 'booked'::text, NULL::text)$$,
                  'an unknown outcome at an unknown tag is still recorded (it holds nothing)');

-- ---------------------------------------------------------------- offline charges on a tag that never received money
SELECT pg_temp.sync_refused('a trusted entry on a tag the backend does not know', 'C7777777', 1,
    test.logentry('C7777777', 91, 0, 450), 'implausible-offline-charge');
SELECT is_empty($$SELECT * FROM ledger.tag WHERE event_id = test.e() AND uid = 'C7777777'$$, 'the sync created no tag for it');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(91, 'Committed', 'C7777777', 0, 450, 'Beer:1'))$$,
                  $$VALUES (NULL::text, 'rejected'::text, 'implausible-offline-charge'::text)$$,
                  'nor can its replication book it afterwards');
SELECT isnt(api.create_tag(test.e(), 'C6666666'), NULL, 'tag C6 registered: status new, never topped up');
SELECT pg_temp.sync_refused('a trusted entry on a new tag', 'C6666666', 1,
    test.logentry('C6666666', 92, 0, 450), 'implausible-offline-charge');
SELECT pg_temp.replication_refused('an offline sale of a new tag',
    test.entry(93, 'Committed', 'C6666666', 0, 450, 'Beer:1'), 'implausible-offline-charge', NULL);

-- ---------------------------------------------------------------- repeated reserves
SELECT results_eq(
    $$SELECT state, available FROM api.reserve(test.bar(), 60, 'C2000002', 2, 450, test.items(test.e(), 'Beer:1'))$$,
    $$VALUES ('ReservePending'::text, 4550::bigint)$$, 'Bar purchase 60 of tag C2 reserved');
SELECT results_eq(
    $$SELECT transaction_id, state FROM api.reserve(test.bar(), 60, 'C2000002', 2, 450, test.items(test.e(), 'Beer:1'))$$,
    $$SELECT test.bartx(60), 'ReservePending'::text$$, 'the same reserve again answers the same transaction');
SELECT results_eq(
    $$SELECT transaction_id FROM api.reserve(test.bar(), 60, 'c2:00:00:02', 2, 450, test.items(test.e(), 'Beer:1:450'))$$,
    $$SELECT test.bartx(60)$$, 'so does the same request written otherwise (UID with colons, the unit price given)');
SELECT is(test.money('C2000002'), 'balance 5000 held 450', 'held once');
SELECT pg_temp.conflict('reserve 60 with other items of the same amount',
    $$SELECT * FROM api.reserve(test.bar(), 60, 'C2000002', 2, 450, test.items(test.e(), 'Tip:1:450'))$$);
SELECT pg_temp.conflict('reserve 60 with another quantity and amount',
    $$SELECT * FROM api.reserve(test.bar(), 60, 'C2000002', 2, 900, test.items(test.e(), 'Beer:2'))$$);
SELECT pg_temp.conflict('reserve 60 with another tag number',
    $$SELECT * FROM api.reserve(test.bar(), 60, 'C2000002', 3, 450, test.items(test.e(), 'Beer:1'))$$);
SELECT pg_temp.conflict('reserve 60 for another tag',
    $$SELECT * FROM api.reserve(test.bar(), 60, 'C1000001', 2, 450, test.items(test.e(), 'Beer:1'))$$);
SELECT pg_temp.conflict('reserve 60 with an extra item',
    $$SELECT * FROM api.reserve(test.bar(), 60, 'C2000002', 2, 450, test.items(test.e(), 'Beer:1', 'Tip:1:0'))$$);
SELECT is(test.money('C2000002'), 'balance 5000 held 450', 'tag C2 still holds 450 once');
SELECT is(test.money('C1000001'), 'balance 9550 held 900', 'tag C1 holds nothing more');

-- ---------------------------------------------------------------- replication against its reserve
SELECT pg_temp.replication_refused('replication of 60 with other items',
    test.entry(60, 'Committed', 'C2000002', 2, 450, 'Tip:1:450'), 'idempotency-conflict', 'ReservePending');
SELECT pg_temp.replication_refused('replication of 60 with another tag number',
    test.entry(60, 'Committed', 'C2000002', 4, 450, 'Beer:1'), 'idempotency-conflict', 'ReservePending');
SELECT pg_temp.replication_refused('replication of 60 for another tag',
    test.entry(60, 'Committed', 'C1000001', 2, 450, 'Beer:1'), 'idempotency-conflict', 'ReservePending');
SELECT pg_temp.replication_refused('replication of 60 paid by card',
    test.entry(60, 'Committed', 'C2000002', 2, 450, 'Beer:1') || '{"payment": "card"}', 'idempotency-conflict',
    'ReservePending');
SELECT is(pg_temp.txinfo(test.bartx(60)), 'ReservePending held 450, 0 lines', 'purchase 60 is still only reserved');
SELECT results_eq($$SELECT * FROM test.replicate(test.entry(60, 'Committed', 'C2000002', 2, 450, 'Beer:1'))$$,
                  $$VALUES ('Committed'::text, 'booked'::text, NULL::text)$$, 'the replication that matches is booked');
SELECT is(test.money('C2000002'), 'balance 4550 held 0', 'tag C2 paid 450 once');

-- ---------------------------------------------------------------- repeated top-ups and refunds
SELECT results_eq($$SELECT state, balance FROM api.topup(test.v('top'), 1, 'C6000006', 2000, 'cash')$$,
                  $$VALUES ('Committed'::text, 2000::bigint)$$, 'top-up 1 of tag C6: 2000 cash');
SELECT results_eq($$SELECT transaction_id, balance FROM api.topup(test.v('top'), 1, 'C6000006', 2000, 'cash')$$,
                  $$SELECT id, 2000::bigint FROM ledger.transaction WHERE assignment_id = test.v('top') AND terminal_tx_number = 1$$,
                  'the same top-up again answers the first booking');
SELECT pg_temp.conflict('top-up 1 paid by card', $$SELECT * FROM api.topup(test.v('top'), 1, 'C6000006', 2000, 'card')$$);
SELECT pg_temp.conflict('top-up 1 of another amount', $$SELECT * FROM api.topup(test.v('top'), 1, 'C6000006', 2500, 'cash')$$);
SELECT pg_temp.conflict('top-up 1 for another tag', $$SELECT * FROM api.topup(test.v('top'), 1, 'C1000001', 2000, 'cash')$$);
SELECT is(test.money('C6000006'), 'balance 2000 held 0', 'tag C6 was topped up once');

SELECT results_eq($$SELECT state, balance FROM api.refund(test.v('top'), 2, 'C6000006', 500)$$,
                  $$VALUES ('Committed'::text, 1500::bigint)$$, 'refund 2 of tag C6: 500 paid out');
SELECT results_eq($$SELECT balance FROM api.refund(test.v('top'), 2, 'C6000006', 500)$$,
                  $$VALUES (1500::bigint)$$, 'the same refund again pays nothing more');
SELECT pg_temp.conflict('refund 2 of another amount', $$SELECT * FROM api.refund(test.v('top'), 2, 'C6000006', 600)$$);
SELECT pg_temp.conflict('refund 2 for another tag', $$SELECT * FROM api.refund(test.v('top'), 2, 'C1000001', 500)$$);
SELECT is(test.money('C6000006'), 'balance 1500 held 0', 'tag C6 was paid out once');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold at the end');

SELECT * FROM finish();
ROLLBACK;
