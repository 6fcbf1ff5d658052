-- Open-loop purchase (SPEC 3): card at the till when credit is short. A card top-up (with the card fee) and the
-- purchase (linked_id = that top-up, the earlier transaction) are booked together, or neither is.
BEGIN;
SELECT plan(40);

-- Scratch: ids in test.ctx (read with test.v) and api answers in test.res (read with test.res); rolled back at the end.

-- Event: card fee 50, max balance 50000; a tag with 1000 (cash).
INSERT INTO test.ctx SELECT 'e', test.event('Open Loop Fest');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.v('e'), 'Bar');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.v('e'), 'Top-up');
INSERT INTO test.ctx SELECT 'funded', test.funded_tag(test.v('e'), '0A0A0A0A', 1000);
INSERT INTO test.res SELECT 'items', test.items(test.v('e'), 'Beer:2', 'Cup:1');

-- 2 Beer + 1 Cup = 1100 with 1000 on the tag: 500 by card (fee 50) covers it, 350 left.
INSERT INTO test.res SELECT 'ol', to_jsonb(x)
  FROM api.open_loop_purchase(test.v('bar'), 1, '0A0A0A0A', 3, 1100, (SELECT j FROM test.res WHERE k = 'items'), 500) x;
INSERT INTO test.ctx SELECT 'purchase', test.res('ol', 'transaction_id')::bigint;
INSERT INTO test.ctx SELECT 'topup', test.res('ol', 'topup_transaction_id')::bigint;

SELECT is(test.res('ol', 'state'), 'Committed', 'open-loop: answered Committed');
SELECT is(test.res('ol', 'balance')::bigint, 350::bigint, 'open-loop: answered balance 1000 + 500 - 50 - 1100');
SELECT isnt(test.v('topup'), NULL, 'open-loop: a top-up transaction is returned');
SELECT results_eq($$SELECT type::text, state::text, payment::text, amount::bigint, fee::bigint,
                           (SELECT p.linked_id FROM ledger.transaction p WHERE p.id = test.v('purchase'))
                      FROM ledger.transaction WHERE id = test.v('topup')$$,
                  $$VALUES ('topup', 'Committed', 'card', 500::bigint, 50::bigint, test.v('topup'))$$,
                  'the top-up: card, Committed, 500 with fee 50; the purchase links to it');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('topup'))$$,
                  $$VALUES ('customer:0A0A0A0A', 'topup:card', 500::bigint),
                           ('fee:fees', 'customer:0A0A0A0A', 50::bigint)$$,
                  'top-up lines: customer <- topup/card 500, fee <- customer 50');
SELECT results_eq($$SELECT type::text, state::text, amount::bigint, assignment_id, terminal_tx_number::bigint,
                          tag_tx_number::integer
                      FROM ledger.transaction WHERE id = test.v('purchase')$$,
                  $$VALUES ('purchase', 'Committed', 1100::bigint, test.v('bar'), 1::bigint, 3)$$,
                  'the purchase: Committed, 1100, with its terminal identity and tag number');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('purchase'))$$,
                  $$VALUES ('merchant:Bar', 'customer:0A0A0A0A', 900::bigint),
                           ('deposit:deposit', 'customer:0A0A0A0A', 200::bigint)$$,
                  'purchase lines: Bar <- customer 900, deposit <- customer 200');
SELECT is(test.balance(test.v('e'), '0A0A0A0A'), 350::bigint, 'customer: 350');
SELECT is(test.held(test.v('e'), '0A0A0A0A'), 0::bigint, 'customer: nothing held');
SELECT is(test.account_balance(test.v('e'), 'topup', 'card'), -500::bigint, 'topup/card paid 500');
SELECT is(test.account_balance(test.v('e'), 'fee', 'fees'), 50::bigint, 'fee/fees received 50');
SELECT is(test.account_balance(test.v('e'), 'merchant', 'Bar'), 900::bigint, 'Bar received 900');

-- A repeat returns the same two transactions and books nothing again.
INSERT INTO test.res SELECT 'again', to_jsonb(x)
  FROM api.open_loop_purchase(test.v('bar'), 1, '0A0A0A0A', 3, 1100, (SELECT j FROM test.res WHERE k = 'items'), 500) x;
SELECT is(test.res('again', 'transaction_id')::bigint, test.v('purchase'), 'repeat: the same purchase');
SELECT is(test.res('again', 'topup_transaction_id')::bigint, test.v('topup'), 'repeat: the same top-up');
SELECT is(test.res('again', 'balance')::bigint, 350::bigint, 'repeat: balance still 350');
SELECT is(test.lines(test.v('purchase')) + test.lines(test.v('topup')), 4, 'repeat: still 2 + 2 lines');
SELECT is((SELECT count(*) FROM ledger.transaction WHERE type = 'topup' AND account_id =
              (SELECT account_id FROM ledger.transaction WHERE id = test.v('purchase')) AND payment = 'card'), 1::bigint,
          'repeat: still one card top-up');
SELECT throws_ok($$SELECT api.open_loop_purchase(test.v('bar'), 1, '0A0A0A0A', 3, 1550,
                       test.items(test.v('e'), 'Beer:2', 'Cup:1', 'Beer:1'), 500)$$,
                 'FP031', NULL, 'the same number with another amount: idempotency-conflict');

-- Still short after the card part: neither the top-up nor the purchase is booked.
INSERT INTO test.res SELECT 'footprint', jsonb_build_object('v', test.footprint(test.v('e')));
SELECT throws_ok($$SELECT api.open_loop_purchase(test.v('bar'), 2, '0A0A0A0A', 4, 900,
                       test.items(test.v('e'), 'Beer:2'), 550)$$,
                 'FP020', NULL, '350 + 550 - 50 = 850 does not cover 900: insufficient-balance');
SELECT is(test.error_detail($$SELECT api.open_loop_purchase(test.v('bar'), 2, '0A0A0A0A', 4, 900,
                                     test.items(test.v('e'), 'Beer:2'), 550)$$),
          '{"available": 850}'::jsonb, 'insufficient-balance DETAIL: 850 would have been available with the card part');
SELECT is(test.footprint(test.v('e')), test.res('footprint', 'v'), 'refused: no transaction and no line added');
SELECT is(test.balance(test.v('e'), '0A0A0A0A'), 350::bigint, 'refused: balance still 350');
SELECT is(test.account_balance(test.v('e'), 'topup', 'card'), -500::bigint, 'refused: topup/card still -500');
SELECT is(test.account_balance(test.v('e'), 'fee', 'fees'), 50::bigint, 'refused: no fee taken');
SELECT throws_ok($$SELECT api.terminal_transaction(test.v('bar'), 2)$$, 'FP010', NULL,
                 'refused: the terminal number is unknown to the backend');

-- Exactly covered: 350 + 600 - 50 = 900.
SELECT is((SELECT balance FROM api.open_loop_purchase(test.v('bar'), 2, '0A0A0A0A', 4, 900,
                                                       test.items(test.v('e'), 'Beer:2'), 600)),
          0::bigint, 'a card part that exactly covers it leaves 0');
SELECT is(test.account_balance(test.v('e'), 'fee', 'fees'), 100::bigint, 'two card fees taken: 100');

-- A new tag pays by card only and becomes active.
INSERT INTO test.ctx SELECT 'new tag', api.create_tag(test.v('e'), '0B0B0B0B');
SELECT is((SELECT balance FROM api.open_loop_purchase(test.v('bar'), 3, '0B0B0B0B', 0, 350,
                                                       test.items(test.v('e'), 'Pretzel:1'), 500)),
          100::bigint, 'a new tag: 500 by card - 50 fee - 350 = 100');
SELECT is((SELECT status::text FROM ledger.tag WHERE id = test.v('new tag')), 'active', 'the new tag is active');

-- The checks of both parts; each refusal books nothing.
INSERT INTO test.res SELECT 'footprint2', jsonb_build_object('v', test.footprint(test.v('e')));
SELECT throws_ok($$SELECT api.open_loop_purchase(test.v('bar'), 4, '0B0B0B0B', 1, 800,
                       test.items(test.v('e'), 'Pretzel:2'), 1000)$$,
                 'FP002', NULL, '2 Pretzels are 700, not 800: amount-mismatch');
SELECT throws_ok($$SELECT api.open_loop_purchase(test.v('bar'), 4, '0B0B0B0B', 1, 350,
                       test.items(test.v('e'), 'Pretzel:1'), 0)$$,
                 'FP001', NULL, 'card amount 0: validation');
SELECT throws_ok($$SELECT api.open_loop_purchase(test.v('top'), 4, '0B0B0B0B', 1, 350,
                       test.items(test.v('e'), 'Pretzel:1'), 500)$$,
                 'FP032', NULL, 'at a top-up position: wrong-position');
SELECT is(api.block_tag(test.v('e'), '0B0B0B0B'), 'blocked', 'block tag 0B0B0B0B');
SELECT throws_ok($$SELECT api.open_loop_purchase(test.v('bar'), 4, '0B0B0B0B', 1, 350,
                       test.items(test.v('e'), 'Pretzel:1'), 500)$$,
                 'FP011', NULL, 'a blocked tag: tag-blocked');
SELECT is(test.footprint(test.v('e')), test.res('footprint2', 'v'), 'refusals add no transaction and no line');

-- The maximum balance: the balance after both parts is what must stay within it.
INSERT INTO test.ctx SELECT 'rich', test.funded_tag(test.v('e'), '0C0C0C0C', 25000);
SELECT is((SELECT balance FROM api.topup(test.v('top'), 2, '0C0C0C0C', 24500, 'cash')), 49500::bigint, 'a tag at 49500');
SELECT throws_ok($$SELECT api.open_loop_purchase(test.v('bar'), 5, '0C0C0C0C', 1, 450,
                       test.items(test.v('e'), 'Beer:1'), 1500)$$,
                 'FP021', NULL, '49500 + 1500 - 50 - 450 = 50500 would pass the maximum: max-balance-exceeded');
-- A large order (52000, above the maximum balance) paid mostly by card never takes the balance above 0.
SELECT lives_ok($$SELECT api.open_loop_purchase(test.v('bar'), 6, '0A0A0A0A', 5, 52000,
                      test.items(test.v('e'), 'Tip:1:52000'), 52050)$$,
                'a 52000 order paid by card (52050 - 50 fee) from 0 is booked: the balance never exceeds 50000');
SELECT is((SELECT state::text FROM ledger.transaction WHERE assignment_id = test.v('bar') AND terminal_tx_number = 6),
          'Committed', 'the large order is a committed purchase');

SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'open-loop purchases: every invariant holds');

SELECT * FROM finish();
ROLLBACK;
