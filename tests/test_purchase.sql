-- Purchases (SPEC 3): reserve at checkout, then the terminal replicates Committed. Lines per item, merchant <- customer,
-- returnable items deposit <- customer; the hold; items keep name, price and VAT as sold; the checks of a reserve.
BEGIN;
SELECT plan(60);

-- Scratch: ids in test.ctx (read with test.v) and api answers in test.res (read with test.res); rolled back at the end.

-- Runs a query returning one jsonb value; returns it, or {"error": sqlstate} when it raises (its effects are undone).
CREATE FUNCTION pg_temp.try(p_sql text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    EXECUTE p_sql INTO v;
    RETURN v;
EXCEPTION WHEN OTHERS THEN
    RETURN jsonb_build_object('error', SQLSTATE);
END
$$;

-- Event: Beer 450 (19%), Pretzel 350 (7%), Tip (variable), Cup 200 returnable; a tag with 10000 (cash).
INSERT INTO test.ctx SELECT 'e', test.event('Purchase Fest');
INSERT INTO test.ctx SELECT 'other', test.event('Other Fest');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.v('e'), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.v('e'), 'Food');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.v('e'), 'Top-up');
INSERT INTO test.ctx SELECT 'beer', test.product(test.v('e'), 'Beer');
INSERT INTO test.ctx SELECT 'funded', test.funded_tag(test.v('e'), 'B0B0B0B0', 10000);
INSERT INTO test.res SELECT 'items1', test.items(test.v('e'), 'Beer:2', 'Cup:1', 'Tip:1:150');

-- Reserve at checkout: ReservePending, 1250 held, nothing booked yet.
INSERT INTO test.res SELECT 'r1', to_jsonb(x)
  FROM api.reserve(test.v('bar'), 1, 'B0B0B0B0', 0, 1250, (SELECT j FROM test.res WHERE k = 'items1')) x;
INSERT INTO test.ctx SELECT 'p1', test.res('r1', 'transaction_id')::bigint;

SELECT is(test.res('r1', 'state'), 'ReservePending', 'reserve: answered ReservePending');
SELECT is(test.res('r1', 'available')::bigint, 8750::bigint, 'reserve: answered available 10000 - 1250');
SELECT is((SELECT expires_at - created_at FROM ledger.transaction WHERE id = test.v('p1')), interval '120 seconds',
          'reserve: expires after the event''s reserve timeout of 120 s');
SELECT is(test.held(test.v('e'), 'B0B0B0B0'), 1250::bigint, 'reserve: the customer holds 1250');
SELECT is(test.balance(test.v('e'), 'B0B0B0B0'), 10000::bigint, 'reserve: the balance is still 10000');
SELECT is(test.lines(test.v('p1')), 0, 'reserve: no booking line yet');
SELECT results_eq($$SELECT line_no::integer, name, quantity::integer, unit_price::bigint, vat_rate::text, returnable
                      FROM ledger.item WHERE transaction_id = test.v('p1') ORDER BY line_no$$,
                  $$VALUES (1, 'Beer', 2, 450::bigint, '19.00', false),
                           (2, 'Cup', 1, 200::bigint, '0.00', true),
                           (3, 'Tip', 1, 150::bigint, '0.00', false)$$,
                  'reserve: items stored with name, quantity, unit price, VAT rate and returnable as sold');

-- A repeat of the reserve is the same transaction and holds nothing twice.
SELECT is((SELECT transaction_id FROM api.reserve(test.v('bar'), 1, 'B0B0B0B0', 0, 1250, (SELECT j FROM test.res WHERE k = 'items1'))),
          test.v('p1'), 'reserve repeated: the same transaction');
SELECT is(test.held(test.v('e'), 'B0B0B0B0'), 1250::bigint, 'reserve repeated: still 1250 held');
SELECT is((SELECT available FROM api.reserve(test.v('bar'), 1, 'B0B0B0B0', 0, 1250, (SELECT j FROM test.res WHERE k = 'items1'))),
          8750::bigint, 'reserve repeated: available as after the first (10000 - 1250), the hold not counted twice');

-- The product changes after the sale: the items keep what was sold.
UPDATE ledger.product SET name = 'Beer XL', price = 500, vat_rate = 7 WHERE id = test.v('beer');
SELECT results_eq($$SELECT name, unit_price::bigint, vat_rate::text FROM ledger.item
                     WHERE transaction_id = test.v('p1') AND line_no = 1$$,
                  $$VALUES ('Beer', 450::bigint, '19.00')$$,
                  'after the product became Beer XL at 500 and 7%, the item still says Beer, 450, 19%');

-- The terminal replicates Committed: one line per item, Cup to the deposit account, the hold released.
INSERT INTO test.res SELECT 'rep1', to_jsonb(x) FROM api.replicate(test.v('bar'), jsonb_build_array(jsonb_build_object(
    'terminal_tx_number', 1, 'type', 'purchase', 'state', 'Committed', 'uid', 'B0B0B0B0', 'tag_tx_number', 0,
    'time', '2025-07-01T18:00:00Z', 'amount', 1250, 'items', (SELECT j FROM test.res WHERE k = 'items1')))) x;
SELECT is(test.res('rep1', 'outcome'), 'booked', 'replicate Committed: outcome booked');
SELECT is(test.res('rep1', 'transaction_id')::bigint, test.v('p1'), 'replicate Committed: the reserved transaction');
SELECT is(test.state(test.v('p1')), 'Committed', 'replicate Committed: state Committed');
SELECT results_eq($$SELECT * FROM test.booking_lines(test.v('p1'))$$,
                  $$VALUES ('merchant:Bar', 'customer:B0B0B0B0', 900::bigint),
                           ('deposit:deposit', 'customer:B0B0B0B0', 200::bigint),
                           ('merchant:Bar', 'customer:B0B0B0B0', 150::bigint)$$,
                  'purchase lines: Bar <- customer 2 x 450 (the price as sold), deposit <- customer 200, Bar <- customer 150');
SELECT is(test.held(test.v('e'), 'B0B0B0B0'), 0::bigint, 'committed: the hold is back to 0');
SELECT is((SELECT held::bigint FROM ledger.transaction WHERE id = test.v('p1')), 0::bigint, 'committed: the transaction holds nothing');
SELECT is(test.balance(test.v('e'), 'B0B0B0B0'), 8750::bigint, 'committed: balance 10000 - 1250');
SELECT is(test.account_balance(test.v('e'), 'merchant', 'Bar'), 1050::bigint, 'committed: merchant Bar received 1050');
SELECT is(test.account_balance(test.v('e'), 'deposit', 'deposit'), 200::bigint, 'committed: deposit received 200');
SELECT is(test.account_balance(test.v('e'), 'merchant', 'Food'), 0::bigint, 'committed: merchant Food untouched');

-- Replicating Committed again is a duplicate: nothing booked twice.
SELECT results_eq($$SELECT outcome, state FROM api.replicate(test.v('bar'), jsonb_build_array(jsonb_build_object(
                        'terminal_tx_number', 1, 'type', 'purchase', 'state', 'Committed', 'uid', 'B0B0B0B0',
                        'tag_tx_number', 0, 'amount', 1250, 'items', (SELECT j FROM test.res WHERE k = 'items1'))))$$,
                  $$VALUES ('duplicate', 'Committed')$$, 'replicate Committed again: duplicate');
SELECT is(test.lines(test.v('p1')), 3, 'duplicate: still exactly 3 lines');
SELECT is(test.balance(test.v('e'), 'B0B0B0B0'), 8750::bigint, 'duplicate: balance still 8750');

-- New sales use the new price: the old one is now a price mismatch.
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 2, 'B0B0B0B0', 1, 450,
                     jsonb_build_array(jsonb_build_object('product_id', test.v('beer'), 'quantity', 1, 'unit_price', 450)))$$,
                 'FP004', NULL, 'Beer XL at its old price 450: price-mismatch');
SELECT is((SELECT state FROM api.reserve(test.v('bar'), 2, 'B0B0B0B0', 1, 500,
               jsonb_build_array(jsonb_build_object('product_id', test.v('beer'), 'quantity', 1)))),
          'ReservePending', 'Beer XL at 500 reserves');
SELECT results_eq($$SELECT name, unit_price::bigint, vat_rate::text FROM ledger.item
                     WHERE transaction_id = (SELECT transaction_id FROM api.terminal_transaction(test.v('bar'), 2))$$,
                  $$VALUES ('Beer XL', 500::bigint, '7.00')$$, 'the new sale stores Beer XL, 500, 7%');
SELECT is((SELECT outcome FROM api.replicate(test.v('bar'), jsonb_build_array(jsonb_build_object(
               'terminal_tx_number', 2, 'type', 'purchase', 'state', 'Aborted', 'uid', 'B0B0B0B0', 'amount', 500)))),
          'booked', 'the Beer XL sale is aborted at the terminal');
SELECT is(test.held(test.v('e'), 'B0B0B0B0'), 0::bigint, 'aborted: nothing held');
SELECT is(test.lines((SELECT transaction_id FROM api.terminal_transaction(test.v('bar'), 2))), 0, 'aborted: no lines');

-- The checks of a reserve; each refusal changes nothing.
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 650, test.items(test.v('e'), 'Pretzel:2'))$$,
                 'FP002', NULL, '2 Pretzels are 700, not 650: amount-mismatch');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 450, test.items(test.v('other'), 'Beer:1'))$$,
                 'FP003', NULL, 'a product of another event: unknown-product');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 300, test.items(test.v('e'), 'Pretzel:1:300'))$$,
                 'FP004', NULL, 'Pretzel (fixed 350) at 300: price-mismatch');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 300, test.items(test.v('e'), 'Tip:1'))$$,
                 'FP001', NULL, 'Tip (variable price) without unit_price: validation');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 0, test.items(test.v('e'), 'Tip:1:0'))$$,
                 'FP001', NULL, 'amount 0: validation');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 350, test.items(test.v('e'), 'Pretzel:0'))$$,
                 'FP001', 'validation: quantity must be greater than 0', 'an item of quantity 0: validation');
SELECT is(test.error_detail($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 350, test.items(test.v('e'), 'Pretzel:-1'))$$),
          '{"field": "quantity"}'::jsonb, 'an item of quantity -1: validation names the field');
SELECT is(test.held(test.v('e'), 'B0B0B0B0'), 0::bigint, 'refused reserves hold nothing');
SELECT is((SELECT count(*) FROM ledger.transaction WHERE assignment_id = test.v('bar') AND terminal_tx_number = 3),
          0::bigint, 'refused reserves leave no transaction');

-- Insufficient balance: the DETAIL carries what is available; a pending hold reduces it.
INSERT INTO test.ctx SELECT 'seq', pg_sequence_last_value('ledger.transaction_id_seq');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 8751, test.items(test.v('e'), 'Tip:1:8751'))$$,
                 'FP020', NULL, '8751 with 8750 available: insufficient-balance');
SELECT is(test.error_detail($$SELECT api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 8751,
                                     test.items(test.v('e'), 'Tip:1:8751'))$$),
          '{"available": 8750}'::jsonb, 'insufficient-balance DETAIL: {"available": 8750}');
SELECT is(pg_sequence_last_value('ledger.transaction_id_seq'), test.v('seq'),
          'refused for insufficient balance: no transaction id taken (no gap in receipt numbers)');
SELECT is((SELECT available FROM api.reserve(test.v('bar'), 3, 'B0B0B0B0', 2, 350, test.items(test.v('e'), 'Pretzel:1'))),
          8400::bigint, 'a Pretzel reserved: 8400 available');
SELECT is(test.error_detail($$SELECT api.reserve(test.v('bar'), 4, 'B0B0B0B0', 3, 8401,
                                     test.items(test.v('e'), 'Tip:1:8401'))$$),
          '{"available": 8400}'::jsonb, 'with 350 held, 8401 is refused and the DETAIL says 8400');
SELECT is((SELECT available FROM api.reserve(test.v('bar'), 4, 'B0B0B0B0', 3, 8400, test.items(test.v('e'), 'Tip:1:8400'))),
          0::bigint, 'exactly what is available can be reserved: 0 left');
SELECT is(test.held(test.v('e'), 'B0B0B0B0'), 8750::bigint, 'two reserves hold 350 + 8400');
SELECT results_eq($$SELECT outcome FROM api.replicate(test.v('bar'), jsonb_build_array(
                        jsonb_build_object('terminal_tx_number', 3, 'state', 'Aborted', 'uid', 'B0B0B0B0', 'amount', 350),
                        jsonb_build_object('terminal_tx_number', 4, 'state', 'Aborted', 'uid', 'B0B0B0B0', 'amount', 8400)))$$,
                  $$VALUES ('booked'), ('booked')$$, 'both reserves aborted');
SELECT is(test.held(test.v('e'), 'B0B0B0B0'), 0::bigint, 'aborted reserves release their hold');

-- Tag states and positions.
INSERT INTO test.ctx SELECT 'new tag', api.create_tag(test.v('e'), 'E0E0E0E0');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 5, 'E0E0E0E0', 0, 450, test.items(test.v('e'), 'Tip:1:450'))$$,
                 'FP012', NULL, 'a tag never topped up: tag-not-active');
SELECT is(api.block_tag(test.v('e'), 'B0B0B0B0'), 'blocked', 'block tag B0B0B0B0');
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 5, 'B0B0B0B0', 4, 350, test.items(test.v('e'), 'Pretzel:1'))$$,
                 'FP011', NULL, 'a blocked tag: tag-blocked');
SELECT is(api.unblock_tag(test.v('e'), 'B0B0B0B0'), 'active', 'unblocked: active again (it has bookings)');
SELECT throws_ok($$SELECT api.reserve(test.v('top'), 5, 'B0B0B0B0', 4, 350, test.items(test.v('e'), 'Pretzel:1'))$$,
                 'FP032', NULL, 'reserve at a top-up position: wrong-position');
SELECT results_eq($$SELECT outcome, problem, transaction_id FROM api.replicate(test.v('top'), jsonb_build_array(jsonb_build_object(
                        'terminal_tx_number', 1, 'type', 'purchase', 'state', 'Committed', 'uid', 'B0B0B0B0',
                        'tag_tx_number', 5, 'amount', 350, 'items', test.items(test.v('e'), 'Pretzel:1'))))$$,
                  $$VALUES ('rejected', 'wrong-position', NULL::bigint)$$,
                  'an offline sale replicated from a top-up position: rejected wrong-position, nothing stored');

-- Another sale position books to its own merchant; an offline sale replicated Committed is booked directly.
SELECT results_eq($$SELECT outcome, state FROM api.replicate(test.v('food'), jsonb_build_array(jsonb_build_object(
                        'terminal_tx_number', 1, 'type', 'purchase', 'state', 'Committed', 'uid', 'B0B0B0B0',
                        'tag_tx_number', 5, 'amount', 900, 'items', test.items(test.v('e'), 'Pretzel:2', 'Cup:1'))))$$,
                  $$VALUES ('booked', 'Committed')$$, 'an offline Food sale replicated Committed: booked');
SELECT results_eq($$SELECT * FROM test.booking_lines((SELECT transaction_id FROM api.terminal_transaction(test.v('food'), 1)))$$,
                  $$VALUES ('merchant:Food', 'customer:B0B0B0B0', 700::bigint),
                           ('deposit:deposit', 'customer:B0B0B0B0', 200::bigint)$$,
                  'Food sale lines: Food <- customer 700, deposit <- customer 200');
SELECT is(test.balance(test.v('e'), 'B0B0B0B0'), 7850::bigint, 'balance 8750 - 900');

-- Bad input is a named problem (a 4xx), never a raw constraint error; a replication batch judges each entry alone.
SELECT throws_ok($$SELECT api.reserve(test.v('bar'), 20, 'B0B0B0B0', -1, 350, test.items(test.v('e'), 'Pretzel:1'))$$,
                 'FP001', NULL, 'reserve with tag transaction number -1: validation');
SELECT is(pg_temp.try($$SELECT jsonb_agg(jsonb_build_array(terminal_tx_number, outcome, problem))
                          FROM api.replicate(test.v('bar'), jsonb_build_array(
                              jsonb_build_object('terminal_tx_number', 20, 'state', 'Committed', 'uid', 'B0B0B0B0',
                                                 'tag_tx_number', -1, 'amount', 350,
                                                 'items', test.items(test.v('e'), 'Pretzel:1')),
                              jsonb_build_object('terminal_tx_number', 21, 'state', 'Committed', 'uid', 'B0B0B0B0',
                                                 'tag_tx_number', 6, 'amount', 350,
                                                 'items', test.items(test.v('e'), 'Pretzel:1'))))$$),
          '[[20, "rejected", "validation"], [21, "booked", null]]'::jsonb,
          'replicate: an entry with tag number -1 is rejected (validation), the next entry is still booked');

SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'purchases: every invariant holds');

SELECT * FROM finish();
ROLLBACK;
