-- Top-ups at a top-up terminal (SPEC 3): cash (customer <- drawer, no fee) and card (customer <- topup/card,
-- fee <- customer), the repeat of a terminal transaction number, and the event's limits.
BEGIN;
SELECT plan(70);

-- Scratch: ids in test.ctx (read with test.v) and api answers in test.res (read with test.res); rolled back at the end.

-- Event: top-ups 500..25000, max balance 50000, card fee 50, cash fee 0.
INSERT INTO test.ctx SELECT 'e', test.event('Topup Fest');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.v('e'), 'Top-up');
INSERT INTO test.ctx SELECT 'top2', test.terminal(test.v('e'), 'Top-up');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.v('e'), 'Bar');
INSERT INTO test.ctx SELECT 'tagA', api.create_tag(test.v('e'), 'a1b2c3d4');

SELECT is((SELECT status::text FROM ledger.tag WHERE id = test.v('tagA')), 'new', 'a registered tag starts new');

-- Cash top-up: customer <- this terminal's drawer, one line, no fee.
INSERT INTO test.res SELECT 'cash', to_jsonb(x) FROM api.topup(test.v('top'), 1, 'a1b2c3d4', 2000, 'cash') x;
INSERT INTO test.ctx SELECT 'cash', test.res('cash', 'transaction_id')::bigint;

SELECT is(test.res('cash', 'state'), 'Committed', 'cash top-up: answered Committed');
SELECT is(test.res('cash', 'balance')::bigint, 2000::bigint, 'cash top-up: answered balance 2000');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('cash'))$$,
                  $$VALUES ('customer:A1B2C3D4', 'cash:drawer ' || test.v('top'), 2000::bigint)$$,
                  'cash top-up: exactly one line, customer <- drawer of this terminal, 2000');
SELECT results_eq($$SELECT type::text, state::text, payment::text, amount::bigint, fee::bigint, assignment_id, terminal_tx_number::bigint
                      FROM ledger.transaction WHERE id = test.v('cash')$$,
                  $$VALUES ('topup', 'Committed', 'cash', 2000::bigint, 0::bigint, test.v('top'), 1::bigint)$$,
                  'cash top-up: transaction topup/Committed/cash, amount 2000, fee 0, terminal identity kept');
SELECT is(test.balance(test.v('e'), 'A1B2C3D4'), 2000::bigint, 'cash top-up: customer balance 2000');
SELECT is(test.account_balance(test.v('e'), 'cash', 'drawer ' || test.v('top')), -2000::bigint,
          'cash top-up: the drawer paid 2000');
SELECT is(test.account_balance(test.v('e'), 'fee', 'fees'), 0::bigint, 'cash top-up: no fee booked');
SELECT is((SELECT status::text FROM ledger.tag WHERE id = test.v('tagA')), 'active', 'the first top-up makes the tag active');

-- Card top-up with fee: customer <- topup/card 5000, fee <- customer 50; balance grows by 4950.
INSERT INTO test.res SELECT 'card', to_jsonb(x) FROM api.topup(test.v('top'), 2, 'A1:B2:C3:D4', 5000, 'card') x;
INSERT INTO test.ctx SELECT 'card', test.res('card', 'transaction_id')::bigint;

SELECT is(test.res('card', 'balance')::bigint, 6950::bigint, 'card top-up: answered balance 2000 + 5000 - 50');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('card'))$$,
                  $$VALUES ('customer:A1B2C3D4', 'topup:card', 5000::bigint),
                           ('fee:fees', 'customer:A1B2C3D4', 50::bigint)$$,
                  'card top-up: customer <- topup/card 5000, then fee <- customer 50');
SELECT results_eq($$SELECT payment::text, amount::bigint, fee::bigint FROM ledger.transaction WHERE id = test.v('card')$$,
                  $$VALUES ('card', 5000::bigint, 50::bigint)$$, 'card top-up: payment card, amount 5000, fee 50');
SELECT is(test.balance(test.v('e'), 'A1B2C3D4'), 6950::bigint, 'card top-up: customer balance 6950');
SELECT is(test.account_balance(test.v('e'), 'topup', 'card'), -5000::bigint, 'card top-up: topup/card paid 5000');
SELECT is(test.account_balance(test.v('e'), 'fee', 'fees'), 50::bigint, 'card top-up: fee/fees received 50');
SELECT is(test.account_balance(test.v('e'), 'cash', 'drawer ' || test.v('top')), -2000::bigint,
          'card top-up: the drawer is not touched');

-- The repeat of (assignment, terminal number) is the same transaction: nothing is booked twice.
INSERT INTO test.ctx SELECT 'before repeat', count(*) FROM ledger.booking;
INSERT INTO test.res SELECT 'repeat', to_jsonb(x) FROM api.topup(test.v('top'), 2, 'A1B2C3D4', 5000, 'card') x;
SELECT is(test.res('repeat', 'transaction_id')::bigint, test.v('card'), 'repeat: the same transaction id');
SELECT is(test.res('repeat', 'state'), 'Committed', 'repeat: state Committed');
SELECT is(test.res('repeat', 'balance')::bigint, 6950::bigint, 'repeat: balance unchanged at 6950');
SELECT is((SELECT count(*) FROM ledger.booking), test.v('before repeat'), 'repeat: no booking line added');
SELECT is(test.lines(test.v('card')), 2, 'repeat: the card top-up still has exactly 2 lines');
SELECT is((SELECT count(*) FROM ledger.transaction WHERE assignment_id = test.v('top') AND terminal_tx_number = 2),
          1::bigint, 'repeat: one transaction for (assignment, 2)');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 2, 'A1B2C3D4', 5500, 'card')$$, 'FP031', NULL,
                 'the same terminal number with a different amount: idempotency-conflict');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 1, 'DDCCBBAA', 2000, 'cash')$$, 'FP031', NULL,
                 'the same terminal number for another tag: idempotency-conflict');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 2, 'A1B2C3D4', 5000, 'cash')$$, 'FP031', NULL,
                 'the same terminal number paid cash instead of card: idempotency-conflict (the drawer would be short)');
SELECT is(test.balance(test.v('e'), 'A1B2C3D4'), 6950::bigint, 'conflicts change nothing: balance 6950');
-- The same number at another terminal is another transaction.
INSERT INTO test.res SELECT 'other terminal', to_jsonb(x) FROM api.topup(test.v('top2'), 2, 'A1B2C3D4', 1000, 'cash') x;
SELECT isnt(test.res('other terminal', 'transaction_id')::bigint, test.v('card'),
            'the same number at another assignment is a new transaction');
SELECT is(test.balance(test.v('e'), 'A1B2C3D4'), 7950::bigint, 'it is booked: balance 7950');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.res('other terminal', 'transaction_id')::bigint)$$,
                  $$VALUES ('customer:A1B2C3D4', 'cash:drawer ' || test.v('top2'), 1000::bigint)$$,
                  'it is paid from the other terminal''s drawer');

-- Bounds: below the minimum or above the maximum top-up is refused and changes nothing.
INSERT INTO test.res SELECT 'footprint', jsonb_build_object('v', test.footprint(test.v('e')));
SELECT throws_ok($$SELECT api.topup(test.v('top'), 3, 'A1B2C3D4', 499, 'cash')$$, 'FP022', NULL,
                 '499 is below the minimum top-up of 500: topup-out-of-bounds');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 3, 'A1B2C3D4', 25001, 'card')$$, 'FP022', NULL,
                 '25001 is above the maximum top-up of 25000: topup-out-of-bounds');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 3, 'EEEE0001', 499, 'cash')$$, 'FP022', NULL,
                 'a first top-up of a new UID below the minimum: topup-out-of-bounds');
SELECT is(test.balance(test.v('e'), 'A1B2C3D4'), 7950::bigint, 'refused top-ups leave the balance at 7950');
SELECT is(test.footprint(test.v('e')), test.res('footprint', 'v'), 'refused top-ups add no transaction and no line');
SELECT is((SELECT count(*) FROM ledger.tag WHERE event_id = test.v('e') AND uid = 'EEEE0001'), 0::bigint,
          'a refused first top-up leaves no tag behind');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 3, 'A1B2C3D4', 0, 'cash')$$, 'FP001', NULL, 'amount 0: validation');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 3, 'A1B2C3D4', -500, 'cash')$$, 'FP001', NULL, 'a negative amount: validation');

-- Limits reached exactly: 500 and 25000 are allowed; the balance may reach 50000 but not pass it.
SELECT is((SELECT balance FROM api.topup(test.v('top'), 10, 'C0C0C0C0', 25000, 'cash')), 25000::bigint,
          'the maximum top-up 25000 is allowed');
SELECT is((SELECT balance FROM api.topup(test.v('top'), 11, 'C0C0C0C0', 24500, 'cash')), 49500::bigint,
          'a second top-up to 49500');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 12, 'C0C0C0C0', 1000, 'cash')$$, 'FP021', NULL,
                 '49500 + 1000 would pass the maximum balance 50000: max-balance-exceeded');
SELECT is((SELECT balance FROM api.topup(test.v('top'), 12, 'C0C0C0C0', 500, 'cash')), 50000::bigint,
          'the minimum top-up 500 takes it to exactly the maximum balance 50000');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 13, 'C0C0C0C0', 500, 'card')$$, 'FP021', NULL,
                 'at 50000 even a card top-up of 500 (450 after fee) is refused: max-balance-exceeded');
SELECT is(test.balance(test.v('e'), 'C0C0C0C0'), 50000::bigint, 'the refused top-up leaves 50000');
-- The fee counts: 25000 + 25000 card - 50 fee = 49950 is within the maximum.
SELECT is((SELECT balance FROM api.topup(test.v('top'), 20, 'C1C1C1C1', 25000, 'cash')), 25000::bigint, 'a tag at 25000');
SELECT is((SELECT balance FROM api.topup(test.v('top'), 21, 'C1C1C1C1', 25000, 'card')), 49950::bigint,
          'a card top-up is checked against the maximum after its fee: 49950');

-- A blocked tag takes no top-up.
SELECT is(api.block_tag(test.v('e'), 'A1B2C3D4'), 'blocked', 'block tag A1B2C3D4');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 30, 'A1B2C3D4', 1000, 'cash')$$, 'FP011', NULL,
                 'top-up of a blocked tag: tag-blocked');
SELECT is(test.balance(test.v('e'), 'A1B2C3D4'), 7950::bigint, 'the blocked tag keeps 7950');

-- Only top-up positions top up; payment must be cash or card.
SELECT throws_ok($$SELECT api.topup(test.v('bar'), 1, 'C2C2C2C2', 1000, 'cash')$$, 'FP032', NULL,
                 'top-up at a sale position: wrong-position');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 40, 'C2C2C2C2', 1000, 'online')$$, 'FP001', NULL,
                 'payment online at a terminal: validation');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 40, 'C2C2C2C2', 1000, 'bitcoin')$$, 'FP001', NULL,
                 'payment bitcoin: validation');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 40, 'C2C2C2C2', 1000, NULL)$$, 'FP001', NULL,
                 'no payment method: validation');
SELECT is((SELECT count(*) FROM ledger.tag WHERE event_id = test.v('e') AND uid = 'C2C2C2C2'), 0::bigint,
          'refused top-ups of a new UID leave no tag behind');

-- An event with a cash fee (30) and an online fee (25).
INSERT INTO test.ctx SELECT 'fe', api.create_event('Fee Fest', 'EUR', 50000, 500, 25000,
                                              p_topup_fee_cash => 30, p_topup_fee_online => 25);
INSERT INTO test.ctx SELECT 'fe pos', api.create_position(test.v('fe'), 'Top-up', 'topup');
INSERT INTO test.ctx SELECT 'fe top', test.terminal(test.v('fe'), 'Top-up');
INSERT INTO test.ctx SELECT 'fe cash', transaction_id FROM api.topup(test.v('fe top'), 1, 'A1B2C3D4', 1000, 'cash');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('fe cash'))$$,
                  $$VALUES ('customer:A1B2C3D4', 'cash:drawer ' || test.v('fe top'), 1000::bigint),
                           ('fee:fees', 'customer:A1B2C3D4', 30::bigint)$$,
                  'cash top-up with a cash fee: customer <- drawer 1000, fee <- customer 30');
SELECT is(test.balance(test.v('fe'), 'A1B2C3D4'), 970::bigint, 'cash top-up with fee: balance 970 (same UID, other event)');

-- Online top-up: Open -> ExternalPending -> Committed books customer <- topup/online and the online fee.
INSERT INTO test.ctx SELECT 'portal tag', api.create_tag(test.v('fe'), 'ABABABAB');
INSERT INTO test.ctx SELECT 'online', api.external_topup_create(test.v('fe'), 'ABABABAB', 2000);
SELECT is(test.state(test.v('online')), 'Open', 'online top-up: created Open');
SELECT is(test.lines(test.v('online')), 0, 'online top-up: nothing booked while Open');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_pending(test.v('online'))$$,
                  $$VALUES ('ExternalPending', 'booked')$$, 'online top-up: ExternalPending before calling the provider');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_result(test.v('online'), 'success')$$,
                  $$VALUES ('Committed', 'booked')$$, 'online top-up: the provider says success, Committed');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('online'))$$,
                  $$VALUES ('customer:ABABABAB', 'topup:online', 2000::bigint),
                           ('fee:fees', 'customer:ABABABAB', 25::bigint)$$,
                  'online top-up lines: customer <- topup/online 2000, fee <- customer 25');
SELECT is(test.balance(test.v('fe'), 'ABABABAB'), 1975::bigint, 'online top-up: balance 1975');
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_result(test.v('online'), 'success')$$,
                  $$VALUES ('Committed', 'duplicate')$$, 'online top-up: a repeated success is a duplicate');
SELECT is(test.lines(test.v('online')), 2, 'online top-up: still 2 lines');
SELECT is((SELECT status::text FROM ledger.tag WHERE id = test.v('portal tag')), 'active',
          'a new tag topped up online is active (it has been topped up)');
-- A failed online top-up books nothing.
INSERT INTO test.ctx SELECT 'online2', api.external_topup_create(test.v('fe'), 'ABABABAB', 1000);
SELECT results_eq($$SELECT state, outcome FROM api.external_topup_pending(test.v('online2'))
                    UNION ALL SELECT state, outcome FROM api.external_topup_result(test.v('online2'), 'failure')$$,
                  $$VALUES ('ExternalPending', 'booked'), ('Aborted', 'booked')$$, 'a failed online top-up is Aborted');
SELECT is(test.lines(test.v('online2')), 0, 'the failed online top-up has no lines');
SELECT is(test.balance(test.v('fe'), 'ABABABAB'), 1975::bigint, 'the failed online top-up leaves 1975');
SELECT throws_ok($$SELECT api.external_topup_create(test.v('fe'), 'ABABABAB', 499)$$, 'FP022', NULL,
                 'online top-up below the minimum: topup-out-of-bounds');
SELECT throws_ok($$SELECT api.external_topup_create(test.v('fe'), 'ABABABAB', 25001)$$, 'FP022', NULL,
                 'online top-up above the maximum: topup-out-of-bounds');

SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'top-ups: every invariant holds');

SELECT * FROM finish();
ROLLBACK;
