-- Leftover money back (SPEC 3): cash refund (drawer <- customer), payout (payout <- customer amount less fee,
-- fee <- customer), and balance transfer between tags (customer B <- customer A), with their limits.
BEGIN;
SELECT plan(64);

-- Scratch: ids in test.ctx (read with test.v) and api answers in test.res (read with test.res); rolled back at the end.

-- Event: payout fee 100, max balance 50000.
INSERT INTO test.ctx SELECT 'e', test.event('Leftover Fest');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.v('e'), 'Top-up');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.v('e'), 'Bar');

----------------------------------------------------------------------------------------------------------------------
-- Cash refund at a top-up terminal: drawer <- customer.
INSERT INTO test.ctx SELECT 'R', test.funded_tag(test.v('e'), 'F1F1F1F1', 10000);
INSERT INTO test.res SELECT 'refund', to_jsonb(x) FROM api.refund(test.v('top'), 1, 'F1F1F1F1', 3000) x;
INSERT INTO test.ctx SELECT 'refund', test.res('refund', 'transaction_id')::bigint;
SELECT is(test.res('refund', 'state'), 'Committed', 'refund: Committed');
SELECT is(test.res('refund', 'balance')::bigint, 7000::bigint, 'refund: answered balance 10000 - 3000');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('refund'))$$,
                  $$VALUES ('cash:drawer ' || test.v('top'), 'customer:F1F1F1F1', 3000::bigint)$$,
                  'refund: exactly one line, drawer of this terminal <- customer 3000');
SELECT results_eq($$SELECT type::text, payment::text, amount::bigint, fee::bigint FROM ledger.transaction WHERE id = test.v('refund')$$,
                  $$VALUES ('refund', 'cash', 3000::bigint, 0::bigint)$$, 'refund: type refund, cash, 3000, no fee');
SELECT is(test.account_balance(test.v('e'), 'cash', 'drawer ' || test.v('top')), 3000::bigint,
          'refund: the drawer received 3000 (it paid it out in cash)');
SELECT is(test.balance(test.v('e'), 'F1F1F1F1'), 7000::bigint, 'refund: customer 7000');
SELECT is((SELECT transaction_id FROM api.refund(test.v('top'), 1, 'F1F1F1F1', 3000)), test.v('refund'),
          'refund repeated: the same transaction');
SELECT is(test.balance(test.v('e'), 'F1F1F1F1'), 7000::bigint, 'refund repeated: nothing booked twice');
SELECT throws_ok($$SELECT api.refund(test.v('top'), 1, 'F1F1F1F1', 3500)$$, 'FP031', NULL,
                 'refund: the same number with another amount: idempotency-conflict');

-- More than available is refused; a held reserve reduces what can be refunded.
SELECT throws_ok($$SELECT api.refund(test.v('top'), 2, 'F1F1F1F1', 7001)$$, 'FP020', NULL,
                 'refund of 7001 with 7000: insufficient-balance');
SELECT is(test.error_detail($$SELECT api.refund(test.v('top'), 2, 'F1F1F1F1', 7001)$$), '{"available": 7000}'::jsonb,
          'insufficient-balance DETAIL: {"available": 7000}');
INSERT INTO test.ctx SELECT 'reserve R', transaction_id
  FROM api.reserve(test.v('bar'), 1, 'F1F1F1F1', 0, 900, test.items(test.v('e'), 'Beer:2'));
SELECT is(test.error_detail($$SELECT api.refund(test.v('top'), 2, 'F1F1F1F1', 6101)$$), '{"available": 6100}'::jsonb,
          'with 900 held, a refund of 6101 is refused: available 6100');
SELECT is(test.balance(test.v('e'), 'F1F1F1F1'), 7000::bigint, 'refused refunds change nothing: 7000');
SELECT is((SELECT balance FROM api.refund(test.v('top'), 2, 'F1F1F1F1', 6100)), 900::bigint,
          'refund of all that is available (6100) leaves the 900 held');
SELECT is(test.held(test.v('e'), 'F1F1F1F1'), 900::bigint, 'the 900 is still held');
SELECT is((SELECT outcome FROM api.replicate(test.v('bar'), jsonb_build_array(jsonb_build_object(
               'terminal_tx_number', 1, 'state', 'Committed', 'uid', 'F1F1F1F1', 'amount', 900,
               'items', test.items(test.v('e'), 'Beer:2'))))),
          'booked', 'the held purchase is committed');
SELECT is(test.balance(test.v('e'), 'F1F1F1F1'), 0::bigint, 'and the tag is at 0');
SELECT is(test.account_balance(test.v('e'), 'cash', 'drawer ' || test.v('top')), 9100::bigint,
          'the drawer paid out 3000 + 6100 = 9100');

-- Where and for whom a refund can be made.
INSERT INTO test.ctx SELECT 'R2', test.funded_tag(test.v('e'), 'F2F2F2F2', 2000);
SELECT throws_ok($$SELECT api.refund(test.v('bar'), 2, 'F2F2F2F2', 1000)$$, 'FP032', NULL,
                 'refund at a sale position: wrong-position');
SELECT throws_ok($$SELECT api.refund(test.v('top'), 3, 'F2F2F2F2', 0)$$, 'FP001', NULL, 'refund of 0: validation');
SELECT throws_ok($$SELECT api.refund(test.v('top'), 3, 'F9F9F9F9', 1000)$$, 'FP010', NULL, 'refund to an unknown tag: not-found');
SELECT is(api.block_tag(test.v('e'), 'F2F2F2F2'), 'blocked', 'block tag F2F2F2F2');
SELECT throws_ok($$SELECT api.refund(test.v('top'), 3, 'F2F2F2F2', 1000)$$, 'FP011', NULL,
                 'refund of a blocked tag: tag-blocked');
SELECT is(test.balance(test.v('e'), 'F2F2F2F2'), 2000::bigint, 'refused refunds leave 2000');

----------------------------------------------------------------------------------------------------------------------
-- Payout after the event: payout <- customer (amount - fee), fee <- customer (fee 100).
INSERT INTO test.ctx SELECT 'P', test.funded_tag(test.v('e'), 'A0A0A0A0', 5000);
INSERT INTO test.res SELECT 'payout', to_jsonb(x) FROM api.payout(test.v('e'), 'A0A0A0A0', 2000) x;
INSERT INTO test.ctx SELECT 'payout', test.res('payout', 'transaction_id')::bigint;
SELECT is(test.res('payout', 'paid_out')::bigint, 1900::bigint, 'payout 2000: 1900 paid out');
SELECT is(test.res('payout', 'fee')::bigint, 100::bigint, 'payout 2000: fee 100');
SELECT is(test.res('payout', 'balance')::bigint, 3000::bigint, 'payout 2000: balance 5000 - 2000');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('payout'))$$,
                  $$VALUES ('payout:payout', 'customer:A0A0A0A0', 1900::bigint),
                           ('fee:fees', 'customer:A0A0A0A0', 100::bigint)$$,
                  'payout lines: payout <- customer 1900, fee <- customer 100');
SELECT results_eq($$SELECT type::text, state::text, amount::bigint, fee::bigint FROM ledger.transaction WHERE id = test.v('payout')$$,
                  $$VALUES ('payout', 'Committed', 2000::bigint, 100::bigint)$$, 'payout: Committed, amount 2000, fee 100');
SELECT is(test.account_balance(test.v('e'), 'payout', 'payout'), 1900::bigint, 'the payout account received 1900');
SELECT is(test.account_balance(test.v('e'), 'fee', 'fees'), 100::bigint, 'the fee account received 100');
SELECT throws_ok($$SELECT api.payout(test.v('e'), 'A0A0A0A0', 100)$$, 'FP001', NULL,
                 'a payout of exactly the fee: validation');
SELECT throws_ok($$SELECT api.payout(test.v('e'), 'A0A0A0A0', 50)$$, 'FP001', NULL, 'a payout below the fee: validation');
SELECT results_eq($$SELECT paid_out, fee, balance FROM api.payout(test.v('e'), 'A0A0A0A0', 101)$$,
                  $$VALUES (1::bigint, 100::bigint, 2899::bigint)$$, 'a payout of 101: 1 paid out, fee 100, 2899 left');
SELECT throws_ok($$SELECT api.payout(test.v('e'), 'A0A0A0A0', 2900)$$, 'FP020', NULL,
                 'a payout of 2900 with 2899: insufficient-balance');
SELECT results_eq($$SELECT paid_out, fee, balance FROM api.payout(test.v('e'), 'A0A0A0A0')$$,
                  $$VALUES (2799::bigint, 100::bigint, 0::bigint)$$, 'the default payout takes all 2899: 2799 paid out, 0 left');
SELECT throws_ok($$SELECT api.payout(test.v('e'), 'A0A0A0A0')$$, 'FP001', NULL, 'nothing left to pay out: validation');
SELECT is(test.account_balance(test.v('e'), 'payout', 'payout'), 4700::bigint, 'the payout account: 1900 + 1 + 2799');
SELECT is(test.account_balance(test.v('e'), 'fee', 'fees'), 300::bigint, 'the fee account: 3 payout fees');
-- The default payout leaves what is held.
INSERT INTO test.ctx SELECT 'Q', test.funded_tag(test.v('e'), 'A1A1A1A1', 3000);
INSERT INTO test.ctx SELECT 'reserve Q', transaction_id
  FROM api.reserve(test.v('bar'), 2, 'A1A1A1A1', 0, 450, test.items(test.v('e'), 'Beer:1'));
SELECT results_eq($$SELECT paid_out, balance FROM api.payout(test.v('e'), 'A1A1A1A1')$$,
                  $$VALUES (2450::bigint, 450::bigint)$$, 'with 450 held the default payout takes 2550: 2450 paid out, 450 left');
SELECT is(test.held(test.v('e'), 'A1A1A1A1'), 450::bigint, 'the 450 stays held');

----------------------------------------------------------------------------------------------------------------------
-- Transfer between tags: customer B <- customer A.
INSERT INTO test.ctx SELECT 'A', test.funded_tag(test.v('e'), 'B1B1B1B1', 8000);
INSERT INTO test.ctx SELECT 'B', test.funded_tag(test.v('e'), 'B2B2B2B2', 1000);
INSERT INTO test.res SELECT 'transfer', to_jsonb(x) FROM api.transfer(test.v('e'), 'B1B1B1B1', 'B2B2B2B2', 2500) x;
INSERT INTO test.ctx SELECT 'transfer', test.res('transfer', 'transaction_id')::bigint;
SELECT is(test.res('transfer', 'from_balance')::bigint, 5500::bigint, 'transfer 2500: sender 8000 - 2500');
SELECT is(test.res('transfer', 'to_balance')::bigint, 3500::bigint, 'transfer 2500: receiver 1000 + 2500');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('transfer'))$$,
                  $$VALUES ('customer:B2B2B2B2', 'customer:B1B1B1B1', 2500::bigint)$$,
                  'transfer: exactly one line, receiver <- sender 2500');
SELECT is(test.balance(test.v('e'), 'B1B1B1B1'), 5500::bigint, 'sender 5500');
SELECT is(test.balance(test.v('e'), 'B2B2B2B2'), 3500::bigint, 'receiver 3500');
SELECT throws_ok($$SELECT api.transfer(test.v('e'), 'B1B1B1B1', 'B2B2B2B2', 5501)$$, 'FP020', NULL,
                 'transfer of 5501 with 5500: insufficient-balance');
SELECT throws_ok($$SELECT api.transfer(test.v('e'), 'B1B1B1B1', 'B1B1B1B1', 100)$$, 'FP001', NULL,
                 'transfer to the same tag: validation');
SELECT throws_ok($$SELECT api.transfer(test.v('e'), 'B1B1B1B1', 'B2B2B2B2', 0)$$, 'FP001', NULL, 'transfer of 0: validation');
SELECT throws_ok($$SELECT api.transfer(test.v('e'), 'B9B9B9B9', 'B2B2B2B2', 100)$$, 'FP010', NULL,
                 'transfer from an unknown tag: not-found');
-- The default moves all that is available, not what is held.
INSERT INTO test.ctx SELECT 'reserve A', transaction_id
  FROM api.reserve(test.v('bar'), 3, 'B1B1B1B1', 0, 450, test.items(test.v('e'), 'Beer:1'));
SELECT results_eq($$SELECT from_balance, to_balance FROM api.transfer(test.v('e'), 'B1B1B1B1', 'B2B2B2B2')$$,
                  $$VALUES (450::bigint, 8550::bigint)$$, 'the default transfer moves the 5050 available, 450 stays held');

-- Lost wristband: block the old tag, move everything to a new one, which becomes active.
INSERT INTO test.ctx SELECT 'L', test.funded_tag(test.v('e'), 'C1C1C1C1', 4000);
SELECT is(api.block_tag(test.v('e'), 'C1C1C1C1'), 'blocked', 'the lost tag C1C1C1C1 is blocked');
INSERT INTO test.res SELECT 'lost', to_jsonb(x) FROM api.transfer(test.v('e'), 'C1C1C1C1', 'c2:c2:c2:c2') x;
SELECT is(test.res('lost', 'from_balance')::bigint, 0::bigint, 'lost tag: 0 left');
SELECT is(test.res('lost', 'to_balance')::bigint, 4000::bigint, 'new tag: 4000');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.res('lost', 'transaction_id')::bigint)$$,
                  $$VALUES ('customer:C2C2C2C2', 'customer:C1C1C1C1', 4000::bigint)$$,
                  'lost wristband: new <- old 4000');
SELECT is((SELECT status::text FROM ledger.tag WHERE event_id = test.v('e') AND uid = 'C2C2C2C2'), 'active',
          'the new tag is active');
SELECT is((SELECT status::text FROM ledger.tag WHERE event_id = test.v('e') AND uid = 'C1C1C1C1'), 'blocked',
          'the old tag stays blocked');
SELECT throws_ok($$SELECT api.transfer(test.v('e'), 'C2C2C2C2', 'C1C1C1C1', 100)$$, 'FP011', NULL,
                 'transfer to a blocked tag: tag-blocked');
SELECT is(test.balance(test.v('e'), 'C2C2C2C2'), 4000::bigint, 'the refused transfer leaves 4000');

-- The receiver's maximum balance.
INSERT INTO test.ctx SELECT 'M', test.funded_tag(test.v('e'), 'D1D1D1D1', 25000);
SELECT is((SELECT balance FROM api.topup(test.v('top'), 10, 'D1D1D1D1', 24500, 'cash')), 49500::bigint, 'receiver at 49500');
SELECT throws_ok($$SELECT api.transfer(test.v('e'), 'C2C2C2C2', 'D1D1D1D1', 501)$$, 'FP021', NULL,
                 '49500 + 501 would pass 50000: max-balance-exceeded');
SELECT is(test.balance(test.v('e'), 'C2C2C2C2'), 4000::bigint, 'the refused transfer leaves the sender at 4000');
SELECT results_eq($$SELECT from_balance, to_balance FROM api.transfer(test.v('e'), 'C2C2C2C2', 'D1D1D1D1', 500)$$,
                  $$VALUES (3500::bigint, 50000::bigint)$$, 'a transfer up to exactly 50000 is allowed');

SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'refunds, payouts and transfers: every invariant holds');

SELECT * FROM finish();
ROLLBACK;
